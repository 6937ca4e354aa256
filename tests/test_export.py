"""Export without training: configs, the candidate YAML, provenance, refusal of a used directory,
and agreement of the configs-only files with what autopeft.methods actually builds."""
from __future__ import annotations

import json

import pytest

from autopeft.candidate import Candidate, ModuleConfig as M
from autopeft.exceptions import ExportError
from autopeft.export import CANDIDATE_FILE, WEIGHTS_DIR, export_candidate, load_exported
from moduletype_cases import TYPES

ALL6 = list(range(6))


def cand(*modules, hyper=None):
    return Candidate(tuple(modules), hyper or {}, 6)


PROV = {"study": "s1", "trial": 7, "seed": 11, "space_fingerprint": "ab" * 32,
        "metrics": {"metric": 0.91, "metric_name": "accuracy"}, "experiment": {"model": "minilm"}}

# candidate, library expected, complete (the library artifact alone holds everything);
# one case per registered type from tests/moduletype_cases.py, then variants and mixtures
CASES = {
    **{f"type-{t.type}": (cand(*t.modules), t.library, t.complete) for t in TYPES},
    "rslora+adapter": (cand(M("rslora", {"rank": 4}, [0]), M("adapter", {"size": 8}, [1])),
                       "adapters", True),
    "lora": (cand(M("lora", {"rank": 4, "targets": ["q", "v", "ffn_out"]}, [3, 4, 5]),
                  hyper={"learning_rate": 3e-4}), "peft", True),
    "ia3": (cand(M("ia3", {}, [0, 1, 2])), "peft", True),
    "prompt": (cand(M("prompt", {"length": 8})), "peft", True),
    "prefix-all-layers": (cand(M("prefix", {"length": 4, "bottleneck": 16}, ALL6)), "peft", True),
    "prefix-subset": (cand(M("prefix", {"length": 4}, [0, 1])), "adapters", True),
    "adapter": (cand(M("adapter", {"size": 16}, [2, 3, 4, 5])), "adapters", True),
    "mam": (cand(M("mam", {"size": 8}, ALL6)), "adapters", True),
    "paper-mix": (cand(M("adapter", {"size": 8}, ALL6), M("parallel_adapter", {"size": 8}, ALL6),
                       M("prefix", {"length": 4}, ALL6)), "adapters", False),
    "lora+bitfit": (cand(M("lora", {}, ALL6), M("bitfit", {}, ALL6)), "peft", False),
    "bitfit": (cand(M("bitfit", {"targets": ["q", "v"]}, ALL6)), None, False),
    "head-only": (cand(), None, False),
}


@pytest.mark.parametrize("name", list(CASES))
def test_configs_only_export_round_trips(tmp_path, name):
    c, library, complete = CASES[name]
    out = export_candidate(c, tmp_path / "out", model_ref="minilm", provenance=PROV)
    back, prov = load_exported(out)
    assert back == c and back.key() == c.key()
    art = prov["artifact"]
    assert (art["library"], art["complete"], art["weights"]) == (library, complete, False)
    files = sorted(p.name for p in out.iterdir())
    want = [CANDIDATE_FILE] + (["adapter_config.json"] if library else [])
    assert files == sorted(want) == sorted(art["files"] + [CANDIDATE_FILE])
    # the caller's provenance is kept; versions are what wrote the files
    for k, v in PROV.items():
        assert prov[k] == v
    assert prov["model"] == "minilm" and prov["autopeft_version"]
    assert {"torch", "peft", "adapters", "transformers"} <= set(prov["library_versions"])
    assert load_exported(out / CANDIDATE_FILE)[0] == c  # the yaml path works too


def test_a_model_left_to_the_default_is_recorded(tmp_path):
    out = export_candidate(CASES["ia3"][0], tmp_path / "d", model_ref=None,
                           provenance={"model": None, "trial": 2})
    _, prov = load_exported(out)
    assert prov["model"] == "minilm" and prov["trial"] == 2


def test_peft_config_loads_with_plain_peft(tmp_path):
    peft = pytest.importorskip("peft")
    c, _, _ = CASES["lora"]
    out = export_candidate(c, tmp_path / "lora", model_ref="minilm", provenance={})
    config = peft.PeftConfig.from_pretrained(str(out))
    assert isinstance(config, peft.LoraConfig)
    assert config.r == 4 and config.task_type == "SEQ_CLS" and config.modules_to_save == ["classifier"]
    assert sorted(config.target_modules) == sorted(
        f"bert.encoder.layer.{i}.{rel}" for i in (3, 4, 5)
        for rel in ("attention.self.query", "attention.self.value", "output.dense"))
    again = export_candidate(c, tmp_path / "again", model_ref="minilm", provenance={})
    assert (again / "adapter_config.json").read_text() == (out / "adapter_config.json").read_text()


@pytest.mark.parametrize("name", ["lora", "ia3", "prompt", "prefix-all-layers", "type-dora",
                                  "type-rslora"])
def test_configs_only_peft_config_equals_the_built_one(minilm, tmp_path, name):
    """What export writes without weights is what methods.build gives peft."""
    from autopeft.methods import build

    c, _, _ = CASES[name]
    mine = json.loads((export_candidate(c, tmp_path / "a", model_ref="minilm", provenance={})
                       / "adapter_config.json").read_text())
    built = build(minilm, c, seed=0)
    theirs = built.model.peft_config["default"].to_dict()
    # peft fills these in when it wraps a model (and again when it loads one)
    filled = {"num_layers", "num_attention_heads", "token_dim", "num_transformer_submodules",
              "inference_mode"}
    for key, value in mine.items():
        if key in filled:
            continue
        other = theirs.get(key)
        if key == "modules_to_save":  # peft's SEQ_CLS wrapper appends classifier and score
            assert value == ["classifier"] and set(other) == {"classifier", "score"}
        elif isinstance(other, (set, list)) and isinstance(value, list):
            assert sorted(value) == sorted(other), key
        elif key == "peft_type":
            assert value == str(other.value), key
        else:
            assert value == (str(other.value) if hasattr(other, "value") else other), key


