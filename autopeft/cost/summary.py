"""summarize_space: the cost range of a whole search space on a model, without training."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autopeft.candidate import Candidate
from autopeft.cost.analytic import SEQ_LEN, base_param_count, estimate, head_param_count
from autopeft.exceptions import CandidateError
from autopeft.records import Cost

if TYPE_CHECKING:  # pragma: no cover
    from autopeft.models import ModelInfo


SUMMARY_SAMPLES = 256
MIN_SAMPLES = 64  # samples cost microseconds each; fewer would make the median meaningless
EXHAUSTIVE_LIMIT = 5000  # enumerate every architecture of a space up to this many


def summarize_space(bound: Any, model_ref: str | None = None, n: int = SUMMARY_SAMPLES,
                    seed: int = 0, *, seq_len: int = SEQ_LEN, num_labels: int = 2) -> list[str]:
    """Lines describing the cost range of a bound space on a model, without training.

    Uses the analytic `estimate`. Hyperparameters (hp.*) do not change the cost, so when the
    space has at most EXHAUSTIVE_LIMIT architectures they are all enumerated and every figure
    is exact (the median is over distinct architectures). Otherwise max(n, MIN_SAMPLES)
    samples drawn with numpy.random.default_rng(seed) give the median, and min and max also
    include the extremes found by a coordinate search from the largest and smallest sample.
    """
    import numpy as np

    from autopeft.models import model_info

    info = model_info(model_ref)
    seen: dict[str, tuple[Candidate, Cost] | None] = {}
    reasons: dict[str, int] = {}

    def consider(assignment: dict[str, Any]) -> Cost | None:
        cand = bound.to_candidate(assignment)
        key = Candidate(cand.modules, {}, cand.num_layers).key()
        if key not in seen:
            seen[key] = _estimate_or_reason(cand, info, seq_len, num_labels, reasons)
        row = seen[key]
        return None if row is None else row[1]

    everything = _enumerate(bound, EXHAUSTIVE_LIMIT)
    if everything is not None:
        for assignment in everything:
            consider(assignment)
        pool = [r[1] for r in seen.values() if r is not None]
        how = f"exact, over all {len(seen)} architectures of the space"
    else:
        rng = np.random.default_rng(seed)
        samples = [bound.sample(rng) for _ in range(max(n, MIN_SAMPLES))]
        scored = [(consider(a), a) for a in samples]
        scored = [(c, a) for c, a in scored if c is not None]
        pool = [c for c, _ in scored]
        if scored:
            scored.sort(key=lambda r: r[0].trainable_params)
            for sign, start in ((1, scored[-1][1]), (-1, scored[0][1])):
                _coordinate_search(bound, start, consider, sign)
        how = (f"median over {len(samples)} samples (seed {seed}); min and max also from a "
               f"search for both extremes")
    rows = sorted((r for r in seen.values() if r is not None),
                  key=lambda r: (r[1].trainable_params, r[1].flops_ratio))
    lines = [f"cost on {info.ref}: {base_param_count(info):,} base parameters (head excluded), "
             f"FLOPs per token at {seq_len} tokens; {how}"]
    if rows:
        lo, hi = rows[0][1], rows[-1][1]
        mid = sorted(pool, key=lambda c: c.trainable_params)[len(pool) // 2]
        fl = sorted(c.flops_ratio for _, c in rows)
        fl_mid = sorted(c.flops_ratio for c in pool)[len(pool) // 2]
        merged_max = max(c.flops_ratio_merged for _, c in rows)
        lines += [
            f"  trainable parameters   min {lo.trainable_params:,} ({100 * lo.params_ratio:.3f}%)"
            f"   median {mid.trainable_params:,} ({100 * mid.params_ratio:.3f}%)"
            f"   max {hi.trainable_params:,} ({100 * hi.params_ratio:.3f}%)",
            f"  extra FLOPs per token  min {100 * fl[0]:+.2f}%   median {100 * fl_mid:+.2f}%"
            f"   max {100 * fl[-1]:+.2f}%   (after merging: max {100 * merged_max:+.2f}%)",
            f"  smallest: {rows[0][0].summary()}",
            f"  largest:  {rows[-1][0].summary()}",
            f"  every candidate also trains the classifier head: "
            f"{head_param_count(info, num_labels):,} parameters for {num_labels} labels",
        ]
    bad = sum(1 for r in seen.values() if r is None)
    if bad:
        first = max(reasons, key=lambda k: reasons[k])
        lines.append(f"  {bad} of {len(seen)} architectures cannot be built on {info.ref}, "
                     f"e.g. {first}")
    return lines


def _estimate_or_reason(cand: Candidate, info: "ModelInfo", seq_len: int, num_labels: int,
                        reasons: dict[str, int]) -> tuple[Candidate, Cost] | None:
    from autopeft.methods.validate import validate

    try:
        validate(cand, info)
        return cand, estimate(cand, info, seq_len=seq_len, num_labels=num_labels)
    except CandidateError as exc:
        reason = str(exc).splitlines()[0].split(": ", 1)[-1]
        reasons[reason] = reasons.get(reason, 0) + 1
        return None


def _enumerate(bound: Any, limit: int) -> list[dict[str, Any]] | None:
    """Every assignment of the architecture decisions (hp.* held at their first option),
    or None when there are more than `limit`."""
    decisions = bound.decisions
    out: list[dict[str, Any]] = []

    def rec(i: int, partial: dict[str, Any]) -> bool:
        if len(out) > limit:
            return False
        if i == len(decisions):
            out.append(dict(partial))
            return True
        d = decisions[i]
        if not bound.is_active(d, partial):
            return rec(i + 1, partial)
        options = d.options()[:1] if d.name.startswith("hp.") else d.options()
        for value in options:
            partial[d.name] = value
            if not rec(i + 1, partial):
                return False
        del partial[d.name]
        return True

    return out if rec(0, {}) else None


def _coordinate_search(bound: Any, start: dict[str, Any], cost_of: Any, sign: int,
                       passes: int = 3) -> dict[str, Any]:
    """Greedy one-decision-at-a-time moves that raise (sign=1) or lower (sign=-1) the
    trainable parameter count; every assignment tried goes through `cost_of`."""
    current = dict(start)
    best = cost_of(current)
    if best is None:
        return current
    for _ in range(passes):
        moved = False
        for d in bound.decisions:
            if d.name.startswith("hp.") or d.name not in current:
                continue
            for value in d.options():
                if value == current.get(d.name):
                    continue
                trial = bound.walk(lambda x, d=d, v=value: v if x.name == d.name
                                   else current.get(x.name, x.options()[0]))
                c = cost_of(trial)
                if c is not None and sign * (c.trainable_params - best.trainable_params) > 0:
                    current, best, moved = trial, c, True
        if not moved:
            break
    return current
