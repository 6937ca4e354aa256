"""The LSTM's reward model (autopeft/controllers/surrogate.py): code features and their
distance, the rank transform, the GP fit and log expected improvement."""
from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest

from autopeft.controllers.surrogate import CodeEncoder, CodeGP, log_ei, normal_scores
from autopeft.space import load_space


def test_distance_counts_choices_and_orders_levels():
    # decision 0: a choice of 3; decision 1: a range of 5 levels, active only sometimes
    enc = CodeEncoder([3, 5], [False, True])
    codes = np.array([[0, 0], [1, 0], [0, 1], [0, 4], [0, -1], [-1, -1]])
    d = enc.distance(enc(codes), enc(codes))
    assert np.allclose(np.diag(d), 0) and np.allclose(d, d.T)
    assert d[0, 1] == pytest.approx(1.0)          # another choice: 1 apart
    assert d[0, 2] == pytest.approx(0.25)         # neighbouring levels: 1/(L-1)
    assert d[0, 3] == pytest.approx(1.0)          # the far end of the range
    assert d[2, 3] == pytest.approx(0.75)
    assert d[0, 4] == pytest.approx(1.0)          # inactive vs the lowest level
    assert d[5, 4] == pytest.approx(1.0)          # an inactive choice is its own option


def test_the_kernel_is_positive_definite_on_a_real_space():
    space = load_space("default.yaml").bind(num_layers=6, hidden_size=384)
    rng = np.random.default_rng(0)
    codes = np.array([space.encode(space.sample(rng)) for _ in range(150)])
    enc = CodeEncoder([len(d.options()) for d in space.decisions],
                      [d.is_range for d in space.decisions])
    x = enc(codes)
    for ls in (0.25, 1.0, 8.0):
        eig = np.linalg.eigvalsh(np.exp(-enc.distance(x, x) / ls))
        assert eig.min() > -1e-9, (ls, eig.min())


def test_normal_scores_are_ranks_and_ignore_scale():
    y = np.array([0.3, -5.0, 0.9, 0.3, 0.31])
    z = normal_scores(y)
    assert z[1] == z.min() and z[2] == z.max() and z[0] == z[3]
    assert np.allclose(normal_scores(y * 100 + 7), z)
    assert np.allclose(normal_scores(np.ones(4)), 0)


def test_gp_recovers_a_structured_objective_and_its_uncertainty():
    """Reward = level of decision 1 (a range) when decision 0 is option 2, else low: from
    24 observations the model ranks unseen configurations right, and is surer where it
    has data."""
    rng = np.random.default_rng(1)
    sizes, ranges = [4, 6, 3], [False, True, False]

    def f(c):
        return (1.0 + c[1] / 5) if c[0] == 2 else 0.2 * rng.standard_normal()
    grid = np.array([[a, b, c] for a in range(4) for b in range(6) for c in range(3)])
    seen = rng.choice(len(grid), 24, replace=False)
    gp = CodeGP(sizes, ranges).fit(grid[seen], np.array([f(c) for c in grid[seen]]))
    mean, sd = gp.predict(grid)
    good = grid[:, 0] == 2
    assert mean[good].min() > np.median(mean[~good])
    top = mean[good]
    levels = grid[good, 1]
    assert np.corrcoef(top, levels)[0, 1] > 0.5  # higher level, higher mean
    unseen = np.setdiff1d(np.arange(len(grid)), seen)
    assert sd[seen].mean() < sd[unseen].mean()
    assert gp.length_scale in (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def test_log_ei_matches_the_formula_and_stays_finite_far_below():
    nd = NormalDist()
    mean, sd = np.array([0.0, 1.0, -1.0, -3.0]), np.array([1.0, 0.5, 0.3, 0.5])
    z = mean / sd
    direct = [s * (nd.pdf(v) + v * nd.cdf(v)) for v, s in zip(z, sd)]
    assert np.allclose(np.exp(log_ei(mean, sd, 0.0)), direct, rtol=1e-6)
    far = log_ei(np.array([-5.0, -10.0, -40.0]), np.array([0.5, 0.5, 0.5]), 0.0)
    assert np.all(np.isfinite(far)) and far[0] > far[1] > far[2]
    # continuous across the switch to the asymptotic form (z = -6)
    edge = log_ei(np.array([-6.0 + 1e-6, -6.0 - 1e-6]), np.ones(2), 0.0)
    assert abs(edge[0] - edge[1]) < 0.003
    assert math.isfinite(float(log_ei(np.array([0.0]), np.array([0.0]), 1.0)[0]))
