"""The module-type registry: every registered type has its entry in the one test list, the
registry refuses what it cannot serve, and a plug-in registered at run time is seen by the
DSL, Candidate, validate and the analytic cost without touching any other file."""
from __future__ import annotations

import subprocess
import sys

import pytest

from autopeft import moduletypes
from autopeft.candidate import Candidate, ModuleConfig as M
from autopeft.moduletypes import ModuleType, ParamSpec, registry
from moduletype_cases import TYPES


def test_every_registered_type_has_exactly_one_entry_in_the_test_list():
    names = [t.type for t in TYPES]
    assert len(names) == len(set(names))
    assert set(names) == {t.name for t in moduletypes.all_types()}, \
        "add the new type to tests/moduletype_cases.py (one entry drives every per-type test)"


def test_the_public_names_the_dsl_reads_keep_working():
    assert moduletypes.TARGETS == ("q", "k", "v", "o", "ffn_in", "ffn_out")
    assert "default" in moduletypes.INITS and "pissa" in moduletypes.LORA_DATA_FREE_INITS
    lora = moduletypes.MODULE_TYPES["lora"]
    assert isinstance(lora, ModuleType) and lora is moduletypes.get("lora")
    assert lora.param("rank").default == 8 and lora.size_param == "rank" and lora.layered
    assert lora.param_names == ("rank", "alpha", "dropout", "targets", "init", "init_scale")
    assert not moduletypes.MODULE_TYPES["prompt"].layered
    assert "learning_rate" in moduletypes.HYPERPARAMETERS
    assert sorted(moduletypes.MODULE_TYPES) == sorted(t.name for t in moduletypes.all_types())
    assert dict(moduletypes.MERGEABLE)["dora"] is True
    assert dict(moduletypes.MERGEABLE)["adapter"] is False


def test_every_type_states_its_cost_formulas_and_a_build_path():
    base = ModuleType
    for t in moduletypes.all_types():
        assert type(t).param_count is not base.param_count, t
        assert type(t).extra_flops is not base.extra_flops, t
        builds = [type(t).peft_config is not base.peft_config,
                  type(t).adapters_configs is not base.adapters_configs,
                  type(t).build_own is not base.build_own]
        assert any(builds), f"{t.name} has no way to be built"
        assert t.doc and (t.size_param is None or t.size_param in t.param_names)


def test_register_refuses_duplicates_and_malformed_schemas():
    class Dup(ModuleType):
        name = "lora"

    with pytest.raises(ValueError, match="already registered"):
        moduletypes.register(Dup())
    with pytest.raises(ValueError, match="lower-case"):
        moduletypes.register(type("Bad", (ModuleType,), {"name": "My Type"})())
    with pytest.raises(ValueError, match="size_param"):
        moduletypes.register(type("NoSize", (ModuleType,), {"name": "nosize",
                                                            "size_param": "size"})())
    with pytest.raises(ValueError, match="kind"):
        moduletypes.register(type("BadKind", (ModuleType,), {
            "name": "badkind", "params": (ParamSpec("x", "str", ""),)})())
    with pytest.raises(TypeError):
        moduletypes.register("lora")
    with pytest.raises(KeyError, match="known"):
        moduletypes.get("loar")
    assert "nosize" not in moduletypes.MODULE_TYPES


class Toy(ModuleType):
    """A plug-in written outside autopeft: BitFit-like, on the FFN output biases only."""

    name = "toy_bias"
    doc = "train the FFN output biases"
    params = (ParamSpec("scale", "int", 1, low=0, high=4),)
    size_param = "scale"
    mergeable = True

    def alone_backend(self, m, candidate):
        return "own"

    def build_own(self, model, m, ctx):
        for name in ctx.module_names(m, ("ffn_out",)):
            dict(model.named_modules())[name].bias.requires_grad_(True)

    def param_count(self, m, info, backend):
        return len(m.layers) * info.hidden_size

    def extra_flops(self, m, info, seq_len, backend, num_labels):
        return 0.0


@pytest.fixture
def toy():
    plugin = moduletypes.register(Toy())
    yield plugin
    registry._TYPES.pop(plugin.name)


