"""experiments/bench_controllers.py and make_table.py: the replay harness (noise model,
controls, shuffled table, paired statistics) on SYNTHETIC tables and the grid collector on
the analytic fake evaluator. These are checks of the machinery, not results."""
from __future__ import annotations

import csv
import importlib.util
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from autopeft.space import load_space

ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def bench():
    return _load("bench_controllers")


@pytest.fixture(scope="module")
def space():
    return load_space("lora_only.yaml").bind(num_layers=6)


def _row(a, reward):
    return {"assignment": json.dumps(a), "reward": reward}


def _distinct(space, n, seed=0):
    rng, out, seen = np.random.default_rng(seed), [], set()
    while len(out) < n:
        a = space.sample(rng)
        if tuple(space.encode(a)) not in seen:
            seen.add(tuple(space.encode(a)))
            out.append(a)
    return out


@pytest.mark.slow  # every controller x 2 seeds x 2 tables: minutes on a loaded machine
def test_runs_on_a_synthetic_table_with_every_control(bench, tmp_path, capsys):
    rc = bench.main(["--synthetic", "120", "--seeds", "2", "--trials", "24",
                     "--space", "default.yaml", "--out", str(tmp_path),
                     "--controllers", "random,tpe,tpe-startup,lstm,lstm-lr0,pbt"])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0
    assert out[0].startswith("# SYNTHETIC table")
    assert re.fullmatch(r"lstm_minus_untrained_at24=-?\d+\.\d{4} "
                        r"lstm_minus_random_at24=-?\d+\.\d{4} "
                        r"lstm_minus_tpe_at24=-?\d+\.\d{4} "
                        r"tpe_minus_random_startup_at24=-?\d+\.\d{4} noise_sd=0\.0300 "
                        r"seeds=2 se_untrained=\S+ se_random=\S+ se_lstm_tpe=\S+ se_tpe=\S+ "
                        r"lstm_learns=(yes|no)", out[-1]), out[-1]
    assert (tmp_path / "bench_controllers_synthetic.png").stat().st_size > 1000
    rows = [line.split()[0] for line in out if not line.startswith("#")]
    for name in ("random", "tpe", "tpe-startup", "lstm", "lstm-lr0", "pbt"):
        assert name in rows
    assert any("shuffled table" in line for line in out)
    assert any(line.startswith("lstm - lstm-lr0") for line in out)
    assert any(line.startswith("lstm - tpe") for line in out)


def test_unknown_variant_is_refused(bench, tmp_path, capsys):
    assert bench.main(["--synthetic", "50", "--controllers", "lstm-typo",
                       "--out", str(tmp_path)]) == 2
    assert "--variant" in capsys.readouterr().err


def test_missing_table_says_how_to_get_one(bench, tmp_path, capsys):
    assert bench.main(["--table", str(tmp_path / "none.csv")]) == 2
    assert "--synthetic" in capsys.readouterr().err


def test_controls_are_wired(bench, space):
    """lstm-lr0 is the LSTM at learning rate 0 and otherwise the defaults; tpe-startup's
    random startup covers the whole budget; --variant parses settings as JSON."""
    lr0 = bench.make("lstm-lr0", space, 3, 40, {})
    lstm = bench.make("lstm", space, 3, 40, {})
    assert lr0.settings["learning_rate"] == 0 < lstm.settings["learning_rate"]
    assert {k: v for k, v in lr0.settings.items() if k != "learning_rate"} == \
        {k: v for k, v in lstm.settings.items() if k != "learning_rate"}
    assert bench.make("tpe-startup", space, 0, 60, {}).settings["n_startup_trials"] == 60
    assert bench.make("tpe", space, 0, 60, {}).settings["n_startup_trials"] < 60
    extra = bench.parse_extra(["old=lstm:advantage=baseline,replay=false,batch_size=8"])
    assert extra == {"old": ("lstm", {"advantage": "baseline", "replay": False,
                                      "batch_size": 8})}
    assert bench.make("old", space, 0, 10, extra).settings["replay"] is False


def test_lookup_exact_then_nearest_by_hamming(bench, space):
    picks = _distinct(space, 6)
    table = bench.Table(space, [_row(a, i / 10) for i, a in enumerate(picks[:5])])
    for i, a in enumerate(picks[:5]):
        assert table.lookup(a) == (i, 0)
    row, dist = table.lookup(picks[5])
    codes = np.array(space.encode(picks[5]))
    expected = [int((np.array(space.encode(a)) != codes).sum()) for a in picks[:5]]
    assert dist == min(expected) > 0 and row == expected.index(min(expected))


def test_rows_of_one_configuration_are_averaged_and_failures_kept(bench, space):
    a, b = _distinct(space, 2, seed=1)
    table = bench.Table(space, [_row(a, "0.5"), _row(a, "0.7"), _row(b, "")])
    assert len(table) == 2 and table.rewards[0] == pytest.approx(0.6)
    assert np.isnan(table.rewards[1]) and table.best == pytest.approx(0.6)