@pytest.mark.parametrize("name", ["adapter", "prefix-subset", "mam", "paper-mix",
                                  "rslora+adapter"])
def test_configs_only_adapters_config_equals_what_save_adapter_writes(minilm, tmp_path, name):
    from autopeft.methods import build
    from autopeft.methods._adapters import NAME

    c, _, _ = CASES[name]
    mine = json.loads((export_candidate(c, tmp_path / "a", model_ref="minilm", provenance={})
                       / "adapter_config.json").read_text())
    built = build(minilm, c, seed=0)
    built.model.save_adapter(str(tmp_path / "saved"), NAME)
    theirs = json.loads((tmp_path / "saved" / "adapter_config.json").read_text())
    assert mine == theirs


def test_refuses_a_non_empty_directory_and_leaves_it_alone(tmp_path):
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("mine")
    with pytest.raises(ExportError) as err:
        export_candidate(CASES["lora"][0], used, model_ref="minilm", provenance={})
    msg = str(err.value)
    assert str(used) in msg and "--out" in msg and "new directory" in msg
    assert [p.name for p in used.iterdir()] == ["notes.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["used"]  # no partial directory left
    empty = tmp_path / "empty"
    empty.mkdir()
    assert export_candidate(CASES["ia3"][0], empty, model_ref="minilm", provenance={}) == empty
    assert (empty / CANDIDATE_FILE).is_file()


def test_a_failed_export_leaves_nothing_behind(tmp_path):
    from autopeft.exceptions import CandidateError

    bad = Candidate((M("lora", {"rank": 8}, [0, 9]),), {}, 6)  # layer 9 on a 6-layer model
    with pytest.raises(CandidateError):
        export_candidate(bad, tmp_path / "out", model_ref="minilm", provenance={})
    assert list(tmp_path.iterdir()) == []


def test_load_exported_errors_name_the_path_and_the_fix(tmp_path):
    with pytest.raises(ExportError, match="autopeft_candidate.yaml") as err:
        load_exported(tmp_path)
    assert str(tmp_path) in str(err.value) and "fix:" in str(err.value)
    (tmp_path / CANDIDATE_FILE).write_text("format: something-else/9\ncandidate: {}\n")
    with pytest.raises(ExportError, match="format"):
        load_exported(tmp_path)
    (tmp_path / CANDIDATE_FILE).write_text(
        "format: autopeft-export/1\ncandidate: {modules: [{type: lora, ranks: 4}]}\n")
    with pytest.raises(ExportError, match="ranks"):
        load_exported(tmp_path)


def test_export_with_weights_reloads_through_autopeft(minilm, minilm_batch, tmp_path):
    """BitFit beside LoRA: peft's files miss the biases, autopeft_weights has them all."""
    import torch

    from autopeft.methods import build

    c, _, _ = CASES["lora+bitfit"]
    built = build(minilm, c, seed=0)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in built.trainable_parameters().values():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    inputs, _ = minilm_batch
    built.model.eval()
    with torch.no_grad():
        want = built.model(**inputs).logits
    out = export_candidate(c, tmp_path / "w", model_ref="minilm", provenance={"trial": 1},
                           built=built)
    back, prov = load_exported(out)
    assert prov["artifact"]["weights"] and prov["artifact"]["autopeft_weights"] == WEIGHTS_DIR
    assert "bitfit" in prov["artifact"]["not_in_library_artifact"]
    again = build(minilm, back, seed=5)
    again.load_adapter_weights(out / WEIGHTS_DIR)
    again.model.eval()
    with torch.no_grad():
        got = again.model(**inputs).logits
    torch.testing.assert_close(got, want)


def test_weights_of_another_candidate_are_refused(minilm, tmp_path):
    from autopeft.methods import build

    built = build(minilm, CASES["ia3"][0], seed=0)
    with pytest.raises(ExportError, match="belong to"):
        export_candidate(CASES["lora"][0], tmp_path / "x", model_ref="minilm", provenance={},
                         built=built)


def test_full_fine_tuning_exports_the_whole_model_not_an_adapter(minilm, minilm_batch, tmp_path):
    """With weights: transformers' own files (every weight, once); autopeft_weights/ is not
    written beside them. The reload in a fresh process is in test_export_reload.py."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from autopeft.methods import build

    c = cand(M("full", {}))
    built = build(minilm, c, seed=0)
    with torch.no_grad():
        built.model.bert.embeddings.word_embeddings.weight.add_(0.01)
    out = export_candidate(c, tmp_path / "full", model_ref="minilm", provenance={}, built=built)
    _, prov = load_exported(out)
    art = prov["artifact"]
    assert (art["library"], art["complete"], art["weights"]) == ("transformers", True, True)
    assert "autopeft_weights" not in art and not (out / WEIGHTS_DIR).exists()
    assert {"config.json", "model.safetensors"} <= set(art["files"])
    assert not (out / "adapter_config.json").exists()
    again = AutoModelForSequenceClassification.from_pretrained(str(out)).eval()
    inputs, _ = minilm_batch
    built.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(again(**inputs).logits, built.model(**inputs).logits)
