"""Shared model fixtures: each base model is loaded once per test session."""
from __future__ import annotations

import pytest

# Real sentences with sentiment labels (1 = positive), enough for a small training batch.
SENTENCES = [
    ("a gripping, beautifully acted film", 1),
    ("the plot is dull and the jokes fall flat", 0),
    ("one of the best performances of the year", 1),
    ("i walked out after twenty minutes", 0),
    ("warm, funny and surprisingly moving", 1),
    ("a tedious mess with no redeeming qualities", 0),
    ("the soundtrack alone is worth the ticket", 1),
    ("badly written and even worse directed", 0),
    ("charming from start to finish", 1),
    ("an insult to the original book", 0),
    ("smart, sharp and genuinely thrilling", 1),
    ("boring characters stuck in a boring story", 0),
    ("i laughed, i cried, i loved it", 1),
    ("the worst film i have seen in years", 0),
    ("a delightful surprise for the whole family", 1),
    ("clumsy, loud and far too long", 0),
]


@pytest.fixture(scope="session")
def torch_threads():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(2)
    return torch


@pytest.fixture(scope="session")
def minilm(torch_threads):
    from autopeft.models import load_base

    return load_base("minilm", num_labels=2, seed=0)


@pytest.fixture(scope="session")
def tiny_gpt2(torch_threads):
    from autopeft.models import load_base

    return load_base("tiny-gpt2", num_labels=3, seed=0)


@pytest.fixture(scope="session")
def tiny_llama(torch_threads):
    from autopeft.models import load_base

    return load_base("tiny-llama", num_labels=3, seed=0)


def make_batch(base, n: int = 16):
    """A tokenised batch of the real sentences above, with labels, for `base`'s tokenizer."""
    import torch

    texts = [s for s, _ in SENTENCES[:n]]
    labels = torch.tensor([y for _, y in SENTENCES[:n]]) % base.num_labels
    enc = base.tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
    return dict(enc), labels


@pytest.fixture(scope="session")
def minilm_batch(minilm):
    return make_batch(minilm)


def site_of(family: str, name: str) -> str:
    """Where a trainable parameter sits: 'head', 'prompt', 'prefix-pool', or 'L<i>:<where>'.

    <where> is the adapted sub-module relative to its layer, with the kind of weight:
    'attention.self.query/lora', 'output/serial', 'parallel', 'intermediate.dense/bias'...
    """
    from autopeft.methods.targets import split_name

    n = name
    for prefix in ("base_model.model.", "base_model."):
        if n.startswith(prefix):
            n = n[len(prefix):]
            break
    if n.split(".")[0] in ("classifier", "score"):
        return "head"
    if n.startswith("prompt_encoder."):
        return "prompt"
    if ".prefix_tuning.pool." in n:
        return "prefix-pool"
    layer = split_name(family, n)
    assert layer is not None, f"trainable parameter outside the layers: {name}"
    i, rel = layer
    for marker, kind in ((".loras.autopeft.", "lora"), (".lora_A.", "lora"), (".lora_B.", "lora"),
                         (".lora_magnitude_vector.", "magnitude"),
                         (".ia3_l.", "ia3"), (".prefix_tuning.prefix_gates.", "prefix-gate"),
                         (".adapters.autopeft.", "bn"), ("autopeft_parallel.", "parallel")):
        if marker in "." + rel:
            where = ("." + rel).split(marker)[0].lstrip(".")
            if kind == "lora" and ".gate." in rel:
                kind = "lora-gate"
            if kind == "bn" and ".gate." in rel:
                kind = "bn-gate"
            if kind.startswith("bn") and where.endswith("_adapters"):  # decoders: output_adapters
                where = where[: -len("_adapters")]
            return f"L{i}:{where}/{kind}" if where else f"L{i}:{kind}"
    if rel.endswith(".bias"):
        return f"L{i}:{rel[: -len('.bias')]}/bias"
    raise AssertionError(f"unexpected trainable parameter {name}")


def sites(built) -> set[str]:
    return {site_of(built.info.family, n) for n in built.trainable_parameters()}