def test_noise_estimate_removes_the_learning_rate_trend(bench, space):
    """Rows of one configuration on an exact line in log(lr) carry no noise; scatter
    around it is the noise, and it lands in the band of the configuration's value."""
    base = {k: v for k, v in _distinct(space, 1, seed=2)[0].items()
            if k != "hp.learning_rate"}
    lrs = [1.0e-3, 1.1e-3, 1.2e-3, 1.3e-3, 1.4e-3, 1.5e-3, 1.6e-3, 1.7e-3]
    assert len({tuple(space.encode({**base, "hp.learning_rate": lr})) for lr in lrs}) == 1
    trend = [0.85 + 0.1 * math.log(lr / 1e-3) for lr in lrs]
    rows = [_row({**base, "hp.learning_rate": lr}, y) for lr, y in zip(lrs, trend)]
    with pytest.raises(ValueError, match="cannot be estimated"):
        bench.estimate_noise(bench.Table(space, rows[:2]))  # 2 rows, 2 fit parameters
    noise = bench.estimate_noise(bench.Table(space, rows))
    assert noise.overall < 1e-9  # a trend is not noise
    jitter = np.random.default_rng(0).normal(0, 0.05, len(lrs))
    noisy = bench.estimate_noise(bench.Table(space, [
        _row({**base, "hp.learning_rate": lr}, y + e) for lr, y, e in zip(lrs, trend, jitter)]))
    assert 0.01 < noisy.overall < 0.1 and noisy.dof == [0, 0, len(lrs) - 2]
    assert noisy.sd(0.9) == noisy.overall  # bands with < 5 dof borrow the pooled sd
    assert bench.estimate_noise(bench.Table(space, rows), fixed=0.02).sd(0.3) == 0.02


def _flat_table(bench, space, n=30):
    picks = _distinct(space, n, seed=3)
    return bench.Table(space, [_row(a, 0.5 + 0.4 * i / n) for i, a in enumerate(picks)])


def test_noise_is_seeded_and_scores_are_true_values(bench, space):
    """Same seed, same curve; another seed, other draws. The curve holds TRUE values
    (table means) of the best-observed configuration, so with noise it can fall below
    the noise-free curve but never above the table's best."""
    table = _flat_table(bench, space)
    noise = bench.estimate_noise(table, fixed=0.2)
    run = lambda seed, n=noise: bench.replay(  # noqa: E731
        table, bench.make("random", space, 0, 40, {}), seed, 40, n)[0]
    assert np.array_equal(run(1), run(1))
    assert not np.array_equal(run(1), run(2))
    exact = run(1, bench.estimate_noise(table, fixed=0.0))
    assert np.all(np.diff(exact) >= 0)  # noise-free: best-so-far only grows
    assert set(run(1)) <= set(table.rewards)
    assert np.nanmax(run(1)) <= table.best
    assert np.mean([run(s)[-1] for s in range(5)]) < np.mean(
        [bench.replay(table, bench.make("random", space, 0, 40, {}), s, 40,
                      bench.estimate_noise(table, fixed=0.0))[0][-1] for s in range(5)])


def test_shuffled_table_permutes_values_seeded(bench):
    values = np.array([0.1, 0.2, np.nan, 0.4, 0.5, 0.6])
    a, b = bench.shuffled(values, 0), bench.shuffled(values, 0)
    assert np.array_equal(a, b, equal_nan=True) and np.isnan(a[2])
    assert sorted(a[np.isfinite(a)]) == sorted(values[np.isfinite(values)])
    assert any(not np.array_equal(bench.shuffled(values, s), values, equal_nan=True)
               for s in range(3))


def test_paired_statistics(bench):
    m, se, p = bench.paired(np.array([0.5, 0.6, 0.7, 0.8]), np.array([0.5, 0.5, 0.5, 0.5]))
    assert m == pytest.approx(0.15) and p == pytest.approx((3 + 0.5) / 4)
    assert se == pytest.approx(np.std([0, 0.1, 0.2, 0.3], ddof=1) / 2)


# -- make_table.py --------------------------------------------------------------------

TINY = """space: tiny
version: 1
select: one
modules:
  lora: {rank: [4, 8], targets: [[q, v], [q, k, v, o]]}
  bitfit: {}
hyperparameters:
  learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true, levels: 3}
"""


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


def test_grid_enumerates_every_discrete_configuration(tiny):
    mt = _load("make_table")
    space = load_space(str(tiny)).bind(num_layers=6)
    configs = list(mt.grid(space))
    assert len(configs) == (2 * 2 + 1) * 3  # lora rank x targets, or bitfit; x 3 lr
    codes = {tuple(space.encode(a)) for a in configs}
    assert len(codes) == len(configs)  # no duplicates
    sizes = {d.name: len(d.options()) for d in space.decisions}
    rng = np.random.default_rng(0)
    for _ in range(50):  # every sampled assignment's configuration is in the grid
        assert tuple(space.encode(space.sample(rng))) in codes
    assert len(configs) <= math.prod(sizes.values())


