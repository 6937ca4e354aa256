"""Every controller through the real study loop (CLI, SQLite storage, serial executor, the
analytic fake evaluator): a search stopped at 12 trials and resumed to 20 proposes exactly
what an uninterrupted 20-trial search proposes, via the saved controller state."""
from __future__ import annotations

import json

import pytest

from autopeft.cli import main as cli_main
from autopeft.testing.study_fakes import analytic

PRESETS = ["random", "tpe", "motpe", "nsga2", "lstm", "pbt"]


def main(argv):  # the CLI with the analytic fake injected from Python
    return cli_main(argv, evaluator_factory=analytic)


def _trials(db, study):
    from autopeft.storage import open_storage

    storage = open_storage(f"sqlite:///{db}")
    try:
        return storage.get_trials(study), storage.load_controller_state(study)
    finally:
        storage.close()


@pytest.mark.parametrize("recipes", [True, False], ids=["recipes", "no-recipes"])
@pytest.mark.parametrize("preset", PRESETS)
def test_resumed_study_proposes_what_an_uninterrupted_one_does(preset, recipes, tmp_path,
                                                               monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AUTOPEFT_FAKE", "{}")
    exp = tmp_path / "fake.yaml"
    exp.write_text("name: fake\nmodel: minilm\n")
    common = ["--space", "lora_only.yaml", "--experiment", str(exp), "--controller", preset,
              "--seed", "5", "--quiet"] + ([] if recipes else ["--no-recipes"])
    assert main(["search", *common, "--trials", "20", "--study", "whole"]) == 0
    assert main(["search", *common, "--trials", "12", "--study", "part"]) == 0
    assert main(["resume", "part", "--trials", "20", "--quiet"]) == 0
    capsys.readouterr()

    whole, _ = _trials(tmp_path / "autopeft.db", "whole")
    part, state = _trials(tmp_path / "autopeft.db", "part")
    assert [t.number for t in part] == list(range(20))
    assert all(t.state.finished for t in part)
    assert state["controller"] == preset and state["told"] == list(range(20))

    def key(t):
        return json.dumps([t.assignment, t.warm_start_from], sort_keys=True)

    assert [key(t) for t in part] == [key(t) for t in whole]
    # lora_only.yaml expresses one recipe (LoRA r=8 on q,v): trial 0
    assert [t.meta.get("recipe") for t in part[:2]] == (["lora_r8_qv", None] if recipes
                                                       else [None, None])
    if preset == "pbt":  # members continue from checkpoints of finished trials
        warm = [t for t in part if t.warm_start_from is not None]
        assert len(warm) == (11 if recipes else 12)  # 8 members a round, after the recipe
        assert all(t.warm_start_from < t.number for t in warm)