def test_a_plugin_registered_at_run_time_reaches_dsl_candidate_validate_and_cost(toy):
    from autopeft.cost import estimate
    from autopeft.methods import backend_for, validate
    from autopeft.models import model_info
    from autopeft.space import parse_space

    space = parse_space("space: t\nmodules:\n  toy: {type: toy_bias, scale: [0, 1, 2], "
                        "layers: [0, 1]}\n", "<toy>").bind(num_layers=6, hidden_size=384)
    picked = [space.to_candidate(a) for a in (space.walk(lambda d: d.options()[-1]),
                                              space.walk(lambda d: d.options()[0]))]
    assert picked[0].types == ("toy_bias",) and picked[1].types == ()  # scale 0 = off
    cand = picked[0]
    assert Candidate.from_dict(cand.to_dict()) == cand
    info = model_info("minilm")
    validate(cand, info)
    assert backend_for(cand) == "own"
    cost = estimate(cand, info)
    assert cost.trainable_params == 2 * 384 and cost.mergeable
    with pytest.raises(ValueError, match="no parameter"):
        M("toy_bias", {"size": 3}, [0])


def test_a_registered_plugin_builds_and_is_measured(toy, minilm):
    from autopeft.cost import estimate, measure
    from autopeft.methods import build

    cand = Candidate((M("toy_bias", {}, [2, 4]),), {}, 6)
    built = build(minilm, cand, seed=0)
    names = {n for n in built.trainable_parameters() if not n.startswith("classifier")}
    assert names == {"bert.encoder.layer.2.output.dense.bias",
                     "bert.encoder.layer.4.output.dense.bias"}
    assert measure(built, minilm, latency=False).trainable_params == \
        estimate(cand, minilm.info).trainable_params == 2 * 384


def test_importing_moduletypes_imports_no_heavy_library():
    code = ("import sys, autopeft.moduletypes as mt\n"
            "assert len(mt.all_types()) >= 12\n"
            "heavy = [m for m in ('torch', 'transformers', 'peft', 'adapters') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize("module", [
    {"type": "full"},
    {"type": "dora", "layers": [1, 2], "rank": 4, "targets": ["q", "k", "v", "ffn_out"]},
    {"type": "rslora", "layers": [0, 3], "rank": 8},
], ids=["full", "dora", "rslora"])
def test_new_types_run_as_real_proxy_trials(tmp_path, monkeypatch, module):
    """Full fine-tuning, DoRA and rsLoRA are ordinary candidates: a real (tiny-gpt2) proxy
    trial trains them and reports their measured cost; the evaluator's close() frees it."""
    pytest.importorskip("torch")
    import dataclasses
    import random

    from autopeft.evaluation.base import NullReporter
    from autopeft.evaluation.proxy import ProxyEvaluator
    from autopeft.records import EvalRequest

    monkeypatch.setenv("AUTOPEFT_CACHE", str(tmp_path / "cache"))
    rng = random.Random(0)
    words = {0: ["awful", "bad", "poor", "dull"], 1: ["great", "good", "fine", "superb"]}
    rows = ["text,label"] + [f"the film was {rng.choice(words[i % 2])},{i % 2}" for i in range(96)]
    (tmp_path / "toy.csv").write_text("\n".join(rows) + "\n")
    evaluator = ProxyEvaluator({
        "model": "tiny-gpt2", "data": {"source": str(tmp_path / "toy.csv"), "validation": 16,
                                       "test": 16},
        "proxy": {"train_examples": 32, "max_steps": 4, "eval_every": 2, "max_length": 12,
                  "validation_examples": 16, "eval_batch_size": 16},
        "optimizer": {"learning_rate": 1.0e-3, "batch_size": 8}, "resources": {"cpus": 1}})
    candidate = {"modules": [module], "hyper": {}, "num_layers": 4}
    try:
        fields = {f.name for f in dataclasses.fields(EvalRequest)}
        request = EvalRequest(trial_number=0, candidate=candidate, experiment={}, seed=0,
                              **({"study": "t"} if "study" in fields else {}))
        metrics = evaluator.evaluate(request, NullReporter())
        assert 0.0 <= metrics.metric <= 1.0 and metrics.steps == 4
        info = evaluator._setup.base.info
        from autopeft.cost import estimate

        want = estimate(Candidate.from_dict(candidate), info, num_labels=2)
        assert metrics.cost.trainable_params == want.trainable_params
        assert metrics.cost.params_ratio == want.params_ratio
        if module["type"] == "full":
            assert metrics.cost.params_ratio == 1.0 and metrics.extra["backend"] == "own"
        meter = evaluator._setup.meter
        assert meter._stats  # the set-up's meter holds the base counts ...
    finally:
        evaluator.close()
    assert not meter._stats and not meter._flops  # ... and close() freed them
