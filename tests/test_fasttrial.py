"""Trial cost: length-grouped batches, the frozen-prefix activation cache, cheap rungs.

Fast tests run a tiny random BERT (4 layers, hidden 32, MiniLM's tokenizer) saved to a
local folder; the slow test checks the cache's exactness on the real MiniLM.
"""
import random

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from autopeft import methods  # noqa: E402
from autopeft.candidate import Candidate  # noqa: E402
from autopeft.evaluation import batching, prefix_cache  # noqa: E402
from autopeft.evaluation.base import NullReporter, Reporter  # noqa: E402
from autopeft.evaluation.proxy import ProxyEvaluator  # noqa: E402
from autopeft.records import EvalRequest  # noqa: E402

TOP = [2, 3]


def lora(layers=TOP):
    return {"type": "lora", "layers": layers, "targets": ["q", "v"], "rank": 4}


CACHEABLE = {
    "lora_top": [lora()],
    "adapter_top": [{"type": "adapter", "layers": TOP, "size": 8}],
    "parallel_top": [{"type": "parallel_adapter", "layers": [1, 3], "size": 8}],
    "ia3_top": [{"type": "ia3", "layers": TOP}],
    "bitfit_top": [{"type": "bitfit", "layers": [3]}],
    "lora_adapter_top": [lora([3]), {"type": "adapter", "layers": [2], "size": 8}],
    "head_only": [],
}


def cand(modules, num_layers=4, **hyper):
    return {"modules": modules, "hyper": hyper, "num_layers": num_layers}


# ---------------------------------------------------------------- batching

def test_grouped_batches_cover_every_example_once_and_repeat_with_the_seed():
    lengths = torch.randint(3, 60, (500,), generator=torch.Generator().manual_seed(0))
    idx = np.arange(0, 500, 2)
    a = batching.grouped_order(lengths, idx, 16, generator=torch.Generator().manual_seed(1),
                               window=4)
    b = batching.grouped_order(lengths, idx, 16, generator=torch.Generator().manual_seed(1),
                               window=4)
    c = batching.grouped_order(lengths, idx, 16, generator=torch.Generator().manual_seed(2),
                               window=4)
    assert sorted(torch.cat(a).tolist()) == idx.tolist()          # each example once
    assert [x.tolist() for x in a] == [x.tolist() for x in b]      # same seed, same order
    assert [x.tolist() for x in a] != [x.tolist() for x in c]
    plain = batching.grouped_order(lengths, idx, 16,
                                   generator=torch.Generator().manual_seed(1), window=1)
    assert sorted(torch.cat(plain).tolist()) == idx.tolist()
    grouped_pad, real = batching.padded_tokens(lengths, a)
    plain_pad, real2 = batching.padded_tokens(lengths, plain)
    assert real == pytest.approx(real2)
    assert grouped_pad < 0.8 * plain_pad                           # padding really drops


def test_grouped_batches_are_not_sorted_across_the_epoch():
    lengths = torch.arange(320)
    batches = batching.grouped_order(lengths, np.arange(320), 8,
                                     generator=torch.Generator().manual_seed(0), window=4)
    maxima = [int(lengths[b].max()) for b in batches]
    assert maxima != sorted(maxima) and maxima != sorted(maxima, reverse=True)


# ---------------------------------------------------------------- which candidates qualify

def test_frozen_below_by_module_type():
    from autopeft.models import model_info

    info = model_info("minilm")
    L = lambda mods: prefix_cache.frozen_below(Candidate.from_dict(cand(mods, 6)), info)  # noqa: E731
    assert L([lora([3, 4, 5])]) == 3
    assert L([lora(list(range(6)))]) == 0
    assert L([]) == 6                                              # head only: all frozen
    assert L([lora([4, 5]), {"type": "bitfit", "layers": [2]}]) == 2
    assert L([{"type": "prompt", "length": 4}]) == 0               # soft tokens at the input
    assert L([{"type": "prefix", "layers": [3, 4, 5], "length": 4}]) == 0
    tiny = model_info("tiny-gpt2")                                 # decoders: never
    assert prefix_cache.frozen_below(Candidate.from_dict(cand([lora([2, 3])])), tiny) == 0


# ---------------------------------------------------------------- a tiny BERT

@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    from autopeft.models import load_tokenizer

    d = tmp_path_factory.mktemp("tinybert")
    config = transformers.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=4,
                                     num_attention_heads=4, intermediate_size=64,
                                     max_position_embeddings=64, num_labels=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        transformers.BertForSequenceClassification(config).save_pretrained(d)
    load_tokenizer("minilm").save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def tiny_bert(tiny_bert_dir):
    from autopeft.models import load_base

    return load_base(str(tiny_bert_dir), num_labels=2, seed=0)


