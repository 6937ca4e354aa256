"""validate(): candidates a model cannot take are refused before any training (pure Python)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from autopeft.candidate import Candidate, ModuleConfig as M
from autopeft.exceptions import CandidateError
from autopeft.methods import backend_for, validate
from autopeft.models import model_info

ALL6 = list(range(6))

# (id, model ref, modules, a fragment the message must contain)
BAD = [
    ("layer-out-of-range", "minilm", (M("lora", {}, [0, 6]),), "layer(s) [6]"),
    ("negative-layer", "minilm", (M("adapter", {}, [-1]),), "layer(s) [-1]"),
    ("rank-above-hidden", "minilm", (M("lora", {"rank": 385}, [0]),), "rank 385 exceeds"),
    ("rank-above-kv-width", "tiny-llama", (M("lora", {"rank": 40, "targets": ["v"]}, [0]),),
     "smallest dimension (32)"),
    ("unipelt-rank", "tiny-gpt2", (M("unipelt", {"rank": 65}, [0]),), "rank 65"),
    ("no-targets", "minilm", (M("lora", {"targets": []}, [0]),), "match nothing"),
    ("empty-layers", "minilm", (M("adapter", {}, []),), "empty layer set"),
    ("adapter-wider-than-hidden", "tiny-gpt2", (M("adapter", {"size": 65}, [0]),),
     "above the hidden size"),
    ("bitfit-on-llama", "tiny-llama", (M("bitfit", {}, [0]),), "no bias terms"),
    ("ia3-part-of-fused-qkv", "tiny-gpt2", (M("ia3", {"targets": ["k", "v"]}, [0]),),
     "fuses q+k+v"),
    ("bitfit-part-of-fused-qkv", "tiny-gpt2", (M("bitfit", {"targets": ["q"]}, [0]),), "c_attn"),
    ("pissa-on-gpt2-conv1d", "tiny-gpt2", (M("lora", {"init": "pissa"}, [0]),), "Conv1D"),
    ("prompt-in-a-mixture", "minilm", (M("prompt", {}), M("adapter", {}, [0])),
     "prompt tuning can only be combined with bitfit"),
    ("two-loras", "minilm", (M("lora", {}, [0]), M("unipelt", {}, [1])), "both bring a lora"),
    ("two-prefixes", "minilm", (M("prefix", {}, [0]), M("mam", {}, [1])), "both bring a prefix"),
    ("two-parallel", "minilm", (M("parallel_adapter", {}, [0]), M("mam", {}, [1])),
     "both bring a parallel"),
    ("pissa-in-mixture", "minilm", (M("lora", {"init": "pissa"}, [0]), M("adapter", {}, [1])),
     "comes from peft"),
    ("lora-o-in-mixture", "minilm", (M("lora", {"targets": ["o"]}, [0]), M("adapter", {}, [0])),
     "attention output (o)"),
    ("dora-in-mixture", "minilm", (M("dora", {}, [0]), M("adapter", {}, [1])),
     "AdapterHub adapters has no DoRA"),
    ("dora-rank", "minilm", (M("dora", {"rank": 400}, [0]),), "rank 400 exceeds"),
    ("rslora-o-in-mixture", "minilm", (M("rslora", {"targets": ["o"]}, [0]), M("prefix", {}, [1])),
     "attention output (o)"),
    ("rslora-and-lora", "minilm", (M("rslora", {}, [0]), M("lora", {}, [1])), "both bring a lora"),
    ("full-with-bitfit", "minilm", (M("full", {}), M("bitfit", {}, [0])),
     "full fine-tuning trains every weight already"),
    ("full-with-lora", "tiny-gpt2", (M("lora", {}, [0]), M("full", {})), "only module"),
]


@pytest.mark.parametrize("ref,modules,fragment", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_candidates_are_refused_naming_candidate_reason_and_fix(ref, modules, fragment):
    info = model_info(ref)
    cand = Candidate(modules, {}, info.num_layers)
    with pytest.raises(CandidateError) as err:
        validate(cand, info)
    text = str(err.value)
    assert cand.summary() in text
    assert fragment in text
    assert "fix:" in text


def test_duplicate_types_are_refused():
    info = model_info("minilm")
    cand = Candidate((M("lora", {}, [0]), M("lora", {}, [1])), {}, 6)
    with pytest.raises(CandidateError, match="appears twice"):
        validate(cand, info)


def test_candidate_resolved_for_another_depth_is_refused():
    with pytest.raises(CandidateError, match="12-layer model"):
        validate(Candidate((M("lora", {}, [0]),), {}, 12), model_info("minilm"))


def test_unknown_family_takes_prompt_tuning_only(tmp_path):
    (tmp_path / "config.json").write_text(
        '{"model_type": "t5", "d_model": 64, "num_heads": 4, "num_layers": 2, "vocab_size": 100}')
    info = model_info(str(tmp_path))
    assert info.family == "t5"
    validate(Candidate((M("prompt", {}),), {}, 2), info)
    with pytest.raises(CandidateError, match="family 't5'"):
        validate(Candidate((M("lora", {}, [0]),), {}, 2), info)


GOOD = [
    ("minilm", (M("lora", {"targets": ["q", "k", "v", "o", "ffn_in", "ffn_out"]}, ALL6),), "peft"),
    ("tiny-gpt2", (M("lora", {}, [0, 3]),), "peft"),  # q+v -> c_attn, documented
    ("tiny-gpt2", (M("ia3", {"targets": ["q", "k", "v", "ffn_out"]}, [1]),), "peft"),
    ("tiny-llama", (M("ia3", {}, [1]),), "peft"),
    ("minilm", (M("prefix", {}, ALL6),), "peft"),
    ("minilm", (M("prefix", {}, [0, 2]),), "adapters"),
    ("minilm", (M("prompt", {}), M("bitfit", {}, [0])), "peft"),
    ("minilm", (M("bitfit", {}, ALL6),), "own"),
    ("minilm", (), "none"),
    ("minilm", (M("adapter", {}, [0]), M("parallel_adapter", {}, [0]), M("prefix", {}, [0])),
     "adapters"),
    ("minilm", (M("dora", {}, ALL6),), "peft"),
    ("tiny-gpt2", (M("dora", {"targets": ["q", "k", "v"]}, [0]), M("bitfit", {}, [1])), "peft"),
    ("minilm", (M("rslora", {}, [2]),), "peft"),
    ("minilm", (M("rslora", {}, [2]), M("adapter", {}, [2])), "adapters"),
    ("minilm", (M("full", {}),), "own"),
    ("tiny-llama", (M("full", {}),), "own"),
]


@pytest.mark.parametrize("ref,modules,backend", GOOD)
def test_good_candidates_pass_and_pick_their_backend(ref, modules, backend):
    info = model_info(ref)
    cand = Candidate(modules, {}, info.num_layers)
    validate(cand, info)
    assert backend_for(cand) == backend


def test_validate_and_model_info_do_not_import_torch():
    code = (
        "import sys\n"
        "from autopeft.candidate import Candidate, ModuleConfig\n"
        "from autopeft.models import model_info\n"
        "from autopeft.methods import validate\n"
        "for ref in ('minilm', 'tiny-gpt2', 'tiny-llama'):\n"
        "    info = model_info(ref)\n"
        "    validate(Candidate((ModuleConfig('prompt', {}),), {}, info.num_layers), info)\n"
        "heavy = [m for m in ('torch', 'transformers', 'peft', 'adapters') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
