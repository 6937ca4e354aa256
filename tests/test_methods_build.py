"""Building every module type on the real MiniLM: one list of cases drives every test.

Each case states where trainable weights must sit (layer and sub-module) and whether the
module is an identity at step 0 (zero-initialised output projection, IA3 ones, BitFit).
One case per registered type comes from tests/moduletype_cases.py (TYPES); the variants
and mixtures below add to it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from autopeft.candidate import Candidate, ModuleConfig as M
from fixtures_models import sites
from moduletype_cases import EVERY, FI, FO, TYPES, K, O, Q, V, at


@dataclass
class Case:
    id: str
    modules: tuple
    sites: set
    backend: str
    identity: bool = False  # logits equal the base model's before training
    modifies_base: bool = False  # pissa/olora rewrite the frozen weight (W - BA)
    lr: float = 1e-2
    extra: dict = field(default_factory=dict)

    def candidate(self) -> Candidate:
        return Candidate(tuple(self.modules), {}, 6)


CASES = [Case("head-only", (), {"head"}, "none", identity=True)] + [
    Case(t.type, t.modules, t.sites, t.backend, identity=t.identity, lr=t.lr) for t in TYPES
] + [
    Case("lora-zero-k-o-ffn", (M("lora", {"targets": ["k", "o", "ffn_in", "ffn_out"],
                                          "init": "zero", "rank": 4}, [0, 5]),),
         at([0, 5], f"{K}/lora", f"{O}/lora", f"{FI}/lora", f"{FO}/lora") | {"head"}, "peft",
         identity=True),
    Case("lora-xavier", (M("lora", {"targets": ["q"], "init": "xavier"}, [2]),),
         at([2], f"{Q}/lora") | {"head"}, "peft"),
    Case("lora-pissa", (M("lora", {"init": "pissa", "rank": 4}, [0]),),
         at([0], f"{Q}/lora", f"{V}/lora") | {"head"}, "peft", identity=True, modifies_base=True),
    Case("lora-olora", (M("lora", {"init": "olora", "rank": 4, "targets": ["v"]}, [4]),),
         at([4], f"{V}/lora") | {"head"}, "peft", identity=True, modifies_base=True),
    Case("prompt-vocab", (M("prompt", {"length": 5, "init": "vocab"}),), {"prompt", "head"},
         "peft", lr=5e-2),
    Case("prefix-mlp-all-layers", (M("prefix", {"length": 4, "bottleneck": 32}, range(6)),),
         {"prompt", "head"}, "peft"),
    Case("prefix-subset", (M("prefix", {"length": 5}, [1, 4]),), {"prefix-pool", "head"},
         "adapters", lr=5e-2),
    Case("adapter-houlsby", (M("adapter", {"size": 8, "placement": "houlsby",
                                           "activation": "gelu"}, [2]),),
         at([2], "output/bn", "attention.output/bn") | {"head"}, "adapters"),
    Case("autopeft-paper", (M("adapter", {"size": 16}, [1, 2, 3]),
                            M("parallel_adapter", {"size": 8}, [1, 2, 3]),
                            M("prefix", {"length": 4}, [1, 2, 3])),
         at([1, 2, 3], "output/bn", "parallel") | {"prefix-pool", "head"}, "adapters"),
    Case("lora+adapter-zero", (M("lora", {"targets": ["q", "ffn_out"]}, [0]),
                               M("adapter", {"size": 8, "init": "zero"}, [1])),
         at([0], f"{Q}/lora", f"{FO}/lora") | at([1], "output/bn") | {"head"}, "adapters",
         identity=True),
    Case("ia3+parallel", (M("ia3", {"targets": ["v", "ffn_in"]}, [2]),
                          M("parallel_adapter", {"size": 8}, [3])),
         at([2], f"{V}/lora", f"{FI}/lora") | at([3], "output/bn") | {"head"}, "adapters",
         identity=True),
    Case("bitfit+lora", (M("bitfit", {}, [0]), M("lora", {}, [1])),
         at([0], f"{Q}/bias", f"{K}/bias", f"{V}/bias", f"{O}/bias", f"{FI}/bias", f"{FO}/bias")
         | at([1], f"{Q}/lora", f"{V}/lora") | {"head"}, "peft", identity=True),
    Case("dora-xavier", (M("dora", {"targets": ["v", "ffn_in"], "init": "xavier", "rank": 4},
                           [3]),),
         at([3], f"{V}/lora", f"{V}/magnitude", f"{FI}/lora", f"{FI}/magnitude") | {"head"},
         "peft"),
    Case("rslora+adapter", (M("rslora", {"rank": 4, "targets": ["q", "ffn_out"], "init": "zero"},
                              [1]), M("adapter", {"size": 8, "init": "zero"}, [2])),
         at([1], f"{Q}/lora", f"{FO}/lora") | at([2], "output/bn") | {"head"}, "adapters",
         identity=True),
    Case("dora+bitfit", (M("dora", {"rank": 2}, [5]), M("bitfit", {"targets": ["ffn_out"]}, [0])),
         at([5], f"{Q}/lora", f"{Q}/magnitude", f"{V}/lora", f"{V}/magnitude")
         | at([0], f"{FO}/bias") | {"head"}, "peft", identity=True),
    Case("bitfit+adapter", (M("bitfit", {"targets": ["o"]}, [5]),
                            M("adapter", {"size": 8, "init": "zero"}, [5])),
         at([5], f"{O}/bias", "output/bn") | {"head"}, "adapters", identity=True),
]
IDS = [c.id for c in CASES]
# One case per backend path runs in the fast suite for the tests that build twice per case;
# the full list runs with the slow ones.
FAST = {"lora-xavier", "prompt-vocab", "prefix-subset", "adapter-houlsby", "autopeft-paper",
        "unipelt", "bitfit+lora", "ia3", "dora-xavier", "full"}


def some_slow(cases):
    return [pytest.param(c, id=c.id, marks=() if c.id in FAST else pytest.mark.slow)
            for c in cases]

_BUILT: dict = {}


def built_for(base, case):
    """One read-only build per case, shared by the tests that only inspect it."""
    from autopeft.methods import build

    if case.id not in _BUILT:
        _BUILT[case.id] = build(base, case.candidate(), seed=0)
    return _BUILT[case.id]


def logits(model, batch):
    import torch

    model.eval()
    with torch.no_grad():
        return model(**batch).logits


def normalise(name: str) -> str:
    """A built model's name for a base parameter -> the name in the plain HF model."""
    for prefix in ("base_model.model.", "base_model."):
        if name.startswith(prefix):
            name = name[len(prefix):]
            break
    return name.replace(".base_layer", "").replace(".original_module", "")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_trainable_weights_sit_exactly_where_requested(minilm, case):
    built = built_for(minilm, case)
    assert built.backend == case.backend
    if case.sites == EVERY:  # full fine-tuning
        assert all(p.requires_grad for p in built.model.parameters())
        assert built.num_trainable() == sum(p.numel() for p in minilm.model.parameters())
    else:
        assert sites(built) == case.sites


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_base_is_frozen_and_pristine(minilm, case):
    import torch

    built = built_for(minilm, case)
    pristine = dict(minilm.model.named_parameters())
    seen = set()
    for name, p in built.model.named_parameters():
        if p.requires_grad:
            continue
        key = normalise(name)
        assert key in pristine, f"frozen parameter {name} is not a base weight"
        seen.add(key)
        if not case.modifies_base:
            assert torch.equal(p, pristine[key]), f"base weight {key} differs from the pristine model"
    trainable = {normalise(n) for n in built.trainable_parameters()}
    # every base weight is still there (frozen, or trainable on purpose: bitfit biases, head)
    assert set(pristine) <= seen | trainable


