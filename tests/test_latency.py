"""The latency method (autopeft.cost.latency) against a fake machine: noise of a given size
around a known true ratio, over many seeds. No assertion reads the real clock."""
from __future__ import annotations

import math
import random

import pytest

from autopeft.cost.latency import (NO_LIMIT, OVER, UNCERTAIN, WITHIN, binomial_cdf_half, looks,
                                   median_interval, paired_ratio, three_pair_median, verdict)

LIMIT = 0.15


class FakeMachine:
    """A fake clock and two fake forwards. The base takes `base_s`, the candidate
    (1 + true_ratio) times as long; each forward is scaled by log-normal noise (sd `noise`),
    a load that drifts as a random walk (sd `drift` per forward, within 0.5x..4x), and, with
    probability `spike_p`, a spike of up to `spike_x` times (another job taking the core).
    The defaults are about twice the spread of one forward on this machine when it is quiet
    (3 %), with frequent spikes: enough to flip the old 3-pair median now and then."""

    def __init__(self, true_ratio: float, seed: int, *, noise: float = 0.06,
                 drift: float = 0.03, spike_p: float = 0.1, spike_x: float = 3.0,
                 base_s: float = 0.025) -> None:
        self.rng = random.Random(seed)
        self.ratio, self.noise, self.drift = true_ratio, noise, drift
        self.spike_p, self.spike_x, self.base_s = spike_p, spike_x, base_s
        self.t, self.load, self.calls = 0.0, 1.0, []

    def clock(self) -> float:
        return self.t

    def _forward(self, scale: float) -> None:
        r = self.rng
        self.load = min(max(self.load * r.lognormvariate(0.0, self.drift), 0.5), 4.0)
        x = self.base_s * scale * self.load * r.lognormvariate(0.0, self.noise)
        if r.random() < self.spike_p:
            x *= 1.0 + (self.spike_x - 1.0) * r.random()
        self.t += x

    def candidate(self) -> None:
        self.calls.append("c")
        self._forward(1.0 + self.ratio)

    def base(self) -> None:
        self.calls.append("b")
        self._forward(1.0)


def measure(true_ratio: float, seed: int, **kw) -> tuple[str, object]:
    m = FakeMachine(true_ratio, seed, **{k: kw.pop(k) for k in list(kw)
                                         if k in ("noise", "drift", "spike_p", "spike_x")})
    est = paired_ratio(m.candidate, m.base, limit=kw.pop("limit", LIMIT), clock=m.clock, **kw)
    return verdict(est.low, est.high, LIMIT), est


def legacy_flips(true_ratio: float, seeds: range) -> int:
    """How often the old 3-pair median lands on the wrong side of LIMIT."""
    wrong = 0
    for seed in seeds:
        m = FakeMachine(true_ratio, 100_000 + seed)
        got = three_pair_median(m.candidate, m.base, clock=m.clock)
        wrong += (got > LIMIT) != (true_ratio > LIMIT)
    return wrong


@pytest.mark.parametrize("true_ratio,right", [(0.0, WITHIN), (0.03, WITHIN), (0.05, WITHIN),
                                              (0.30, OVER), (0.40, OVER)])
def test_noise_never_flips_a_ratio_far_from_the_limit(true_ratio, right):
    seeds = range(200)
    verdicts = [measure(true_ratio, s)[0] for s in seeds]
    assert verdicts.count(right) == len(verdicts), {v: verdicts.count(v) for v in set(verdicts)}
    # the control: the same noise flips the method this replaced, so the test has teeth
    assert legacy_flips(true_ratio, seeds) >= 5


def test_near_the_limit_the_interval_is_reported_uncertain_not_flipped():
    """True ratio 0.16, just over the limit: the interval straddles it after the cap and
    says so; a decision on the wrong side ("within") stays within the 99 % level."""
    results = [measure(0.16, s) for s in range(200)]
    verdicts = [v for v, _ in results]
    assert verdicts.count(UNCERTAIN) >= 150
    assert verdicts.count(WITHIN) <= 2
    for v, est in results:
        assert est.low <= est.ratio <= est.high
        if v == UNCERTAIN:  # it kept measuring until the cap or the budget stopped it
            assert est.pairs == 160 or est.seconds > 6.0


