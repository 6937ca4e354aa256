"""Every module type that applies, built on the tiny GPT-2 and Llama decoders (4 layers each)."""
from __future__ import annotations

import pytest

from autopeft.candidate import Candidate, ModuleConfig as M
from autopeft.exceptions import CandidateError
from fixtures_models import make_batch, sites

ALL = range(4)


def at(layers, *wheres):
    return {f"L{i}:{w}" for i in layers for w in wheres}


# (id, modules, expected trainable sites, identity at step 0)
GPT2 = [
    ("lora-qv-fused", (M("lora", {}, [0, 3]),), at([0, 3], "attn.c_attn/lora"), True),
    ("lora-o-ffn-zero", (M("lora", {"targets": ["o", "ffn_in", "ffn_out"], "init": "zero"},
                           [1]),),
     at([1], "attn.c_proj/lora", "mlp.c_fc/lora", "mlp.c_proj/lora"), True),
    ("ia3-qkv-ffn", (M("ia3", {"targets": ["q", "k", "v", "ffn_out"]}, [2]),),
     at([2], "attn.c_attn/ia3", "mlp.c_proj/ia3"), True),
    ("bitfit-qkv", (M("bitfit", {"targets": ["q", "k", "v", "ffn_in"]}, [0]),),
     at([0], "attn.c_attn/bias", "mlp.c_fc/bias"), True),
    ("prompt", (M("prompt", {"length": 4}),), {"prompt"}, False),
    ("prefix-all", (M("prefix", {"length": 4}, ALL),), {"prompt"}, False),
    ("prefix-subset", (M("prefix", {"length": 4}, [1, 2]),), {"prefix-pool"}, False),
    ("adapter-zero", (M("adapter", {"size": 8, "init": "zero"}, [0, 1]),),
     at([0, 1], "output/bn"), True),
    ("adapter-houlsby", (M("adapter", {"size": 8, "placement": "houlsby"}, [3]),),
     at([3], "attention/bn", "output/bn"), False),
    ("parallel", (M("parallel_adapter", {"size": 8}, [2]),), at([2], "output/bn"), True),
    ("unipelt", (M("unipelt", {"size": 8, "prefix_length": 4}, [1]),),
     at([1], "attn.c_attn/lora", "attn.c_attn/lora-gate", "output/bn", "output/bn-gate",
        "attn/prefix-gate") | {"prefix-pool"}, False),
    ("mam", (M("mam", {"size": 8, "prefix_length": 4}, [0, 1]),),
     at([0, 1], "output/bn") | {"prefix-pool"}, False),
    ("autopeft-paper", (M("adapter", {"size": 8}, ALL), M("parallel_adapter", {"size": 8}, ALL),
                        M("prefix", {"length": 4}, ALL)),
     at(ALL, "output/bn", "parallel") | {"prefix-pool"}, False),
    # in a mixture adapters splits c_attn, so k alone is honoured exactly there
    ("lora-k-in-mixture", (M("lora", {"targets": ["k", "ffn_out"]}, [1]),
                           M("adapter", {"size": 8, "init": "zero"}, [2])),
     at([1], "attn.c_attn/lora", "mlp.c_proj/lora") | at([2], "output/bn"), True),
]

LLAMA = [
    ("lora-qv", (M("lora", {}, [0, 3]),), at([0, 3], "self_attn.q_proj/lora",
                                            "self_attn.v_proj/lora"), True),
    ("lora-ffn-in-is-up-and-gate", (M("lora", {"targets": ["ffn_in", "ffn_out"], "rank": 4},
                                      [1]),),
     at([1], "mlp.up_proj/lora", "mlp.gate_proj/lora", "mlp.down_proj/lora"), True),
    ("lora-pissa", (M("lora", {"init": "pissa", "rank": 4, "targets": ["o"]}, [2]),),
     at([2], "self_attn.o_proj/lora"), True),
    ("ia3", (M("ia3", {}, [1]),), at([1], "self_attn.k_proj/ia3", "self_attn.v_proj/ia3",
                                     "mlp.down_proj/ia3"), True),
    ("prompt", (M("prompt", {"length": 4, "init": "vocab"}),), {"prompt"}, False),
    ("prefix-all", (M("prefix", {"length": 4, "bottleneck": 16}, ALL),), {"prompt"}, False),
    ("prefix-subset", (M("prefix", {"length": 4}, [0, 3]),), {"prefix-pool"}, False),
    ("adapter-zero", (M("adapter", {"size": 8, "init": "zero"}, [0, 1]),),
     at([0, 1], "output/bn"), True),
    ("adapter-houlsby", (M("adapter", {"size": 8, "placement": "houlsby"}, [3]),),
     at([3], "attention/bn", "output/bn"), False),
    ("parallel", (M("parallel_adapter", {"size": 8}, [2]),), at([2], "output/bn"), True),
    ("unipelt", (M("unipelt", {"size": 8, "prefix_length": 4}, [1]),),
     at([1], "self_attn.q_proj/lora", "self_attn.q_proj/lora-gate", "self_attn.v_proj/lora",
        "self_attn.v_proj/lora-gate", "output/bn", "output/bn-gate", "self_attn/prefix-gate")
     | {"prefix-pool"}, False),
    ("mam", (M("mam", {"size": 8, "prefix_length": 4}, [0, 1]),),
     at([0, 1], "output/bn") | {"prefix-pool"}, False),
    ("autopeft-paper", (M("adapter", {"size": 8}, [1, 2]), M("parallel_adapter", {"size": 8}, [1, 2]),
                        M("prefix", {"length": 4}, [1, 2])),
     at([1, 2], "output/bn", "parallel") | {"prefix-pool"}, False),
    ("lora-ffn-out-in-mixture", (M("lora", {"targets": ["ffn_out"]}, [3]),
                                 M("adapter", {"size": 8, "init": "zero"}, [3])),
     at([3], "mlp.down_proj/lora", "output/bn"), True),
]

