"""The lean trial model (`proxy.lean_model`): exact shortcuts, checked type by type.

- frozen linear weights stored in bf16: under bf16 autocast the logits are bit-identical
  (autocast would have cast those weights to the same bf16 values);
- the last layer at [CLS] only: the logits equal the full layer's (float summation order
  aside), for every module type it is applied to, and it is not applied to the others;
- cheaper dropout masks: the keep rate, the expectation, the gradient, the seed.

Per-type tests run on the real MiniLM (tests/moduletype_cases.py drives them).
"""
import pytest

torch = pytest.importorskip("torch")

from autopeft import methods  # noqa: E402
from autopeft.evaluation import cls_only, dropout, precision  # noqa: E402
from moduletype_cases import TYPES  # noqa: E402

TEXTS = ["what is the capital of france ?", "who wrote hamlet ?",
         "how many feet are in a mile and how many in a kilometre ?", "why ?"]


@pytest.fixture(scope="module")
def batch(minilm):
    enc = minilm.tokenizer(TEXTS, padding=True, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def _built(base, case, seed=0):
    """The case's modules built on the base, trainable weights moved off their init."""
    from autopeft.candidate import Candidate

    built = methods.build(base, Candidate(case.modules, {}, base.info.num_layers), seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in built.trainable_parameters().values():
            p.add_(0.02 * torch.randn(p.shape, generator=g))
    built.model.eval()
    return built


def _logits(model, batch, bf16):
    import contextlib

    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with torch.no_grad(), ctx:
        return model(**batch).logits.float()


@pytest.mark.parametrize("case", TYPES, ids=[c.type for c in TYPES])
def test_frozen_bf16_weights_give_bit_identical_logits_under_autocast(minilm, batch, case):
    built = _built(minilm, case)
    if not precision.convertible(built.candidate):
        assert case.type == "dora"  # reads the frozen weight outside F.linear
        return
    before = _logits(built.model, batch, bf16=True)
    n = precision.frozen_linears_to_bf16(built.model)
    frozen_linear = sum(p.numel() for m in built.model.modules()
                        if isinstance(m, torch.nn.Linear)
                        for p in m.parameters(recurse=False) if not p.requires_grad)
    assert n == frozen_linear and (n > 0 or case.type == "full")
    assert all(p.dtype == torch.float32 for p in built.model.parameters() if p.requires_grad)
    assert torch.equal(_logits(built.model, batch, bf16=True), before)


@pytest.mark.parametrize("case", TYPES, ids=[c.type for c in TYPES])
def test_cls_only_last_layer_gives_the_same_logits(minilm, batch, case):
    built = _built(minilm, case)
    if not cls_only.applies(built.candidate, minilm.info):
        assert case.type in ("prompt", "prefix", "unipelt", "mam")  # they edit attention
        return
    before = _logits(built.model, batch, bf16=False)
    names = [n for n, _ in built.model.named_parameters()]
    assert cls_only.cls_only_last_layer(built.model)
    assert [n for n, _ in built.model.named_parameters()] == names  # checkpoints unchanged
    after = _logits(built.model, batch, bf16=False)
    assert torch.allclose(after, before, atol=1e-5, rtol=1e-4), (after, before)


def test_cls_only_last_layer_really_computes_one_position(minilm, batch):
    built = _built(minilm, TYPES[0])
    seen = []
    last = built.model.base_model.model.bert.encoder.layer[-1]
    last.intermediate.register_forward_hook(lambda m, a, out: seen.append(out.shape))
    _logits(built.model, batch, bf16=False)
    cls_only.cls_only_last_layer(built.model)
    _logits(built.model, batch, bf16=False)
    assert seen[0][1] == batch["input_ids"].shape[1] and seen[1][1] == 1


def test_cls_only_is_not_applied_to_decoders(tiny_gpt2):
    from autopeft.candidate import Candidate

    assert not cls_only.applies(Candidate((), {}, 4), tiny_gpt2.info)


# ---------------------------------------------------------------- dropout

def test_fast_dropout_keeps_the_rate_and_the_expectation():
    layer = dropout._fast_dropout_class(torch)(0.1).train()
    x = torch.ones(1_000_003)  # not a multiple of 4: the tail of the last 64-bit draw
    with torch.random.fork_rng():
        torch.manual_seed(0)
        y = layer(x)
    kept = (y != 0).float().mean().item()
    assert abs(kept - (1 - 6554 / 65536)) < 0.002           # p rounded to 16 bits
    assert abs(y.mean().item() - 1.0) < 0.003               # unbiased
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 65536 / (65536 - 6554)))


def test_fast_dropout_gradient_eval_and_seed():
    layer = dropout._fast_dropout_class(torch)(0.3)
    x = torch.randn(7, 5, 3, requires_grad=True)
    with torch.random.fork_rng():
        torch.manual_seed(1)
        y = layer.train()(x)
    with torch.random.fork_rng():
        torch.manual_seed(1)
        again = layer(x)
    assert torch.equal(y, again)                            # same seed, same mask
    y.sum().backward()
    mask = (y != 0).float() * layer.scale
    assert torch.allclose(x.grad, mask)
    assert layer.eval()(x) is x                             # identity in eval mode
    assert dropout._fast_dropout_class(torch)(0.0).train()(x) is x


def test_fast_dropout_swaps_every_dropout_module(minilm):
    built = _built(minilm, TYPES[0])
    before = sum(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in built.model.modules())
    assert before > 0 and dropout.fast_dropout(built.model) == before
    assert not any(isinstance(m, torch.nn.Dropout) for m in built.model.modules())
