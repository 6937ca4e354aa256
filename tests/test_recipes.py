"""Standard recipes first (issue 11 item 1): recipes expressed on each shipped space, the
RecipesFirst wrapper (order, budget, telling the inner controller, resume), and studies
that begin with them (fast: the analytic fake evaluator; slow: the real proxy)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from autopeft.controllers import make_controller
from autopeft.controllers.recipes import RecipesFirst, budget_note
from autopeft.recipes import RECIPES, Recipe, express
from autopeft.space import load_space, parse_space
from autopeft.testing.fakes import AnalyticObjective, objective_driver

# shipped space -> (the recipes it expresses, in order; the ones it skips)
SHIPPED = {
    "default.yaml": (["lora_r8_qv", "pfeiffer_adapter", "houlsby_adapter", "parallel_adapter",
                      "ia3", "bitfit", "prefix_tuning"], []),
    "lora_only.yaml": (["lora_r8_qv"], ["pfeiffer_adapter", "houlsby_adapter",
                                        "parallel_adapter", "ia3", "bitfit", "prefix_tuning"]),
    "autopeft_paper.yaml": (["pfeiffer_adapter", "parallel_adapter", "prefix_tuning"],
                            ["lora_r8_qv", "houlsby_adapter", "ia3", "bitfit"]),
}


def bound(name="default.yaml"):
    return load_space(name).bind(num_layers=6, hidden_size=384)


@pytest.mark.parametrize("space_name", sorted(SHIPPED))
def test_recipes_expressed_and_skipped_on_each_shipped_space(space_name):
    b = bound(space_name)
    done, skipped = express(b)
    want_done, want_skipped = SHIPPED[space_name]
    assert [x.name for x in done] == want_done
    assert [s.split(":")[0].removeprefix("recipe ") for s in skipped] == want_skipped
    for x in done:
        b.validate(x.assignment)
        cand = b.to_candidate(x.assignment)
        (m,) = cand.modules  # the recipe's module alone
        assert m.type == x.recipe.type
        assert m.layers == tuple(range(6)), "a standard recipe uses every layer"
        for k, v in x.recipe.params.items():
            assert (list(m[k]) if isinstance(m[k], tuple) else m[k]) == v


def test_default_space_runs_each_recipe_at_its_own_learning_rate():
    b = bound()
    for x in express(b)[0]:
        cand = b.to_candidate(x.assignment)
        assert cand.hyper["learning_rate"] == pytest.approx(x.recipe.learning_rate), x.name
        assert x.notes == (), x.notes


def test_lora_r8_is_exact_and_the_paper_space_says_why_it_skips_houlsby():
    m = bound().to_candidate(express(bound())[0][0].assignment).modules[0]
    assert (m["rank"], m["targets"], m["alpha"]) == (8, ("q", "v"), 16.0)
    skipped = express(bound("autopeft_paper.yaml"))[1]
    assert any("houlsby_adapter" in s and "placement cannot be 'houlsby'" in s
               for s in skipped)
    assert any("lora_r8_qv" in s and "no lora entry" in s for s in skipped)


def test_a_recipe_takes_the_nearest_size_and_learning_rate_with_a_note():
    space = parse_space("""
space: t
modules:
  adapter: {size: [8, 32], placement: [pfeiffer, houlsby]}
  lora: {rank: [4, 16]}
hyperparameters:
  learning_rate: {low: 1.0e-4, high: 2.0e-3, log: true}
""", "t.yaml").bind(6)
    done, skipped = express(space)
    by = {x.name: x for x in done}
    assert by["pfeiffer_adapter"].assignment["adapter.size"] == 32  # nearest to 64
    assert by["pfeiffer_adapter"].assignment["hp.learning_rate"] == 2e-3  # clipped
    assert any("size 64 -> 32" in n for n in by["pfeiffer_adapter"].notes)
    assert any("lora_r8_qv" in s and "rank cannot be 8" in s for s in skipped)


def test_a_required_module_that_cannot_be_switched_off_skips_the_others():
    space = parse_space("""