CASES = [("tiny-gpt2",) + c for c in GPT2] + [("tiny-llama",) + c for c in LLAMA]


@pytest.fixture(scope="module")
def bases(tiny_gpt2, tiny_llama):
    return {"tiny-gpt2": tiny_gpt2, "tiny-llama": tiny_llama}


@pytest.mark.parametrize("ref,case_id,modules,expected,identity", CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_decoder_build_trains_exactly_the_requested_sites(bases, ref, case_id, modules, expected,
                                                          identity):
    import torch

    from autopeft.methods import build

    base = bases[ref]
    built = build(base, Candidate(modules, {}, 4), seed=0)
    assert sites(built) == expected | {"head"}
    batch, labels = make_batch(base, 8)
    built.model.eval()
    base.model.eval()
    with torch.no_grad():
        got, ref_logits = built.model(**batch).logits, base.model(**batch).logits
    assert got.shape == (8, base.num_labels)
    if identity:
        assert torch.allclose(got, ref_logits, atol=1e-5)
    else:
        assert not torch.allclose(got, ref_logits, atol=1e-6)
    built.model.train()
    loss = built.model(**batch, labels=labels).loss
    loss.backward()
    assert torch.isfinite(loss)
    no_grad = [n for n, p in built.trainable_parameters().items() if p.grad is None]
    assert not no_grad, f"not in the forward path: {no_grad[:3]}"
    frozen_grads = [n for n, p in built.model.named_parameters()
                    if not p.requires_grad and p.grad is not None]
    assert not frozen_grads


BAD = [
    ("tiny-gpt2", (M("ia3", {}, [0]),), "fuses q+k+v"),  # default targets k+v+ffn_out
    ("tiny-gpt2", (M("bitfit", {"targets": ["v", "o"]}, [0]),), "c_attn"),
    ("tiny-gpt2", (M("lora", {}, [4]),), "layer(s) [4]"),
    ("tiny-gpt2", (M("lora", {"rank": 100}, [0]),), "rank 100"),
    ("tiny-llama", (M("bitfit", {}, [0]),), "no bias terms"),
    ("tiny-llama", (M("lora", {"targets": ["ffn_in"]}, [0]), M("adapter", {}, [1])),
     "ffn_in of a llama model"),
    ("tiny-llama", (M("ia3", {"targets": ["ffn_in"]}, [0]), M("prefix", {}, [1])),
     "ffn_in of a llama model"),
]


@pytest.mark.parametrize("ref,modules,fragment", BAD)
def test_decoder_bad_candidates_raise_before_building(bases, ref, modules, fragment):
    from autopeft.methods import build

    cand = Candidate(modules, {}, 4)
    with pytest.raises(CandidateError, match=r"cannot be built") as err:
        build(bases[ref], cand)
    assert fragment in str(err.value) and cand.summary() in str(err.value)


def test_tiny_decoders_classify_padded_batches(bases):
    """A pad token is set, so the last non-pad token feeds the head (HF needs pad_token_id)."""
    import torch

    for base in bases.values():
        assert base.tokenizer.pad_token_id == base.model.config.pad_token_id == 0
        batch, _ = make_batch(base, 4)
        assert (batch["attention_mask"] == 0).any()  # the batch really is padded
        with torch.no_grad():
            assert torch.isfinite(base.model(**batch).logits).all()
