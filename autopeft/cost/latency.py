"""The inference-latency increase of a candidate, measured so that noise cannot flip a limit.

Pure Python (no torch): the timed forwards are callables and the clock is injected, so the
statistics are tested with a fake clock (tests/test_latency.py) and never against the real
one. autopeft.cost.measured.CostMeter supplies the forwards of a built model.

How the constraint `max_latency_ratio` is decided (issue 11):

1. **The deployed form.** Modules that merge into the base weights (LoRA, DoRA, rsLoRA,
   IA3, BitFit, and full fine-tuning, which adds nothing: cost.analytic.is_mergeable) are
   deployed merged (peft `merge_and_unload()`, AdapterHub `merge_adapter`), and a merged
   model has exactly the base model's architecture: its latency increase is 0, with no
   timing (basis "merged"). The limit applies to that deployed form; the unmerged overhead
   of such modules is what `flops_ratio` (in the reward) measures.
2. **Paired timing** for the rest (basis "measured"): one reference request, the same input
   every time, a few untimed warm-up forwards of both models, then pairs of forwards of the
   candidate and the base back to back, their order alternating, on a fixed thread count.
   Each pair gives one ratio t_candidate / t_base - 1, so a change of load slower than one
   pair (the usual kind on a shared machine) cancels out within the pair. On a CPU the
   forwards run on one thread and are timed with that thread's CPU time
   (time.thread_time), which does not count the time other processes hold the core
   (experiments/bench_latency.py, this 2-core machine at load 5-7: with wall time the
   method was uncertain in 13 of 18 measurements; with CPU time in 9 of 30, all of them
   adapters within 1 point of the limit, and a candidate far from it was decided after
   10 pairs). On a GPU, wall time around a synchronised forward.
3. **A median with a distribution-free interval.** The estimate is the median of the pair
   ratios, with a confidence interval from order statistics: of n sorted ratios,
   [r(k), r(n+1-k)] covers the true median with probability 1 - 2 P(Bin(n, 1/2) < k),
   whatever the shape of the noise (load spikes included), with no resampling and so no
   seed. Independence of pairs is the one assumption.
4. **Adaptive.** The interval is looked at after MIN_PAIRS pairs, then each time the count
   doubles, up to MAX_PAIRS; measuring stops at the first look where the interval lies
   wholly on one side of the limit (or, with no limit, at the first look), or when
   BUDGET_S seconds are spent after the first look. Looking several times would raise the
   error rate, so each look uses confidence 1 - (1 - CONFIDENCE) / looks (Bonferroni over
   the scheduled looks): the stored interval is a CONFIDENCE (99 %) interval.
5. **The decision comes from the interval only** (`verdict`, used by
   autopeft.reward.violations): "over" when its lower end is above the limit, "within"
   when its upper end is at or below it, "uncertain" when it straddles the limit after the
   cap. A violation needs evidence, so an uncertain latency is not a violation (as an
   unmeasured one is not); it stays visible as "uncertain" with its interval. A truly
   feasible candidate is therefore marked infeasible with probability below 0.5 %, and
   one whose true ratio is further from the limit than the interval's half-width never.
6. **Once per architecture.** Latency depends on the modules, their sizes and layers, not on
   weights, initialisation or hyperparameters, so a CostMeter keeps each architecture's
   estimate for the worker's life (as it keeps FLOP counts).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterable

CONFIDENCE = 0.99   # of the stored interval, over all the looks of one measurement
MIN_PAIRS = 10      # the first look (10 pairs at 99.8 %: the whole range of the ratios)
MAX_PAIRS = 160     # looks at 10, 20, 40, 80, 160 pairs
WARMUP = 2          # untimed forwards of each model first (allocations, lazy set-up)
BUDGET_S = 6.0      # no new block of pairs after this long (the first look always happens)

# verdicts
WITHIN, OVER, UNCERTAIN, NO_LIMIT = "within", "over", "uncertain", "no limit"


@dataclass(frozen=True)
class LatencyEstimate:
    """The outcome of one paired measurement (stored in autopeft.records.Cost)."""

    ratio: float        # median of the pair ratios t_candidate / t_base - 1
    low: float          # the CONFIDENCE interval of that median
    high: float
    pairs: int
    confidence: float   # of [low, high]
    seconds: float      # clock time spent, warm-up included


def binomial_cdf_half(n: int, k: int) -> float:
    """P(Bin(n, 1/2) <= k), exactly (integer arithmetic, then one division)."""
    if k < 0:
        return 0.0
    return sum(math.comb(n, i) for i in range(min(k, n) + 1)) / 2 ** n


def median_interval(values: Iterable[float], confidence: float) -> tuple[float, float, float]:
    """(low, high, coverage): the order-statistic confidence interval of the median.

    The narrowest [x(k), x(n+1-k)] whose coverage 1 - 2 P(Bin(n, 1/2) <= k-1) is at least
    `confidence`; with too few values for that, the whole range and its (lower) coverage.
    """
    xs = sorted(values)
    n = len(xs)
    if n == 0:
        raise ValueError("median_interval needs at least one value")
    alpha = 1.0 - confidence
    k = 1
    while k + 1 <= (n + 1) // 2 and 2 * binomial_cdf_half(n, k) <= alpha:
        k += 1
    return xs[k - 1], xs[n - k], 1.0 - 2 * binomial_cdf_half(n, k - 1)


def verdict(low: float | None, high: float | None, limit: float | None) -> str:
    """Where an interval lies against a limit: within, over, uncertain (or no limit)."""
    if limit is None or low is None or high is None:
        return NO_LIMIT
    if low > limit:
        return OVER
    if high <= limit:
        return WITHIN
    return UNCERTAIN


def looks(min_pairs: int, max_pairs: int) -> list[int]:
    """The pair counts at which the interval is looked at: min, 2 min, 4 min, ..., max."""
    out, n = [], max(1, min_pairs)
    while n < max_pairs:
        out.append(n)
        n *= 2
    out.append(max(max_pairs, min_pairs))
    return out


def paired_ratio(run_candidate: Callable[[], object], run_base: Callable[[], object], *,
                 limit: float | None = None, clock: Callable[[], float] = time.perf_counter,
                 wall: Callable[[], float] | None = None, warmup: int = WARMUP,
                 min_pairs: int = MIN_PAIRS, max_pairs: int = MAX_PAIRS,
                 budget_s: float = BUDGET_S, confidence: float = CONFIDENCE) -> LatencyEstimate:
    """Time `run_candidate` against `run_base` in alternating pairs until the interval of
    the median ratio decides against `limit` (see the module docstring).

    `clock` times the forwards (CostMeter: the thread's CPU time on a CPU, wall time on a
    GPU); `wall` (default: `clock`) measures the budget and the seconds reported."""
    wall = wall or clock
    schedule = looks(min_pairs, max_pairs)
    per_look = 1.0 - (1.0 - confidence) / len(schedule)
    # what the schedule achieves: below `confidence` only when min_pairs is too small for
    # any interval to reach per_look (then the stored figure says so)
    achieved = 1.0 - sum(1.0 - median_interval(range(n), per_look)[2] for n in schedule)
    start = wall()
    for _ in range(max(0, warmup)):
        run_candidate()
        run_base()

    def timed(run: Callable[[], object]) -> float:
        t0 = clock()
        run()
        return clock() - t0

    ratios: list[float] = []
    for target in schedule:
        while len(ratios) < target:
            if len(ratios) % 2 == 0:
                t_cand = timed(run_candidate)
                t_base = timed(run_base)
            else:
                t_base = timed(run_base)
                t_cand = timed(run_candidate)
            if t_base <= 0:
                raise ValueError(f"the base forward took {t_base} s: the clock does not "
                                 f"advance (a coarse clock, or a forward that does nothing)")
            ratios.append(t_cand / t_base - 1.0)
            if len(ratios) > schedule[0] and wall() - start > budget_s:
                break  # over budget: this is the last look
        low, high, _ = median_interval(ratios, per_look)
        if verdict(low, high, limit) != UNCERTAIN or wall() - start > budget_s:
            break
    return LatencyEstimate(ratio=_median(ratios), low=low, high=high, pairs=len(ratios),
                           confidence=max(0.0, achieved), seconds=wall() - start)


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def three_pair_median(run_candidate: Callable[[], object], run_base: Callable[[], object], *,
                      clock: Callable[[], float] = time.perf_counter, repeats: int = 3,
                      budget_s: float = 0.6) -> float:
    """The method `paired_ratio` replaced, kept as the control of tests/test_latency.py and
    experiments/bench_latency.py: up to `repeats` candidate-then-base pairs within
    `budget_s`, median(candidate) / median(base) - 1, no warm-up, no interval."""
    cand, base = [], []
    start = clock()
    for _ in range(max(1, repeats)):
        for run, out in ((run_candidate, cand), (run_base, base)):
            t0 = clock()
            run()
            out.append(clock() - t0)
        if clock() - start > budget_s:
            break
    return _median(cand) / _median(base) - 1.0