def _perturbed(base, modules, seed=0):
    """The candidate built, its trainable weights moved off their (identity) init."""
    built = methods.build(base, Candidate.from_dict(cand(modules, base.info.num_layers)),
                          seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in built.trainable_parameters().values():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return built.model.eval()


def _enc(base, texts, max_length=24):
    from autopeft import taskdata

    raw = taskdata.RawData(tuple(texts), np.arange(len(texts)) % 2, ("0", "1"), "t")
    return taskdata._from_blob(taskdata._tokenise(raw, base.tokenizer, max_length), "t")


def _logits_both_ways(base, modules, texts, bf16=False):
    import contextlib

    from autopeft import taskdata

    enc = _enc(base, texts)
    model = _perturbed(base, modules)
    idx = torch.arange(len(texts))
    autocast = ((lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16
                else contextlib.nullcontext)
    batch = taskdata.collate(enc, idx)
    with torch.no_grad(), autocast():
        plain = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                      token_type_ids=batch["token_type_ids"]).logits.float()
    L = prefix_cache.frozen_below(Candidate.from_dict(cand(modules, base.info.num_layers)),
                                  base.info)
    assert L > 0 and not prefix_cache.trainable_below(model, L, "bert")
    states = prefix_cache.compute_states(base.model, enc, L, idx.tolist(), autocast=autocast,
                                         batch_size=3)
    prefix_cache.skip_frozen(model, L)
    cached = states.collate(idx, enc.labels, "cpu")
    assert torch.equal(cached["attention_mask"], batch["attention_mask"])
    with torch.no_grad(), autocast():
        fast = model(inputs_embeds=cached["inputs_embeds"],
                     attention_mask=cached["attention_mask"]).logits.float()
    return plain, fast, states


TEXTS = ["a gripping, beautifully acted film", "dull", "one of the best performances of "
         "the year and then some more words", "i walked out", "warm, funny and moving",
         "a tedious mess with no redeeming qualities at all"]


@pytest.mark.parametrize("name", sorted(CACHEABLE))
def test_cached_path_logits_equal_the_uncached_path(tiny_bert, name):
    plain, fast, states = _logits_both_ways(tiny_bert, CACHEABLE[name], TEXTS)
    assert torch.allclose(plain, fast, atol=1e-5, rtol=1e-5), (plain, fast)
    # stored unpadded: exactly the real tokens
    assert states.flat.shape[0] == int(_enc(tiny_bert, TEXTS).lengths.sum())


def test_cached_path_under_bf16_autocast(tiny_bert):
    plain, fast, _ = _logits_both_ways(tiny_bert, CACHEABLE["lora_top"], TEXTS, bf16=True)
    assert torch.allclose(plain, fast, atol=2e-2), (plain, fast)


def test_a_model_that_touches_lower_layers_is_detected(tiny_bert):
    model = _perturbed(tiny_bert, [lora([0, 3])])
    assert prefix_cache.trainable_below(model, 2, "bert")


def test_cache_is_bounded_and_reused(tiny_bert):
    import contextlib

    enc = _enc(tiny_bert, TEXTS)
    need = prefix_cache.state_bytes(enc, range(6), 32)
    assert need == int(enc.lengths.sum()) * 32 * 4                 # tokens x hidden x fp32
    args = dict(hidden=32, autocast=contextlib.nullcontext, batch_size=4, device="cpu")
    small = prefix_cache.ActivationCache(need - 1)
    assert small.get("k", tiny_bert.model, enc, 2, range(6), **args) is None
    assert small.stats["over_bound"] == 1 and not small.entries
    cache = prefix_cache.ActivationCache(need + need // 2)
    a = cache.get("a", tiny_bert.model, enc, 2, range(6), **args)
    assert cache.get("a", tiny_bert.model, enc, 2, [1, 3], **args) is a
    assert cache.stats == {"builds": 1, "hits": 1, "over_bound": 0}
    cache.get("b", tiny_bert.model, enc, 3, range(6), **args)      # evicts a: over bound
    assert list(cache.entries) == ["b"] and cache.nbytes <= cache.max_bytes


# ---------------------------------------------------------------- through the evaluator

@pytest.fixture(scope="module")
def bert_experiment(tmp_path_factory, tiny_bert_dir):
    d = tmp_path_factory.mktemp("fastdata")
    rng = random.Random(0)
    words = {0: ["awful", "bad", "poor", "dull"], 1: ["great", "good", "fine", "superb"]}
    lines = ["text,label"]
    for i in range(200):
        y = i % 2
        extra = " very" * rng.randint(0, 8)
        lines.append(f"the film was{extra} {rng.choice(words[y])},{y}")
    (d / "toy.csv").write_text("\n".join(lines) + "\n")
    from autopeft.config import ExperimentConfig

    return ExperimentConfig.from_dict({
        "model": str(tiny_bert_dir),
        "data": {"source": str(d / "toy.csv"), "validation": 60, "test": 20},
        "proxy": {"train_examples": 80, "max_steps": 6, "eval_every": 2, "max_length": 16,
                  "validation_examples": 60, "eval_batch_size": 16, "rung_examples": 20},
        "optimizer": {"learning_rate": 5.0e-3, "batch_size": 8},
        "resources": {"cpus": 1},
    }).to_dict()


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOPEFT_CACHE", str(tmp_path / "cache"))


class Recorder(Reporter):
    def __init__(self):
        self.calls = []

    def report(self, trial_number, step, value):
        self.calls.append((step, value))
        return True


def _req(exp, candidate, seed=1, number=0):
    return EvalRequest("t", number, candidate, exp, seed=seed)


def test_evaluator_trains_on_the_cache_and_reuses_it(bert_experiment):
    ev = ProxyEvaluator(bert_experiment)
    a = ev.evaluate(_req(bert_experiment, cand([lora()])),
                    NullReporter())
    assert a.extra["frozen_below"] == 2 and a.steps == 6 and 0 <= a.metric <= 1
    b = ev.evaluate(_req(bert_experiment, cand([{"type": "adapter", "layers": [2, 3],
                                                 "size": 8}]), number=1), NullReporter())
    assert b.extra["frozen_below"] == 2
    assert ev._activations.stats["builds"] == 1 and ev._activations.stats["hits"] == 1
    # same seed, same result on the cached path
    again = ev.evaluate(_req(bert_experiment, cand([lora()])), NullReporter())
    assert (again.metric, again.intermediate, again.train_loss) == \
        (a.metric, a.intermediate, a.train_loss)
    # a candidate adapting layer 0 trains uncached
    c = ev.evaluate(_req(bert_experiment, cand([lora([0, 3])]), number=2), NullReporter())
    assert c.extra["frozen_below"] == 0


def test_cache_off_gives_the_uncached_path(bert_experiment):
    off = dict(bert_experiment, proxy=dict(bert_experiment["proxy"], frozen_cache_mb=0))
    m = ProxyEvaluator(off).evaluate(_req(off, cand([lora()])), NullReporter())
    assert m.extra["frozen_below"] == 0


def test_cheap_rungs_score_a_subset_then_the_whole_validation(bert_experiment, monkeypatch):
    from autopeft.evaluation import trainloop

    sizes = []
    real = trainloop.TrainLoop.score

    def counted(self, idx):
        sizes.append(len(idx))
        return real(self, idx)

    monkeypatch.setattr(trainloop.TrainLoop, "score", counted)
    rec = Recorder()
    m = ProxyEvaluator(bert_experiment).evaluate(_req(bert_experiment, cand([lora()])), rec)
    assert [s for s, _ in rec.calls] == [2, 4, 6]
    assert sizes[:3] == [20, 20, 60]                 # rungs on 20, the last on all 60
    assert m.extra["n_rung"] == 20 and m.extra["n_validation"] == 60
    # the returned metric is a full-validation score: the last one, or an earlier
    # state's full score when that state won on the subset (one more full pass)
    assert m.metric == rec.calls[-1][1] or sizes[-1] == 60
    full = dict(bert_experiment, proxy=dict(bert_experiment["proxy"], rung_examples=None))
    sizes.clear()
    ProxyEvaluator(full).evaluate(_req(full, cand([lora()])), NullReporter())
    assert sizes == [60, 60, 60]


@pytest.mark.slow
def test_cached_path_is_exact_on_the_real_minilm(minilm):
    for modules in ([lora([3, 4, 5])], [{"type": "adapter", "layers": [3, 4, 5], "size": 16}],
                    []):
        plain, fast, _ = _logits_both_ways(minilm, modules, TEXTS)
        assert torch.allclose(plain, fast, atol=1e-4, rtol=1e-4), (modules, plain, fast)