@pytest.mark.parametrize("case", [c for c in CASES if c.identity],
                         ids=[c.id for c in CASES if c.identity])
def test_identity_modules_leave_logits_unchanged(minilm, minilm_batch, case):
    import torch

    built = built_for(minilm, case)
    batch, _ = minilm_batch
    expected = logits(minilm.model, batch)
    got = logits(built.model, batch)
    tol = 1e-4 if case.modifies_base else 1e-6  # W_res + B A = W up to the SVD's rounding
    assert torch.allclose(got, expected, atol=tol, rtol=0), (got - expected).abs().max()


@pytest.mark.parametrize("case", [c for c in CASES if not c.identity],
                         ids=[c.id for c in CASES if not c.identity])
def test_non_identity_modules_change_logits(minilm, minilm_batch, case):
    """Guards the forward path: the modules really are in it (prompt, prefix, adapters)."""
    import torch

    built = built_for(minilm, case)
    batch, _ = minilm_batch
    assert not torch.allclose(logits(built.model, batch), logits(minilm.model, batch), atol=1e-6)


@pytest.mark.parametrize("case", some_slow(CASES))
def test_build_is_seeded_and_leaves_global_rng_alone(minilm, case):
    import torch

    from autopeft.methods import build

    state = torch.get_rng_state()
    a = build(minilm, case.candidate(), seed=7).trainable_parameters()
    b = build(minilm, case.candidate(), seed=7).trainable_parameters()
    assert torch.equal(torch.get_rng_state(), state)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.mark.parametrize("case", some_slow(CASES))
