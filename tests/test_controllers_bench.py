"""experiments/bench_controllers.py: the replay harness runs end to end on a SYNTHETIC table
(autopeft.testing.fakes.synthetic_table) and maps unmeasured proposals to the nearest
measured candidate. These are checks of the harness, not results."""
from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest

from autopeft.space import load_space

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location(
        "bench_controllers", ROOT / "experiments" / "bench_controllers.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def space():
    return load_space("lora_only.yaml").bind(num_layers=6)


def test_runs_on_a_synthetic_table(bench, tmp_path, capsys):
    rc = bench.main(["--synthetic", "120", "--seeds", "2", "--trials", "100",
                     "--space", "default.yaml", "--out", str(tmp_path)])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0
    assert out[0].startswith("# SYNTHETIC table")
    assert re.fullmatch(r"tpe_trials_to_match_random60=(\d+|none) "
                        r"lstm_minus_random_at100=-?\d+\.\d{4}", out[-1]), out[-1]
    assert (tmp_path / "bench_controllers_synthetic.png").stat().st_size > 1000
    assert (tmp_path / "synthetic_table.csv").is_file()
    rows = {line.split()[0]: line for line in out if line.split()[0] in
            ("random", "tpe", "lstm", "pbt")}
    assert set(rows) == {"random", "tpe", "lstm", "pbt"}


def test_missing_table_says_how_to_get_one(bench, tmp_path, capsys):
    assert bench.main(["--table", str(tmp_path / "none.csv")]) == 2
    assert "--synthetic" in capsys.readouterr().err


def _row(space, a, reward):
    return {"assignment": json.dumps(a), "reward": reward}


def test_lookup_exact_then_nearest_by_hamming(bench, space):
    rng = np.random.default_rng(0)
    picks = [space.sample(rng) for _ in range(6)]
    table = bench.Table(space, [_row(space, a, i / 10) for i, a in enumerate(picks[:5])])
    for i, a in enumerate(picks[:5]):
        assert table.lookup(a) == (i, 0)
    row, dist = table.lookup(picks[5])
    codes = np.array(space.encode(picks[5]))
    expected = [int((np.array(space.encode(a)) != codes).sum()) for a in picks[:5]]
    assert dist == min(expected) > 0 and row == expected.index(min(expected))


def test_repeats_are_averaged_and_failures_kept(bench, space):
    a, b = space.sample(np.random.default_rng(1)), space.sample(np.random.default_rng(2))
    table = bench.Table(space, [_row(space, a, "0.5"), _row(space, a, "0.7"),
                                _row(space, b, "")])
    assert len(table) == 2 and table.rewards[0] == pytest.approx(0.6)
    assert np.isnan(table.rewards[1]) and table.best == pytest.approx(0.6)


def test_trials_to_match(bench):
    curve = np.array([np.nan, 0.2, 0.5, 0.5, 0.9])
    assert bench.trials_to_match(curve, 0.5) == 3
    assert bench.trials_to_match(curve, 0.95) is None
