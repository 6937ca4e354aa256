"""experiments/bench_search.py: the comparison it prints (fast, on synthetic rows), its
experiment files (the default search on each), and a real smoke run (slow)."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAST = re.compile(r"^search_beats_recipes=(\d+)/(\d+) mean_test_gain=([+-]\d+\.\d\d) "
                  r"vs_full_ft=([+-]\d+\.\d\d) budget_trials=(\d+)$")


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_search",
                                                  ROOT / "experiments" / "bench_search.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up there
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop(spec.name, None)


def row(d, side, acc, reward, seed=0, params=0.003, **kw):
    return {"dataset": d, "side": side, "seed": seed, "test_acc": acc, "test_reward": reward,
            "params_ratio": params, "flops_ratio": 0.0, "n_test": 400,
            "candidate": "c", **kw}


def rows_for(d, winner, recipes, full, seed=0, params=0.003):
    out = [row(d, "winner", *winner, seed=seed, params=params), row(d, "full_ft", *full,
                                                                   seed=seed, params=1.0)]
    out += [row(d, f"recipe:{n}", a, r, seed=seed) for n, (a, r) in recipes.items()]
    return out


def test_beats_needs_the_best_test_accuracy_and_a_higher_reward_than_every_recipe(bench):
    recipes = {"lora": (0.80, 0.79), "ia3": (0.78, 0.7795)}
    rows = (rows_for("a", (0.82, 0.81), recipes, (0.83, -0.17))       # beats
            + rows_for("b", (0.80, 0.79), recipes, (0.80, -0.20))     # a tie with lora: no
            + rows_for("c", (0.81, 0.77), recipes, (0.80, -0.20)))    # accuracy yes, R no
    s = bench.compare(rows, ["a", "b", "c"], [0])
    assert [s["per"][d]["beats"] for d in "abc"] == [True, False, False]
    assert s["k"] == 1 and s["n"] == 3
    assert s["per"]["a"]["best_recipe"] == "recipe:lora"
    assert math.isclose(s["mean_gain"], (2.0 + 0.0 + 1.0) / 3)
    assert math.isclose(s["vs_full"], (-1.0 + 0.0 + 1.0) / 3)
    assert math.isclose(s["per"]["a"]["se"], 100 * math.sqrt(0.82 * 0.18 / 400))
    line = bench.last_line(s, 12)
    assert line == ("search_beats_recipes=1/3 mean_test_gain=+1.00 vs_full_ft=+0.00 "
                    "budget_trials=12")
    assert LAST.match(line)


def test_best_reward_is_taken_over_every_recipe_not_only_the_most_accurate(bench):
    # the most accurate recipe is costly; a cheap one has the higher reward
    recipes = {"houlsby": (0.85, 0.77), "bitfit": (0.80, 0.799)}
    s = bench.compare(rows_for("a", (0.85, 0.79), recipes, (0.86, -0.14)), ["a"], [0])
    p = s["per"]["a"]
    assert p["best_recipe"] == "recipe:houlsby" and p["best_reward_recipe"] == "recipe:bitfit"
    assert not p["beats"]  # 0.79 < 0.799


def test_seeds_are_averaged_and_incomplete_seeds_are_left_out(bench):
    recipes = {"lora": (0.80, 0.79)}
    rows = rows_for("a", (0.82, 0.81), recipes, (0.83, -0.17), seed=0) + \
        rows_for("a", (0.78, 0.77), recipes, (0.83, -0.17), seed=1) + \
        [row("a", "winner", 0.99, 0.99, seed=2)]         # seed 2 lacks its recipes
    s = bench.compare(rows, ["a"], [0, 1, 2])
    p = s["per"]["a"]
    assert p["seeds"] == [0, 1]
    assert math.isclose(p["sides"]["winner"]["test_acc"], 0.80)
    assert math.isclose(p["seed_sd"], 100 * math.sqrt(2 * 0.02 ** 2))
    assert not p["beats"]                                 # 0.80 vs 0.80, R 0.79 vs 0.79


def test_a_failed_recipe_is_left_out_and_an_unmeasured_dataset_counts_as_not_beaten(bench):
    rows = rows_for("a", (0.82, 0.81), {"lora": (0.80, 0.79)}, (0.83, -0.17))
    rows.append({**row("a", "recipe:prefix", None, None), "error": "nan loss"})
    s = bench.compare(rows, ["a", "b"], [0])
    assert s["per"]["b"] is None and s["measured"] == ["a"]
    assert s["k"] == 1 and s["n"] == 2
    assert "recipe:prefix" not in s["per"]["a"]["sides"]


def test_params_target_counts_winners_at_one_percent_within_a_point(bench):
    recipes = {"lora": (0.80, 0.79)}
    rows = rows_for("a", (0.82, 0.81), recipes, (0.825, -0.17), params=0.009) + \
        rows_for("b", (0.82, 0.81), recipes, (0.84, -0.16), params=0.009) + \
        rows_for("c", (0.82, 0.81), recipes, (0.82, -0.18), params=0.02)
    s = bench.compare(rows, ["a", "b", "c"], [0])
    assert s["small"] == 2 and s["close_and_small"] == 1


def test_results_are_kept_per_row_and_other_settings_are_refused(bench, tmp_path):
    path = tmp_path / "r.json"
    res = bench.Results(path, {"smoke": True})
    res.add({"dataset": "a", "side": "probe", "seed": 0, "cpu_seconds": 1.0})
    res.add({"dataset": "a", "side": "probe", "seed": 0, "cpu_seconds": 2.0})  # replaces
    again = bench.Results(path, {"smoke": True})
    assert again.rows == [{"dataset": "a", "side": "probe", "seed": 0, "cpu_seconds": 2.0}]
    with pytest.raises(SystemExit, match="other settings"):
        bench.Results(path, {"smoke": False})


def test_each_benchmark_experiment_is_the_default_one_on_other_data(bench):
    """The benchmark runs *the default search*: every section but the data must be the
    default experiment's (a change of defaults must reach these files too)."""
    from autopeft.config import load_experiment

    default = load_experiment("default").to_dict()
    sources = set()
    for name in bench.EXPERIMENTS:
        cfg = load_experiment(name).to_dict()
        sources.add(cfg["data"]["source"])
        for key in set(default) - {"name", "data", "source"}:
            assert cfg[key] == default[key], (name, key)
        assert {k: v for k, v in cfg["data"].items() if k != "source"} == \
            {k: v for k, v in default["data"].items() if k != "source"}, name
    assert len(sources) == len(bench.EXPERIMENTS) >= 4


