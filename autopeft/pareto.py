"""Pareto dominance, written once.

Every point is a tuple of objectives in one fixed order: the first is a quality to
maximise (the validation metric), every other one a cost to minimise (params_ratio,
flops_ratio, ...). That is the order autopeft uses everywhere:
(metric, params_ratio) for pareto_asha, (metric, params_ratio, flops_ratio) for motpe,
nsga2 and export --pareto.

    dominates(a, b)    a is no worse than b in every objective and better in one
    front(points)      indices of the points nothing dominates (equal points all kept)
    front_ranks(pts)   non-dominated sorting: key -> front index (0 = the Pareto front)

Pure Python, O(n²) per front: a study has hundreds of trials, not millions.
"""
from __future__ import annotations

from typing import Hashable, Mapping, Sequence, TypeVar

K = TypeVar("K", bound=Hashable)


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether a dominates b: a[0] maximised, a[1:] minimised."""
    if len(a) != len(b):
        raise ValueError(f"points of different lengths: {len(a)} and {len(b)}")
    no_worse = a[0] >= b[0] and all(x <= y for x, y in zip(a[1:], b[1:]))
    better = a[0] > b[0] or any(x < y for x, y in zip(a[1:], b[1:]))
    return no_worse and better


def front(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the non-dominated points, in input order."""
    return [i for i, p in enumerate(points)
            if not any(dominates(q, p) for j, q in enumerate(points) if j != i)]


def front_ranks(points: Mapping[K, Sequence[float]]) -> dict[K, int]:
    """Non-dominated sorting (Deb et al. 2002): key -> front index, 0 = the Pareto front."""
    left, ranks, rank = dict(points), {}, 0
    while left:
        layer = [k for k, p in left.items()
                 if not any(dominates(q, p) for j, q in left.items() if j != k)]
        for k in layer:
            ranks[k] = rank
            del left[k]
        rank += 1
    return ranks
