"""A Gaussian-process reward model over a space's discrete codes (numpy only).

The LSTM controller's model-based learner (autopeft/controllers/lstm.py) fits this to the
trials told so far and trains its policy against it: each imagined rollout is scored by
its log expected improvement over the incumbent (`log_expected_improvement`), and scoring
a few thousand of them costs milliseconds, where a real trial costs a training run.

Input: `space.encode` codes, one option index per decision, -1 when inactive. Each code
becomes a binary feature vector whose weighted L1 (Hamming) distance is the distance
between configurations:
- a choice of K options: K+1 one-hot bits (the last one: inactive), weight 1/2 each, so
  two configurations that differ in the choice are 1 apart;
- a range offered as L grid levels (a learning rate): L-1 "thermometer" bits weight
  1/(L-1) (level k sets the first k), plus an "active" bit of weight 1. Neighbouring levels
  are 1/(L-1) apart, the ends 1 apart: a learning rate that worked says something about
  the next level, nothing much about the far end.
The kernel is s^2 exp(-d/l): an exponential of an L1 distance is positive definite (it is
a product of one such factor per feature), so the fit never needs a fudge.

Output: rewards become normal scores of their ranks (ties share their mean rank) before
fitting. Ranks make the model indifferent to the reward's scale and to outliers (a run
stuck at chance, an infeasible trial lowered by INFEASIBLE_PENALTY), and they spread the
top of the table, where a search spends its time, as widely as the bottom.

Hyperparameters: the length scale l and the noise share r (noise variance / signal
variance) are picked from a small grid by marginal likelihood, the signal variance s^2 in
closed form for each (profile likelihood). The grid includes large noise shares: repeated
proxy trials of one configuration differ by up to ~0.09 accuracy.
"""
from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any, Sequence

import numpy as np

LENGTH_SCALES = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
NOISE_SHARES = (0.02, 0.1, 0.3, 1.0)


def normal_scores(y: np.ndarray) -> np.ndarray:
    """Normal quantiles of the ranks of y (ties share their mean rank), mean 0."""
    n = len(y)
    order = y.argsort(kind="stable")
    ranks = np.empty(n)
    ranks[order] = np.arange(n, dtype=float)
    for v in np.unique(y):
        ranks[y == v] = ranks[y == v].mean()
    inv = NormalDist().inv_cdf
    return np.array([inv((r + 0.5) / n) for r in ranks])


