"""The mixture rule: a module with its own learning rate trains in its own optimizer
parameter group (autopeft.methods.groups), and the proxy's training loop uses it."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from autopeft import methods  # noqa: E402
from autopeft.candidate import Candidate, ModuleConfig  # noqa: E402
from autopeft.methods.groups import param_groups  # noqa: E402

SETTINGS = {"learning_rate": 1e-3, "weight_decay": 0.01}


def _candidate(num_layers, *mods):
    layers = tuple(range(num_layers))
    return Candidate(tuple(ModuleConfig(t, p, layers, h) for t, p, h in mods), {}, num_layers)


def _names(built, group):
    ids = {id(p) for p in group["params"]}
    return {n for n, p in built.model.named_parameters() if id(p) in ids}


def _check_partition(built, groups):
    trainable = {n for n, p in built.model.named_parameters() if p.requires_grad}
    seen = [n for g in groups for n in _names(built, g)]
    assert sorted(seen) == sorted(trainable), "every trainable weight in exactly one group"


def test_without_own_values_the_two_usual_groups(tiny_gpt2):
    built = methods.build(tiny_gpt2, _candidate(4, ("lora", {}, {})), seed=0)
    groups = param_groups(built, SETTINGS)
    assert [(g["weight_decay"], g["lr_scale"]) for g in groups] == [(0.01, 1.0), (0.0, 1.0)]
    assert all(p.ndim >= 2 for p in groups[0]["params"])
    assert all(p.ndim < 2 for p in groups[1]["params"])
    _check_partition(built, groups)


@pytest.mark.parametrize("mods, own, marker", [
    # adapters backend: serial adapter with its own rate beside a prefix
    ([("adapter", {"size": 8}, {"learning_rate": 1e-2}), ("prefix", {"length": 4}, {})],
     "adapter", ".adapters."),
    ([("adapter", {"size": 8}, {}), ("prefix", {"length": 4}, {"learning_rate": 3e-2})],
     "prefix", "prefix_tuning"),
    # peft LoRA plus our BitFit: BitFit's biases get their own rate
    ([("lora", {"rank": 2}, {}), ("bitfit", {}, {"learning_rate": 1e-2})], "bitfit", "bias"),
    ([("lora", {"rank": 2}, {"learning_rate": 2e-4, "weight_decay": 0.1}),
      ("bitfit", {}, {})], "lora", "lora_"),
])
def test_a_module_with_its_own_rate_gets_its_own_group(tiny_gpt2, mods, own, marker):
    built = methods.build(tiny_gpt2, _candidate(4, *mods), seed=0)
    groups = param_groups(built, SETTINGS)
    _check_partition(built, groups)
    mine = [g for g in groups if g["module"] == own]
    rest = [g for g in groups if g["module"] is None]
    assert mine and len(rest) == 2
    hyper = dict(next(h for t, _, h in mods if t == own))
    assert all(g["lr_scale"] == pytest.approx(hyper["learning_rate"] / 1e-3) for g in mine)
    names = set().union(*(_names(built, g) for g in mine))
    assert names and all(marker in n for n in names)
    others = set().union(*(_names(built, g) for g in rest))
    assert not any(marker in n and "score" not in n for n in others if own != "bitfit")
    assert any("score" in n for n in others), "the head trains at the candidate's rate"
    if "weight_decay" in hyper:
        # (weights below two dimensions never decay; LoRA has none)
        assert {g["weight_decay"] for g in mine if g["params"][0].ndim >= 2} == \
            {hyper["weight_decay"]}


@pytest.mark.slow
def test_the_paper_mixture_on_minilm_splits_by_module(minilm):
    """The AutoPEFT paper's mixture on the real MiniLM: adapters' serial adapter, our own
    parallel adapter (beside it) and adapters' prefix, each with its own rate."""
    mods = [("adapter", {"size": 16}, {"learning_rate": 2e-3}),
            ("parallel_adapter", {"size": 16}, {"learning_rate": 1e-3 * 0.5}),
            ("prefix", {"length": 8}, {"learning_rate": 1e-2})]
    built = methods.build(minilm, _candidate(6, *mods), seed=0)
    groups = param_groups(built, SETTINGS)
    _check_partition(built, groups)
    by = {t: set().union(*(_names(built, g) for g in groups if g["module"] == t))
          for t in ("adapter", "parallel_adapter", "prefix", None)}
    assert by["adapter"] and all(".adapters." in n for n in by["adapter"])
    assert by["parallel_adapter"] and all("autopeft_parallel" in n
                                          for n in by["parallel_adapter"])
    assert by["prefix"] and all("prefix_tuning" in n for n in by["prefix"])
    assert by[None] == {"classifier.weight", "classifier.bias"}


def test_the_training_loop_uses_the_module_rate(tmp_path, monkeypatch):
    """A trial on the proxy: the adapter's own rate is 1e-7 (it barely moves), the head
    trains at the candidate's 5e-3 (it moves)."""
    from safetensors.torch import load_file

    from autopeft.evaluation.base import NullReporter
    from autopeft.evaluation.proxy import ProxyEvaluator
    from autopeft.records import EvalRequest
    from test_proxy import experiment as _experiment_fixture  # noqa: F401 - the toy task

    monkeypatch.setenv("AUTOPEFT_CACHE", str(tmp_path / "cache"))
    experiment = _experiment_fixture.__wrapped__(_TmpFactory(tmp_path))
    cand = _candidate(4, ("adapter", {"size": 8}, {"learning_rate": 1e-7}),
                      ("prefix", {"length": 4}, {}))
    ev = ProxyEvaluator(experiment)
    req = EvalRequest("t", 0, cand.to_dict(), experiment, seed=3,
                      checkpoint_dir=str(tmp_path / "ckpt"))
    ev.evaluate(req, NullReporter())
    after = load_file(str(tmp_path / "ckpt" / "trainable.safetensors"))
    fresh = methods.build(ev._setup.base, cand, seed=3).trainable_parameters()
    moved = {n: float((after[n] - fresh[n].detach()).abs().max()) for n in after}
    adapter = [v for n, v in moved.items() if ".adapters." in n]
    head = [v for n, v in moved.items() if n.startswith("score")]
    assert adapter and max(adapter) < 1e-4, max(adapter)
    assert head and max(head) > 1e-3, max(head)


class _TmpFactory:
    def __init__(self, path):
        self.path = path

    def mktemp(self, name):
        d = self.path / name
        d.mkdir()
        return d


def test_dora_and_rslora_weights_have_their_module_as_owner():
    """The newer LoRA types own their weights too, so a module's own learning rate can
    reach them (DoRA's magnitude vector included)."""
    from autopeft.methods.groups import owner

    name = "base_model.model.bert.encoder.layer.0.attention.self.query."
    assert owner(name + "lora_magnitude_vector.default.weight", ("dora",), ()) == "dora"
    assert owner(name + "lora_A.default.weight", ("rslora",), ()) == "rslora"
    assert owner("bert.encoder.layer.0.attention.self.query.loras.x.lora_A",
                 ("rslora", "adapter"), ()) == "rslora"