def test_the_interval_covers_the_true_ratio_at_its_level():
    """Over 400 seeds with no limit (one look of 10 pairs), the interval of the median pair
    ratio holds the true ratio at least as often as its stated confidence (less the
    Monte Carlo error); the noise has no spikes or drift, so the true median is known."""
    hits, n = 0, 400
    for seed in range(n):
        _, est = measure(0.1, seed, limit=None, noise=0.05, drift=0.0, spike_p=0.0)
        assert est.pairs == 10 and est.confidence >= 0.99
        hits += est.low <= 0.1 <= est.high
    assert hits >= n * 0.98


def test_median_interval_order_statistics():
    assert binomial_cdf_half(10, 0) == 1 / 1024
    assert binomial_cdf_half(4, 4) == 1.0 and binomial_cdf_half(4, -1) == 0.0
    low, high, cov = median_interval([5, 1, 4, 2, 3, 9, 8, 7, 6, 0], 0.99)
    assert (low, high) == (0, 9) and cov == 1 - 2 / 1024  # k=2 would cover only 97.9 %
    # 20 values at 95 %: [x(6), x(15)], coverage 1 - 2 P(Bin(20, 1/2) <= 5) = 0.9586
    low, high, cov = median_interval(list(range(20)), 0.95)
    assert (low, high) == (5, 14) and cov == pytest.approx(0.958611, abs=1e-6)
    # too few values for the level: the whole range, with the coverage it really has
    assert median_interval([3.0, 1.0], 0.99) == (1.0, 3.0, 0.5)
    with pytest.raises(ValueError):
        median_interval([], 0.9)


def test_median_interval_coverage_on_skewed_noise():
    rng = random.Random(7)
    true_median = math.log(2)  # of Exp(1)
    for n in (10, 25, 60):
        hits = 0
        for _ in range(3000):
            low, high, cov = median_interval([rng.expovariate(1.0) for _ in range(n)], 0.95)
            hits += low <= true_median <= high
        assert hits / 3000 >= cov - 0.015


def test_verdict_reads_only_the_interval():
    assert verdict(0.16, 0.3, LIMIT) == OVER
    assert verdict(0.0, 0.15, LIMIT) == WITHIN
    assert verdict(0.1, 0.2, LIMIT) == UNCERTAIN
    assert verdict(0.1, 0.2, None) == NO_LIMIT and verdict(None, None, LIMIT) == NO_LIMIT


def test_paired_ratio_alternates_warms_up_and_stops_when_decided():
    m = FakeMachine(0.0, 0, noise=0.0, drift=0.0, spike_p=0.0)
    est = paired_ratio(m.candidate, m.base, limit=LIMIT, clock=m.clock)
    # two warm-up pairs, then 10 timed pairs in alternating order: decided at the first look
    assert m.calls[:4] == ["c", "b", "c", "b"]
    assert m.calls[4:12] == ["c", "b", "b", "c", "c", "b", "b", "c"]
    assert len(m.calls) == 4 + 20 and est.pairs == 10
    assert est.ratio == pytest.approx(0.0) and est.high == pytest.approx(0.0)
    assert looks(10, 160) == [10, 20, 40, 80, 160] and looks(10, 10) == [10]


def test_paired_ratio_keeps_going_while_uncertain_up_to_its_cap_and_budget():
    # no noise: decided at the first look
    m = FakeMachine(0.1, 0, noise=0.0, drift=0.0, spike_p=0.0)
    est = paired_ratio(m.candidate, m.base, limit=LIMIT, clock=m.clock)
    assert est.pairs == 10 and est.high == pytest.approx(0.1)
    # just over it with noise: straddles, so more pairs, until max_pairs
    _, est = measure(0.16, 3, max_pairs=40, budget_s=1e9)
    assert est.pairs == 40
    # a budget ends it after the first look, never before it
    _, est = measure(0.16, 3, budget_s=0.0)
    assert 10 <= est.pairs < 20
    assert est.seconds > 0


def test_paired_ratio_refuses_a_clock_that_does_not_advance():
    with pytest.raises(ValueError, match="clock does not advance"):
        paired_ratio(lambda: None, lambda: None, clock=lambda: 1.0)