class CodeEncoder:
    """Codes (n x decisions, -1 inactive) -> binary features and their weights."""

    def __init__(self, sizes: Sequence[int], ranges: Sequence[bool]) -> None:
        self.columns: list[tuple[int, int, bool]] = []  # (decision, offset, is range)
        weights: list[float] = []
        for i, (k, is_range) in enumerate(zip(sizes, ranges)):
            self.columns.append((i, len(weights), bool(is_range and k > 1)))
            if is_range and k > 1:
                weights += [1.0] + [1.0 / (k - 1)] * (k - 1)
            else:
                weights += [0.5] * (k + 1)
        self.sizes = list(sizes)
        self.weights = np.array(weights)

    def __call__(self, codes: np.ndarray) -> np.ndarray:
        codes = np.asarray(codes, dtype=int).reshape(-1, len(self.sizes))
        out = np.zeros((len(codes), len(self.weights)))
        rows = np.arange(len(codes))
        for (i, off, is_range), k in zip(self.columns, self.sizes):
            c = codes[:, i]
            if is_range:
                on = c >= 0
                out[on, off] = 1.0
                levels = np.arange(k - 1)[None, :] < c[:, None]  # the first c bits
                out[:, off + 1:off + k] = levels & on[:, None]
            else:
                out[rows, off + np.where(c >= 0, c, k)] = 1.0
        return out

    def distance(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Weighted L1 between binary feature rows: sum w |a - b| = a w (1-b) + (1-a) w b."""
        w = self.weights
        return (a * w) @ (1.0 - b).T + ((1.0 - a) * w) @ b.T


class CodeGP:
    """GP regression of normal-scored rewards on codes; see the module docstring."""

    def __init__(self, sizes: Sequence[int], ranges: Sequence[bool]) -> None:
        self.encoder = CodeEncoder(sizes, ranges)
        self.length_scale = self.noise_share = self.signal = self.incumbent = math.nan
        self._x = np.zeros((0, len(self.encoder.weights)))
        self._alpha = np.zeros(0)
        self._chol: Any = None

    def fit(self, codes: np.ndarray, rewards: np.ndarray) -> "CodeGP":
        rewards = np.asarray(rewards, dtype=float)
        if len(rewards) == 0:
            raise ValueError("CodeGP.fit needs at least one observation")
        z = normal_scores(rewards)
        x = self.encoder(codes)
        d = self.encoder.distance(x, x)
        n = len(z)
        best = None
        for ls in LENGTH_SCALES:
            base = np.exp(-d / ls)
            for share in NOISE_SHARES:
                chol = np.linalg.cholesky(base + share * np.eye(n))
                alpha = _solve(chol, z)
                signal = max(float(z @ alpha) / n, 1e-6)
                # -log marginal likelihood with s^2 profiled out (constants dropped)
                nll = 0.5 * n * math.log(signal) + float(np.log(np.diag(chol)).sum())
                if best is None or nll < best[0]:
                    best = (nll, ls, share, signal, chol, alpha)
        _, self.length_scale, self.noise_share, self.signal, self._chol, self._alpha = best
        self._x = x
        # the incumbent: the best posterior mean among the configurations measured (not the
        # best single measurement, which is the luckiest draw as often as the best config)
        self.incumbent = float(self.predict_features(x)[0].max())
        return self

    def predict(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and sd (of the noise-free normal score) at `codes`."""
        return self.predict_features(self.encoder(codes))

    def log_expected_improvement(self, codes: np.ndarray) -> np.ndarray:
        """log E[max(f(x) - incumbent, 0)] under the posterior, at `codes`."""
        mean, sd = self.predict(codes)
        return log_ei(mean, sd, self.incumbent)

    def predict_features(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """predict() for rows already encoded as features."""
        k = np.exp(-self.encoder.distance(q, self._x) / self.length_scale)  # m x n
        mean = k @ self._alpha
        v = np.linalg.solve(self._chol, k.T)  # triangular solve: L v = k^T
        var = self.signal * np.clip(1.0 - (v * v).sum(0), 0.0, None)
        return mean, np.sqrt(var)


_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
SD_FLOOR = 1e-6


def log_ei(mean: np.ndarray, sd: np.ndarray, best: float) -> np.ndarray:
    """log of sd * h(z), h(z) = phi(z) + z Phi(z), z = (mean - best) / sd: the log expected
    improvement of a Gaussian over `best`, computed without underflow where z is very
    negative (there h(z) ~ phi(z) / z^2 (1 - 3/z^2 + 15/z^4), within 0.3 % below z = -6)."""
    sd = np.maximum(np.asarray(sd, dtype=float), SD_FLOOR)
    z = (np.asarray(mean, dtype=float) - best) / sd
    out = np.empty_like(z)
    far = z < -6.0
    zn = z[~far]
    cdf = 0.5 * np.array([math.erfc(-v / math.sqrt(2)) for v in zn])
    pdf = np.exp(-0.5 * zn * zn - _LOG_SQRT_2PI)
    out[~far] = np.log(np.maximum(pdf + zn * cdf, 1e-300))
    zf = z[far]
    z2 = zf * zf
    out[far] = (-0.5 * z2 - _LOG_SQRT_2PI - 2.0 * np.log(-zf)
                + np.log1p(-3.0 / z2 + 15.0 / z2**2))
    return np.log(sd) + out


def _solve(chol: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(L L^T)^-1 y for the lower Cholesky factor L."""
    return np.linalg.solve(chol.T, np.linalg.solve(chol, y))