def test_save_and_reload_gives_identical_outputs(minilm, minilm_batch, case, tmp_path):
    import torch

    from autopeft.methods import build

    parent = build(minilm, case.candidate(), seed=1)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # stand-in for training: move every trainable weight
        for p in parent.trainable_parameters().values():
            p.add_(torch.randn(p.shape, generator=g) * 0.01)
    parent.save(tmp_path / "ckpt")
    child = build(minilm, case.candidate(), seed=2)
    child.load_adapter_weights(tmp_path / "ckpt")
    batch, _ = minilm_batch
    assert torch.equal(logits(child.model, batch), logits(parent.model, batch))


def test_checkpoint_of_another_architecture_is_refused(minilm, tmp_path):
    from autopeft.exceptions import CandidateError
    from autopeft.methods import build

    build(minilm, CASES[1].candidate()).save(tmp_path)
    other = build(minilm, Candidate((M("lora", {"rank": 4}, [1, 3]),), {}, 6))
    with pytest.raises(CandidateError, match=r"lora\(rank=4.*different architecture"):
        other.load_adapter_weights(tmp_path)
    with pytest.raises(CandidateError, match="missing"):
        other.load_adapter_weights(tmp_path / "nowhere")


def test_prefix_subset_goes_into_exactly_the_chosen_layers(minilm):
    from adapters.methods.prefix_tuning import PrefixTuningLayer

    from autopeft.methods.targets import split_name

    built = built_for(minilm, next(c for c in CASES if c.id == "prefix-subset"))
    with_prefix = set()
    for name, mod in built.model.named_modules():
        if isinstance(mod, PrefixTuningLayer) and "autopeft" in mod.prefixes:
            with_prefix.add(split_name("bert", name)[0])
    assert with_prefix == {1, 4}
    # flat prefix: keys and values, `length` tokens, hidden size each, per chosen layer
    pool = [p for n, p in built.trainable_parameters().items() if "prefix_tuning.pool" in n]
    assert sum(p.numel() for p in pool) == 2 * 2 * 5 * 384


def test_peft_prefix_has_one_key_and_value_per_layer(minilm):
    built = built_for(minilm, next(c for c in CASES if c.id == "prefix"))
    prompt = [p for n, p in built.trainable_parameters().items() if n.startswith("prompt_encoder")]
    assert sum(p.numel() for p in prompt) == 5 * 2 * 6 * 384


def test_lora_parameter_count_matches_the_formula(minilm):
    """LoRA adds r * (d_in + d_out) per adapted matrix (Hu et al. 2021)."""
    built = built_for(minilm, next(c for c in CASES if c.id == "lora-zero-k-o-ffn"))
    r, h, i = 4, 384, 1536
    per_layer = r * (h + h) * 2 + r * (h + i) * 2  # k, o: h->h; ffn_in: h->i; ffn_out: i->h
    head = 384 * 2 + 2
    assert built.num_trainable() == 2 * per_layer + head


def test_bitfit_trains_exactly_the_chosen_biases(minilm):
    """BitFit's trainable count: the bias length (output width) of each chosen module."""
    built = built_for(minilm, next(c for c in CASES if c.id == "bitfit"))
    head = 384 * 2 + 2
    assert built.num_trainable() == 1 * (384 + 1536) + head


