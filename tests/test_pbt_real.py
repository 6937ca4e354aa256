"""PBT with weight inheritance on the real thing: MiniLM, TREC-6, lora_only.yaml, real
training through the CLI. Before the loader compared only the weights' architecture,
every exploit whose LoRA alpha or dropout was explored (the default explore list) failed
with "saved for a different architecture"; only members continuing their own checkpoint
succeeded. Here every exploit completes, and the weights it starts from are its
parent's checkpoint, tensor for tensor.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from autopeft.cli import main

pytestmark = pytest.mark.slow

POPULATION, ROUNDS = 4, 2


@pytest.fixture()
def files(tmp_path: Path) -> tuple[Path, Path]:
    exp = {"name": "pbt-real", "model": "minilm", "data": {"source": "builtin:trec6"},
           "proxy": {"train_examples": 96, "max_steps": 4, "validation_examples": 48,
                     "eval_every": 2, "bf16": False},
           "optimizer": {"batch_size": 16}, "resources": {"cpus": 1}, "seed": 0}
    preset = {"controller": "pbt",
              "settings": {"population_size": POPULATION, "rounds": ROUNDS, "quantile": 0.5,
                           "resample_probability": 0.0}}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(exp))
    (tmp_path / "pbt_small.yaml").write_text(yaml.safe_dump(preset))
    return tmp_path / "exp.yaml", tmp_path / "pbt_small.yaml"


def test_every_exploit_completes_from_its_parents_weights(tmp_path, monkeypatch, capsys,
                                                          files):
    import torch
    from safetensors.torch import load_file

    from autopeft.methods.built import WEIGHTS_FILE, Built

    loads: list[tuple[str, bool]] = []  # (checkpoint, the model then held exactly it)
    real_load = Built.load_adapter_weights

    def spy(self, directory):
        real_load(self, directory)  # the real loader; raises as it would
        saved = load_file(str(Path(directory) / WEIGHTS_FILE))
        now = self.trainable_parameters()
        loads.append((str(Path(directory).resolve()), saved.keys() == now.keys() and all(
            torch.equal(saved[k], now[k].detach().cpu()) for k in saved)))

    monkeypatch.setattr(Built, "load_adapter_weights", spy)
    monkeypatch.chdir(tmp_path)
    exp, preset = files
    assert main(["search", "--space", "lora_only.yaml", "--experiment", str(exp),
                 "--controller", str(preset), "--trials", str(POPULATION * ROUNDS),
                 "--study", "pbt", "--seed", "3", "--quiet",
                 "--no-recipes"]) == 0  # rounds of POPULATION members from trial 0
    capsys.readouterr()
    assert main(["show", "pbt", "--json"]) == 0
    rows = {r["number"]: r for r in json.loads(capsys.readouterr().out)}
    assert sorted(rows) == list(range(POPULATION * ROUNDS))
    assert all(r["state"] == "complete" for r in rows.values()), {
        n: r["error"] for n, r in rows.items() if r["state"] != "complete"}

    from autopeft.storage import open_storage

    with open_storage(None) as storage:
        trials = {t.number: t for t in storage.get_trials("pbt")}
    exploits = [t for t in trials.values() if t.meta.get("parent") is not None]
    assert len(exploits) == POPULATION // 2  # quantile 0.5 of the population, round 1
    moved = 0
    for t in exploits:
        parent = trials[t.warm_start_from]
        assert parent.meta["member"] == t.meta["parent"] != t.meta["member"]
        checkpoint = str(Path(parent.metrics.checkpoint).resolve())
        assert (checkpoint, True) in loads  # it started from exactly the parent's weights
        assert t.metrics.intermediate[0][0] > parent.metrics.steps  # and continued counting
        moved += any(t.assignment[k] != parent.assignment[k]
                     for k in ("lora.alpha", "lora.dropout"))
    assert moved, "no exploit explored alpha or dropout: the test would not see the defect"
    assert len(loads) == POPULATION  # round 1: every member warm-starts (exploit or continue)