def test_collect_measures_repeats_and_resumes(tmp_path, monkeypatch, tiny):
    """--collect on the analytic fake evaluator: every configuration of the grid gets
    `repeats` rows with distinct seeds; a rerun skips what the file has."""
    mt = _load("make_table")
    monkeypatch.setenv("AUTOPEFT_FAKE", "{}")
    exp = tmp_path / "fake.yaml"
    exp.write_text("name: fake\nmodel: minilm\n")
    from autopeft.testing.evaluators import analytic

    fake = analytic({"name": "fake", "model": "minilm"})  # injected from Python
    out = tmp_path / "t.csv"
    args = ["--collect", "--space", str(tiny), "--experiment", str(exp),
            "--repeats", "2", "--out", str(out)]
    n = 15
    assert mt.main([*args, "--limit", "5"], fake) == 0
    assert mt.main(args, fake) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 2 * n
    assert len({(r["key"], r["repeat"]) for r in rows}) == 2 * n
    by_key: dict[str, set[str]] = {}
    for r in rows:
        by_key.setdefault(r["key"], set()).add(r["seed"])
        assert r["state"] == "complete" and float(r["reward"]) > 0
    assert all(len(s) == 2 for s in by_key.values())
    assert [r["repeat"] for r in rows[:n]] == ["0"] * n  # every configuration once first
    assert mt.main(args, fake) == 0 and len(list(csv.DictReader(out.open()))) == 2 * n
    # the space is kept beside the table, and a different space is refused
    assert (tmp_path / "t_space.yaml").read_text() == tiny.read_text()
    other = tmp_path / "other.yaml"
    other.write_text(TINY.replace("levels: 3", "levels: 4"))
    assert mt.main([*args[:2], str(other), *args[3:]], fake) == 2
    assert len(list(csv.DictReader(out.open()))) == 2 * n


def test_collect_dry_run_counts_and_writes_nothing(tmp_path, tiny, capsys):
    mt = _load("make_table")
    out = tmp_path / "t.csv"
    assert mt.main(["--collect", "--space", str(tiny), "--repeats", "2", "--out", str(out),
                    "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert "15 configurations x 2 repeats = 30 trials" in err and "30 to measure" in err
    assert not out.exists() and not (tmp_path / "t_space.yaml").exists()


def test_a_repeats_table_replays_its_measured_rows(bench, space):
    """draw: an evaluation is one of the configuration's own rows. Configuration A was
    measured at 0.0 and 1.0 (mean 0.5), B twice at 0.6: drawing, A's 1.0 is soon the best
    observation, so the kept configuration is A (true value 0.5); with noise-free Gaussian
    evaluations it is B (0.6)."""
    a, b = _distinct(space, 2, seed=4)
    rows = [{**_row(a, 0.0), "repeat": "0"}, {**_row(a, 1.0), "repeat": "1"},
            {**_row(b, 0.6), "repeat": "0"}, {**_row(b, 0.6), "repeat": "1"}]
    table = bench.Table(space, rows)
    assert table.repeats and [len(m) for m in table.measured] == [2, 2]
    noise = bench.estimate_noise(table)  # from the repeats: only A's spread
    assert noise.overall == pytest.approx(np.sqrt(0.5 / 2))  # (0.5^2 * 2) / 2 dof
    ctrl = lambda: bench.make("random", space, 0, 30, {})  # noqa: E731
    drawn = bench.replay(table, ctrl(), 1, 30, noise, draw=True)[0]
    exact = bench.replay(table, ctrl(), 1, 30, bench.estimate_noise(table, 0.0))[0]
    assert drawn[-1] == pytest.approx(0.5) and exact[-1] == pytest.approx(0.6)


def test_the_space_beside_the_table_is_the_default(bench, tmp_path, capsys):
    sp = load_space("lora_only.yaml").bind(num_layers=6)
    table = tmp_path / "t.csv"
    bench.write_csv(table, [{**_row(a, 0.5 + 0.01 * i), "repeat": ""}
                            for i, a in enumerate(_distinct(sp, 12))])
    args = ["--table", str(table), "--seeds", "1", "--trials", "6", "--no-shuffled",
            "--controllers", "random", "--noise-sd", "0.01", "--out", str(tmp_path)]
    assert bench.main(args) == 2
    assert "t_space.yaml" in capsys.readouterr().err
    (tmp_path / "t_space.yaml").write_text(
        (ROOT / "search_spaces" / "lora_only.yaml").read_text())
    assert bench.main(args) == 0
    assert "12 measured configurations" in capsys.readouterr().out


def test_recipes_first_is_wired(bench, space):
    ctrl = bench.make("lstm", space, 0, 20, {}, recipes=True)
    first = ctrl.ask()
    assert first.meta.get("recipe"), first
