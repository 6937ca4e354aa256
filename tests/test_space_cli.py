"""`autopeft space check FILE`: exit 0 on a valid space, 1 with the located message on an
invalid one, and no file written either way."""
from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from autopeft.cli import main

BAD = "space: s\nmodules:\n  lora:\n    rank: [4, eight]\n"


def test_check_a_shipped_space_by_name(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["space", "check", "default.yaml", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "space default: valid" in out
    assert "decisions: 18" in out
    assert "cardinality: 244" in out
    assert "bound to 6 layers, hidden 384" in out
    assert out.count("\n  1. ") == 1 and "  3. " in out
    assert list(tmp_path.iterdir()) == []


def test_check_binds_to_the_requested_depth_and_lists_decisions(capsys) -> None:
    assert main(["space", "check", "autopeft_paper", "--num-layers", "24", "--decisions",
                 "--samples", "0"]) == 0
    out = capsys.readouterr().out
    assert "decisions: 27" in out and "shared.layers.mask.23" in out
    assert "bound to 24 layers\n" in out
    assert "cardinality: 22,330,474,496" in out
    assert "samples" not in out


def test_check_prints_log10_when_huge(capsys, tmp_path) -> None:
    f = tmp_path / "big.yaml"
    f.write_text("space: big\nmodules: {lora: {layers: mask}}\n")
    assert main(["space", "check", str(f), "--num-layers", "80"]) == 0
    assert "cardinality: about 10^24.08" in capsys.readouterr().out


def test_check_json(capsys) -> None:
    assert main(["space", "check", "lora_only", "--json", "--samples", "2"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["space"] == "lora_only" and data["num_layers"] == 6
    assert data["num_decisions"] == len(data["decisions"]) == 11
    assert data["cardinality"]["exact"] == 66528
    assert len(data["samples"]) == 2 and data["samples"][0]["candidate"]["num_layers"] == 6
    assert len(data["fingerprint"]) == 64


def test_same_seed_same_samples(capsys) -> None:
    main(["space", "check", "default", "--seed", "5", "--samples", "5"])
    first = capsys.readouterr().out
    main(["space", "check", "default", "--seed", "5", "--samples", "5"])
    assert capsys.readouterr().out == first


def test_invalid_space_exits_1_with_the_located_message(capsys, tmp_path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(BAD)
    assert main(["space", "check", str(f)]) == 1
    err = capsys.readouterr().err
    assert f"{f}:4: at modules.lora.rank[1]" in err and "'eight'" in err and "fix:" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


def test_space_that_does_not_fit_the_depth_exits_1(capsys, tmp_path) -> None:
    f = tmp_path / "deep.yaml"
    f.write_text("space: s\nmodules: {lora: {layers: {indices: [0, 13]}}}\n")
    assert main(["space", "check", str(f), "--num-layers", "24"]) == 0
    assert main(["space", "check", str(f), "--num-layers", "12"]) == 1
    assert "layer index 13 does not exist on a 12-layer model" in capsys.readouterr().err


def test_unknown_name_lists_the_shipped_spaces(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["space", "check", "defualt.yaml"]) == 1
    err = capsys.readouterr().err
    assert "default.yaml" in err and "autopeft_paper.yaml" in err and "lora_only.yaml" in err


def test_model_binds_to_its_shape_and_prints_cost_lines(capsys, monkeypatch) -> None:
    calls = {}
    fake_models = types.ModuleType("autopeft.models")
    fake_models.model_info = lambda ref: types.SimpleNamespace(num_layers=3, hidden_size=16)

    def summarize_space(bound, model_ref, n):
        calls.update(layers=bound.num_layers, model=model_ref, n=n)
        return ["cost: trainable 0.1%..2%"]

    fake_cost = types.ModuleType("autopeft.cost")
    fake_cost.summarize_space = summarize_space
    monkeypatch.setitem(sys.modules, "autopeft.models", fake_models)
    monkeypatch.setitem(sys.modules, "autopeft.cost", fake_cost)
    assert main(["space", "check", "lora_only", "--model", "tiny", "--samples", "1"]) == 1
    assert "lora.rank <= 16" in capsys.readouterr().err  # rank 32 does not fit hidden 16
    assert main(["space", "check", "autopeft_paper", "--model", "tiny", "--samples", "1",
                 "--hidden-size", "512"]) == 0
    out = capsys.readouterr().out
    assert "bound to 3 layers, hidden 512 (tiny)" in out
    assert "cost: trainable 0.1%..2%" in out
    assert calls == {"layers": 3, "model": "tiny", "n": 1}


def test_model_without_summarize_space_skips_cost_quietly(capsys, monkeypatch) -> None:
    fake_models = types.ModuleType("autopeft.models")
    fake_models.model_info = lambda ref: types.SimpleNamespace(num_layers=6, hidden_size=384)
    monkeypatch.setitem(sys.modules, "autopeft.models", fake_models)
    monkeypatch.setitem(sys.modules, "autopeft.cost", types.ModuleType("autopeft.cost"))
    assert main(["space", "check", "default", "--model", "m"]) == 0
    assert "bound to 6 layers, hidden 384 (m)" in capsys.readouterr().out


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autopeft", "space", "check", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", ["default.yaml", "autopeft_paper", "lora_only.yaml"])
def test_subprocess_exit_0_for_shipped_spaces_from_any_directory(name, tmp_path) -> None:
    res = _cli([name], tmp_path)
    assert res.returncode == 0, res.stderr
    assert "valid" in res.stdout
    assert list(tmp_path.iterdir()) == []


def test_subprocess_exit_1_for_an_invalid_space(tmp_path) -> None:
    (tmp_path / "bad.yaml").write_text(BAD)
    res = _cli(["bad.yaml"], tmp_path)
    assert res.returncode == 1
    assert res.stdout == ""
    assert "bad.yaml:4: at modules.lora.rank[1]" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


def test_space_without_subcommand_shows_help(capsys) -> None:
    assert main(["space"]) == 64  # a usage error (2 is "unknown study")
    assert "check" in capsys.readouterr().out


def test_negative_samples_is_a_usage_error(capsys) -> None:
    assert main(["space", "check", "default", "--samples", "-1"]) == 64
    assert "--samples: must be a whole number of at least 0" in capsys.readouterr().err
