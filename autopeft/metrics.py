"""Classification metrics and rank correlation, computed here in numpy.

`evaluate.load("accuracy")` fetches its metric script from the hub and fails offline, so
the few metrics autopeft needs are written out: each one is a handful of lines over a
confusion matrix, and tests/test_metrics.py checks them against values worked by hand.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

ArrayLike = Sequence[int] | np.ndarray


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike,
                     num_classes: int | None = None) -> np.ndarray:
    """C[i, j] = number of examples of true class i predicted as class j."""
    t = np.asarray(y_true, dtype=np.int64).ravel()
    p = np.asarray(y_pred, dtype=np.int64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} labels but y_pred has {p.size}")
    if t.size and (t.min() < 0 or p.min() < 0):
        raise ValueError("class ids must be non-negative integers")
    k = num_classes if num_classes is not None else int(max(t.max(initial=-1),
                                                            p.max(initial=-1)) + 1)
    c = np.zeros((k, k), dtype=np.int64)
    np.add.at(c, (t, p), 1)
    return c


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    t = np.asarray(y_true).ravel()
    p = np.asarray(y_pred).ravel()
    if t.size == 0:
        return 0.0
    return float(np.mean(t == p))


def macro_f1(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Unweighted mean of per-class F1 over the classes present in y_true or y_pred.

    A class with no true and no predicted example is left out (it would be 0/0);
    a class that is present but never hit scores F1 = 0 (sklearn's convention).
    """
    c = confusion_matrix(y_true, y_pred)
    tp = np.diag(c).astype(float)
    support = c.sum(axis=1)
    predicted = c.sum(axis=0)
    present = (support + predicted) > 0
    if not present.any():
        return 0.0
    denom = support + predicted  # 2·TP + FP + FN
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return float(f1[present].mean())


def mcc(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Matthews correlation coefficient, multi-class form (Gorodkin 2004, R_K).

    MCC = (c·s − Σ_k p_k·t_k) / sqrt((s² − Σ p_k²)(s² − Σ t_k²)) with c correct
    predictions, s examples, p_k predicted and t_k true counts of class k. It equals the
    usual (TP·TN − FP·FN)/sqrt(...) for two classes; 0 when a denominator term is 0.
    """
    cm = confusion_matrix(y_true, y_pred).astype(float)
    s = cm.sum()
    c = np.trace(cm)
    t = cm.sum(axis=1)
    p = cm.sum(axis=0)
    den = np.sqrt((s * s - p @ p) * (s * s - t @ t))
    if den == 0:
        return 0.0
    return float((c * s - p @ t) / den)


METRICS: dict[str, Callable[[ArrayLike, ArrayLike], float]] = {
    "accuracy": accuracy,
    "macro_f1": macro_f1,
    "mcc": mcc,
}


def compute(name: str, y_true: ArrayLike, y_pred: ArrayLike) -> float:
    try:
        fn = METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; known: {', '.join(METRICS)}") from None
    return fn(y_true, y_pred)


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b between two scorings of the same items (ties counted once each).

    tau_b = (n_c − n_d) / sqrt((n0 − n_x)(n0 − n_y)), n0 = n(n−1)/2, n_x and n_y the pairs
    tied in x only-or-both and in y only-or-both (Kendall 1945). O(n²): fine for the
    dozens of candidates it ranks here.
    """
    a = np.asarray(x, dtype=float)
    b = np.asarray(y, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError("x and y must be 1-D and of the same length")
    n = a.size
    if n < 2:
        raise ValueError("Kendall's tau needs at least two items")
    i, j = np.triu_indices(n, k=1)
    sa = np.sign(a[i] - a[j])
    sb = np.sign(b[i] - b[j])
    concordant_minus_discordant = float(np.sum(sa * sb))
    n0 = n * (n - 1) / 2
    untied_a = n0 - np.sum(sa == 0)
    untied_b = n0 - np.sum(sb == 0)
    if untied_a == 0 or untied_b == 0:
        return 0.0
    return concordant_minus_discordant / float(np.sqrt(untied_a * untied_b))