space: t
select: any
modules:
  lora: {rank: 8, required: true}
  bitfit: {}
""", "t.yaml").bind(6)
    done, skipped = express(space)
    assert [x.name for x in done] == ["lora_r8_qv"]
    assert any("bitfit" in s and "always adds lora" in s for s in skipped)


def test_an_unknown_module_type_is_skipped_not_fatal():
    done, skipped = express(bound(), RECIPES + (Recipe("full_ft", "no_such_type"),))
    assert len(done) == len(SHIPPED["default.yaml"][0])
    assert skipped == ["recipe full_ft: module type 'no_such_type' is not available"]


# -- the wrapper ----------------------------------------------------------------------

def _run(ctrl, n, space):
    driver = objective_driver(AnalyticObjective(space, seed=3), parallel=2, fail_every=7)
    return driver, driver.run(ctrl, n)


def test_recipes_come_first_then_the_inner_controller():
    b = bound()
    names = SHIPPED["default.yaml"][0]
    ctrl = make_controller("random", b, 5, recipes=True)
    assert isinstance(ctrl, RecipesFirst)
    _, proposals = _run(ctrl, len(names) + 5, b)
    assert [p.meta.get("recipe") for p in proposals[:len(names)]] == names
    assert all("recipe" not in p.meta for p in proposals[len(names):])
    # the inner stream is the one of trial k: proposal 7 is random's 8th draw
    plain = make_controller("random", b, 5)
    _, alone = _run(plain, len(names) + 5, b)
    assert [p.assignment for p in proposals[len(names):]] == \
        [p.assignment for p in alone[len(names):]]


def test_the_inner_controller_is_told_the_recipes():
    b = bound()
    ctrl = make_controller("tpe", b, 1, recipes=True, n_startup_trials=3)
    driver, _ = _run(ctrl, 10, b)
    driver.drain(ctrl)
    recipe_numbers = {r.number for r in driver.records if r.meta.get("recipe")}
    assert len(recipe_numbers) == 7 and recipe_numbers <= ctrl.inner.told
    told = [e for e in ctrl.inner._entries if e["number"] in recipe_numbers]
    assert len(told) == 7  # in TPE's model as observations


def test_max_trials_below_the_recipes_runs_the_first_ones_and_says_so():
    b = bound()
    ctrl = make_controller("random", b, 0, recipes=True, max_trials=3)
    _, proposals = _run(ctrl, 10, b)
    assert [p.meta["recipe"] for p in proposals] == ["lora_r8_qv", "pfeiffer_adapter",
                                                     "houlsby_adapter"]
    assert ctrl.ask() is None
    note = ctrl.notes(3)[-1]
    assert "only lora_r8_qv, pfeiffer_adapter, houlsby_adapter run" in note
    assert budget_note(["a", "b"], 2) is None and budget_note(["a"], None) is None


def test_settings_carry_the_flag_so_a_resume_wraps_again():
    b = bound()
    ctrl = make_controller("tpe", b, 0, recipes=True)
    assert ctrl.settings["recipes"] is True
    again = make_controller("tpe", b, 0, **json.loads(json.dumps(ctrl.settings)))
    assert isinstance(again, RecipesFirst)
    plain = make_controller("tpe", b, 0)
    assert "recipes" not in plain.settings
    assert not isinstance(make_controller("tpe", b, 0, **plain.settings), RecipesFirst)
    with pytest.raises(Exception, match="without recipes"):
        again.load_state_dict(plain.state_dict())


@pytest.mark.parametrize("name, cut", [("random", 3), ("random", 9), ("random", 12),
                                       ("tpe", 3), ("tpe", 7)])
def test_rebuild_from_trials_equals_the_uninterrupted_run(name, cut):
    """No saved state (a lost file): rebuild from the stored trials, live ones included
    (cut 3: two recipes still running; 7: the last recipes running, TPE not started), and
    continue: the same proposals. (TPE's own rebuild with its own trials still running
    is not exact, with or without recipes, so later cuts are tested on random only.)"""
    b = bound()
    settings = {"n_startup_trials": 4} if name == "tpe" else {}
    whole_driver, whole = _run(make_controller(name, b, 2, recipes=True, **settings), 16, b)
    driver, _ = _run(make_controller(name, b, 2, recipes=True, **settings), cut, b)
    live = [(n, p) for n, p in driver.in_flight]
    from autopeft.records import TrialRecord, TrialState

    records = list(driver.records) + [
        TrialRecord(number=n, state=TrialState.RUNNING, assignment=dict(p.assignment),
                    candidate={}, meta=dict(p.meta)) for n, p in live]
    fresh = make_controller(name, b, 2, recipes=True, **settings)
    fresh.rebuild(records)
    driver.run(fresh, 16)
    keys = [json.dumps([p.assignment, p.meta], sort_keys=True) for p in driver.proposals]
    want = [json.dumps([p.assignment, p.meta], sort_keys=True) for p in whole]
    assert keys == want


# -- studies --------------------------------------------------------------------------

def _fake_main(argv):  # the CLI with the analytic fake injected from Python
    from autopeft.cli import main
    from autopeft.testing.evaluators import analytic

    return main(argv, evaluator_factory=analytic)


def _search(tmp_path, monkeypatch, *extra):
    monkeypatch.chdir(tmp_path)
    exp = tmp_path / "fake.yaml"
    exp.write_text("name: fake\nmodel: minilm\n")
    return _fake_main(["search", "--space", "default.yaml", "--experiment", str(exp),
                       "--study", "s", "--quiet", *extra])


def test_a_study_begins_with_the_recipes_and_show_marks_them(tmp_path, monkeypatch, capsys):
    main = _fake_main

    assert _search(tmp_path, monkeypatch, "--trials", "9", "--controller", "tpe") == 0
    capsys.readouterr()
    assert main(["show", "s", "--json"]) == 0
    rows = sorted(json.loads(capsys.readouterr().out), key=lambda r: r["number"])
    assert [r["recipe"] for r in rows] == SHIPPED["default.yaml"][0] + [None, None]
    assert main(["show", "s"]) == 0
    assert "[recipe lora_r8_qv] lora(rank=8" in capsys.readouterr().out
    # resume with a larger budget: no recipe again, the inner controller goes on
    assert main(["resume", "s", "--trials", "11", "--quiet"]) == 0
    capsys.readouterr()
    main(["show", "s", "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 11 and sum(r["recipe"] is not None for r in rows) == 7


def test_no_recipes_flag_and_a_budget_note(tmp_path, monkeypatch, capsys):
    main = _fake_main

    assert _search(tmp_path, monkeypatch, "--trials", "2", "--no-recipes") == 0
    capsys.readouterr()
    main(["show", "s", "--json"])
    assert all(r["recipe"] is None for r in json.loads(capsys.readouterr().out))
    capsys.readouterr()
    monkeypatch.chdir(tmp_path)
    exp = tmp_path / "fake.yaml"
    assert main(["search", "--space", "default.yaml", "--experiment", str(exp), "--study",
                 "t", "--quiet", "--trials", "2"]) == 0
    err = capsys.readouterr().err
    assert "note: the budget of 2 trial(s) is below the 7 recipes" in err


@pytest.mark.slow
def test_a_real_study_runs_lora_r8_then_a_pfeiffer_adapter_first(tmp_path, monkeypatch,
                                                                  capsys):
    """Real MiniLM on TREC-6, a very short proxy: the first trials are the recipes."""
    import yaml

    from autopeft.cli import main
    from autopeft.resources import resolve

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AUTOPEFT_CACHE", str(tmp_path / "cache"))
    exp = yaml.safe_load(Path(resolve("default.yaml", "experiments")).read_text())
    exp["proxy"].update(train_examples=96, max_steps=6, eval_every=6, validation_examples=48)
    (tmp_path / "short.yaml").write_text(yaml.safe_dump(exp))
    assert main(["search", "--space", "default.yaml", "--experiment", "short.yaml",
                 "--study", "real", "--trials", "2", "--quiet"]) == 0
    capsys.readouterr()
    main(["show", "real", "--json"])
    rows = sorted(json.loads(capsys.readouterr().out), key=lambda r: r["number"])
    assert [r["recipe"] for r in rows] == ["lora_r8_qv", "pfeiffer_adapter"]
    assert all(r["state"] == "complete" for r in rows)
    lora = rows[0]
    assert lora["candidate"]["modules"][0]["rank"] == 8
    assert lora["metrics"]["extra"]["learning_rate"] == pytest.approx(2e-3)
    assert lora["metrics"]["steps"] == 6
    # the latency constraint (0.15 by default): LoRA deploys merged, the adapter is timed
    assert (lora["latency_basis"], lora["latency_ratio"]) == ("merged", 0.0)
    low, high = rows[1]["latency_interval"]
    assert rows[1]["latency_basis"] == "measured" and low <= rows[1]["latency_ratio"] <= high
    assert rows[1]["metrics"]["cost"]["latency_pairs"] >= 10


# -- the full fine-tuning reference ---------------------------------------------------

def test_full_finetuning_is_a_reference_not_a_default_recipe():
    from autopeft.config import ExperimentConfig
    from autopeft.cost import estimate
    from autopeft.models import model_info
    from autopeft.recipes import FULL_FINETUNING, REFERENCES, recipe_candidate
    from autopeft.reward import violations

    assert FULL_FINETUNING in REFERENCES and FULL_FINETUNING not in RECIPES
    assert 1e-5 <= FULL_FINETUNING.learning_rate <= 2e-4  # far below the PEFT modules'
    # a space without a `full` entry did not ask for it: no run and no note
    for name in SHIPPED:
        done, skipped = express(bound(name))
        assert "full_finetuning" not in [x.name for x in done]
        assert not any("full" in s for s in skipped)
    # trained directly (benchmarks): every weight, infeasible under the default 5 %
    cand = recipe_candidate(FULL_FINETUNING, 6)
    cost = estimate(cand, model_info("minilm"))
    assert cand.hyper == {"learning_rate": FULL_FINETUNING.learning_rate}
    assert cost.params_ratio == 1.0 and cost.mergeable
    assert violations(cost.to_dict(), ExperimentConfig().constraints) == (
        "params_ratio=1 > max_params_ratio=0.05",)


def test_a_space_with_a_full_entry_runs_the_reference_after_the_recipes():
    from autopeft.recipes import FULL_FINETUNING

    b = parse_space("""
space: t
modules:
  lora: {rank: [4, 8]}
  full:
    hyperparameters:
      learning_rate: {low: 1.0e-5, high: 2.0e-4, log: true}
hyperparameters:
  learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}
""", "t.yaml").bind(6)
    done, _ = express(b)
    assert [x.name for x in done] == ["lora_r8_qv", "full_finetuning"]
    full = b.to_candidate(done[-1].assignment)
    assert [m.type for m in full.modules] == ["full"]
    assert full.hyper["learning_rate"] == pytest.approx(FULL_FINETUNING.learning_rate)


def test_a_recipe_candidate_is_what_the_default_space_expresses():
    from autopeft.recipes import recipe_candidate

    b = bound()
    for x in express(b)[0]:
        want = b.to_candidate(x.assignment)
        got = recipe_candidate(x.recipe, 6)
        assert got.modules[0].type == want.modules[0].type, x.name
        assert dict(got.modules[0].params) == dict(want.modules[0].params), x.name
        assert got.modules[0].layers == want.modules[0].layers, x.name
        lr = want.modules[0].hyper.get("learning_rate", want.hyper.get("learning_rate"))
        assert got.hyper["learning_rate"] == pytest.approx(lr), x.name