def test_the_benchmark_runs_the_clis_default_controller(bench):
    from autopeft.cli.search_cmd import DEFAULT_CONTROLLER

    assert bench.CONTROLLER == DEFAULT_CONTROLLER


@pytest.mark.slow
def test_smoke_run_prints_the_comparison_of_its_real_rows_and_resumes(tmp_path):
    """A real smoke run (MiniLM, tiny sizes, TREC-6): its last line is the comparison of
    the rows it stored, and a rerun measures nothing again and prints the same line."""
    cmd = [sys.executable, str(ROOT / "experiments" / "bench_search.py"), "--smoke",
           "--workdir", str(tmp_path / "w")]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AUTOPEFT_CACHE": str(tmp_path / "cache")}
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200,
                           cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    line = first.stdout.strip().splitlines()[-1]
    m = LAST.match(line)
    assert m, line
    data = json.loads((tmp_path / "w" / "smoke" / "bench_search.json").read_text())
    rows = data["rows"]
    sides = {r["side"] for r in rows}
    recipes = {s for s in sides if s.startswith("recipe:")}
    assert {"probe", "search", "winner", "full_ft"} <= sides and len(recipes) == 7
    # real rows: real accuracies in [0, 1], CPU measured, full FT trains every parameter
    full = next(r for r in rows if r["side"] == "full_ft")
    assert full["params_ratio"] == 1.0 and full["cpu_seconds"] > 0
    search = next(r for r in rows if r["side"] == "search")
    probe = next(r for r in rows if r["side"] == "probe")
    assert search["budget_cpu"] == pytest.approx(12 * probe["cpu_seconds"])
    # the budget stops the search: no trial started after the CPU sum passed it
    assert search["trials"] < 10 * 12
    # the printed figures are those of the stored rows, recomputed here independently
    win = next(r for r in rows if r["side"] == "winner")
    rec = [r for r in rows if r["side"] in recipes]
    best = max(rec, key=lambda r: (r["test_acc"], r["test_reward"]))
    beats = win["test_acc"] >= best["test_acc"] and \
        win["test_reward"] > max(r["test_reward"] for r in rec)
    assert m.group(1, 2) == (str(int(beats)), "1")
    assert float(m.group(3)) == pytest.approx(100 * (win["test_acc"] - best["test_acc"]),
                                              abs=0.006)
    assert float(m.group(4)) == pytest.approx(100 * (win["test_acc"] - full["test_acc"]),
                                              abs=0.006)
    assert m.group(5) == "12"
    # a recipe that won reproduces its own row exactly (same candidate, same seed)
    if win.get("recipe"):
        twin = next(r for r in rec if r["side"] == f"recipe:{win['recipe']}")
        assert twin["test_acc"] == win["test_acc"] and not beats
    # the rerun skips every row: same line, no training
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600,
                           cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.strip().splitlines()[-1] == line
    assert "full-schedule training" not in again.stderr and "probe" not in again.stderr
    assert json.loads((tmp_path / "w" / "smoke" / "bench_search.json").read_text()) == data
