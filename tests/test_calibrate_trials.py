"""calibrate.train_trials: chosen trials (pruned ones too) trained at full fidelity as
calibration records, kept across runs, reusable by finalize (what bench_search does)."""
from __future__ import annotations

import json

from autopeft.calibrate import full_experiment, reusable, train_trials
from autopeft.cli import main as cli_main
from autopeft.records import TrialState
from autopeft.storage import open_storage
from autopeft.study import trial_seed
from calibrate_fakes import FidelityFake, fidelity


def _study(tmp_path, monkeypatch, n=5):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AUTOPEFT_FAKE", json.dumps({}))
    exp = tmp_path / "fake.yaml"
    exp.write_text("name: fake\nmodel: minilm\n")
    assert cli_main(["search", "--space", "default.yaml", "--experiment", str(exp),
                     "--trials", str(n), "--study", "s", "--quiet", "--seed", "3",
                     "--controller", "random"], evaluator_factory=fidelity) == 0
    return open_storage(f"sqlite:///{tmp_path / 'autopeft.db'}")


def test_the_given_trials_are_trained_once_and_finalize_reuses_them(tmp_path, monkeypatch):
    storage = _study(tmp_path, monkeypatch)
    trials = storage.get_trials("s")
    recipes = [t for t in trials if t.meta.get("recipe")]
    assert len(recipes) == 5                     # the study began with the recipes
    fake = FidelityFake({})
    stored, trained, reused = train_trials(storage, "s", trials, evaluator=fake)
    assert trained == [t.number for t in trials] and reused == []
    assert all(stored[t.number].status == "complete" for t in trials)
    assert all(c == (t.number, "full") for c, t in zip(fake.calls, trials))
    # the records carry the seed finalize uses, so it trains nothing
    again = FidelityFake({})
    _, trained, reused = train_trials(storage, "s", trials, evaluator=again)
    assert trained == [] and reused == [t.number for t in trials] and again.calls == []
    # finalize's test for reuse (autopeft.finalize): a complete record under the full
    # schedule whose seed is the one finalize would train that trial with
    info = storage.get_study("s")
    experiment = full_experiment(info.experiment)
    for t in trials:
        rec = reusable(storage, "s", t.number, experiment)
        assert rec is not None and rec.seed == trial_seed(info.seed, t.number)


def test_a_pruned_trial_can_be_trained(tmp_path, monkeypatch):
    import dataclasses

    storage = _study(tmp_path, monkeypatch, n=2)
    pruned = dataclasses.replace(storage.get_trials("s")[0], state=TrialState.PRUNED,
                                 reward=None)
    stored, trained, _ = train_trials(storage, "s", [pruned], evaluator=FidelityFake({}))
    assert trained == [pruned.number]
    assert stored[pruned.number].status == "complete"
    assert stored[pruned.number].proxy_reward is None