def test_parallel_adapter_computes_ffn_plus_scaled_branch(minilm, minilm_batch):
    """He et al. 2022: FFN output + s * up(act(down(x))), x the FFN input, before LayerNorm."""
    import torch

    from autopeft.methods import build

    cand = Candidate((M("adapter", {"size": 8, "init": "zero"}, [2]),
                      M("parallel_adapter", {"size": 8, "scaling": 2.0, "init": "gaussian",
                                             "activation": "tanh"}, [2])), {}, 6)
    built = build(minilm, cand, seed=0)
    layer = built.model.bert.encoder.layer[2]
    seen = {}
    layer.intermediate.register_forward_pre_hook(lambda m, a: seen.__setitem__("x", a[0]))
    layer.output.register_forward_hook(lambda m, a, out: seen.__setitem__("y", out))
    batch, _ = minilm_batch
    logits(built.model, batch)
    x = seen["x"]
    ffn = torch.nn.functional.linear(layer.intermediate.intermediate_act_fn(
        torch.nn.functional.linear(x, layer.intermediate.dense.weight, layer.intermediate.dense.bias)),
        layer.output.dense.weight, layer.output.dense.bias)
    br = layer.autopeft_parallel
    branch = 2.0 * torch.nn.functional.linear(torch.tanh(
        torch.nn.functional.linear(x, br.down.weight, br.down.bias)), br.up.weight, br.up.bias)
    expected = layer.output.LayerNorm(ffn + branch + x)  # the serial adapter is an identity
    assert branch.abs().max() > 1e-3
    assert torch.allclose(seen["y"], expected, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_training_lowers_loss_and_keeps_base_weights(minilm, minilm_batch, case):
    import torch

    from autopeft.methods import build

    built = build(minilm, case.candidate(), seed=0)
    model = built.model
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    params = list(built.trainable_parameters().values())
    opt = torch.optim.AdamW(params, lr=case.lr)
    batch, labels = minilm_batch

    def eval_loss():
        model.eval()
        with torch.no_grad():
            return model(**batch, labels=labels).loss.item()

    before = eval_loss()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # dropout draws from the global RNG: keep the test repeatable
        model.train()
        for step in range(6):
            out = model(**batch, labels=labels)
            opt.zero_grad()
            out.loss.backward()
            if step == 0:
                missing = [n for n, p in built.trainable_parameters().items() if p.grad is None]
                assert not missing, f"not in the forward path: {missing[:3]}"
            opt.step()
    assert eval_loss() < before
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), f"frozen weight {n} changed in training"


def test_built_model_with_our_parallel_adapter_copies_and_pickles(minilm, minilm_batch):
    """Our hooks are bound methods: a copy runs its own branch, not the original's."""
    import copy
    import io

    import torch

    built = built_for(minilm, next(c for c in CASES if c.id == "autopeft-paper"))
    batch, _ = minilm_batch
    before = logits(built.model, batch)
    clone = copy.deepcopy(built.model)
    assert torch.equal(logits(clone, batch), before)
    with torch.no_grad():
        clone.bert.encoder.layer[1].autopeft_parallel.up.weight.normal_(0, 1.0)
    assert not torch.allclose(logits(clone, batch), before)
    assert torch.equal(logits(built.model, batch), before)
    torch.save(built.model.bert.encoder.layer[1].autopeft_parallel, io.BytesIO())


def test_rslora_scales_by_alpha_over_sqrt_rank_on_both_backends(minilm):
    """rsLoRA (Kalajdzievski 2023): alpha / sqrt(r); AdapterHub gets alpha * sqrt(r) / r."""
    alone = built_for(minilm, next(c for c in CASES if c.id == "rslora"))
    scales = {m.scaling["default"] for m in alone.model.modules() if hasattr(m, "scaling")
              and isinstance(getattr(m, "scaling"), dict) and "default" in m.scaling}
    assert scales == {16.0 / 16 ** 0.5}  # 4.0, exact in floating point
    mixed = built_for(minilm, next(c for c in CASES if c.id == "rslora+adapter"))
    from adapters.methods.lora import LoRA

    scales = {m.scaling for m in mixed.model.modules() if isinstance(m, LoRA)}
    assert scales == {16.0 * 4 ** 0.5 / 4}  # 8.0, exact


def test_dora_magnitude_is_the_column_norm_after_our_init(minilm):
    """DoRA (Liu et al. 2024, eq. 5): m starts as ||W + s B A||_c, also after a xavier init."""
    import torch

    built = built_for(minilm, next(c for c in CASES if c.id == "dora-xavier"))
    seen = 0
    for module in built.model.modules():
        if "default" not in getattr(module, "lora_magnitude_vector", {}):
            continue
        a, b = module.lora_A["default"].weight, module.lora_B["default"].weight
        assert b.abs().max() > 0  # xavier moved B off zero
        w = module.get_base_layer().weight + module.scaling["default"] * (b @ a)
        torch.testing.assert_close(module.lora_magnitude_vector["default"].weight,
                                   torch.linalg.norm(w, dim=1))
        seen += 1
    assert seen == 2  # v and ffn_in of layer 3


def test_full_fine_tuning_trains_embeddings_and_head_too(minilm):
    built = built_for(minilm, next(c for c in CASES if c.id == "full"))
    names = set(built.trainable_parameters())
    assert {"bert.embeddings.word_embeddings.weight", "bert.pooler.dense.weight",
            "classifier.weight"} <= names
