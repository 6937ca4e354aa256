"""The cost model: analytic formulas against hand-computed numbers and against the measured
counts of real built models (MiniLM for every module type, the tiny decoders for their shapes).
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from autopeft.candidate import Candidate, ModuleConfig as M
from autopeft.cost import (base_param_count, estimate, head_param_count, is_mergeable, measure,
                           summarize_space)
from autopeft.models import model_info
from moduletype_cases import TYPES

ALL6 = list(range(6))


def cand(*modules, n=6):
    return Candidate(tuple(modules), {}, n)


# One list drives the measured-vs-analytic test: every registered module type (from
# tests/moduletype_cases.py), alone and mixed, including layer subsets and both backends'
# variants.
MINILM_CASES = {
    **{f"type-{t.type}": cand(*t.modules) for t in TYPES},
    "dora-xavier-ffn": cand(M("dora", {"rank": 4, "targets": ["q", "ffn_in", "ffn_out"],
                                       "init": "xavier"}, [0, 5])),
    "rslora+adapter": cand(M("rslora", {"rank": 4, "targets": ["q", "ffn_out"]}, [1, 2]),
                           M("adapter", {"size": 8}, ALL6)),
    "dora+bitfit": cand(M("dora", {"rank": 2}, ALL6), M("bitfit", {"targets": ["v"]}, [0])),
    "head-only": cand(),
    "lora": cand(M("lora", {"rank": 8, "targets": ["q", "v", "ffn_out"]}, [0, 1, 2])),
    "ia3": cand(M("ia3", {}, ALL6)),
    "prompt": cand(M("prompt", {"length": 10})),
    "prefix": cand(M("prefix", {"length": 10}, ALL6)),
    "prefix-mlp": cand(M("prefix", {"length": 10, "bottleneck": 32}, ALL6)),
    "prefix-subset": cand(M("prefix", {"length": 5, "bottleneck": 24}, [0, 1, 2])),
    "bitfit": cand(M("bitfit", {}, [1, 2, 3, 4, 5])),
    "adapter-pfeiffer": cand(M("adapter", {"size": 16}, [0, 1, 2, 3])),
    "adapter-houlsby": cand(M("adapter", {"size": 8, "placement": "houlsby"}, ALL6)),
    "parallel_adapter": cand(M("parallel_adapter", {"size": 16}, [2, 3, 4, 5])),
    "unipelt": cand(M("unipelt", {"rank": 4, "prefix_length": 5, "size": 8}, ALL6)),
    "mam": cand(M("mam", {"prefix_length": 5, "size": 8}, [0, 1, 2])),
    "paper-mix": cand(M("adapter", {"size": 8}, ALL6), M("parallel_adapter", {"size": 16}, [1, 2, 3, 4, 5]),
                      M("prefix", {"length": 4}, [0, 1])),
    "lora+adapter": cand(M("lora", {"rank": 4, "targets": ["q", "k", "ffn_in"]}, [0, 1]),
                         M("adapter", {"size": 8}, ALL6)),
    "ia3+prefix": cand(M("ia3", {}, [1, 2, 3, 4, 5]), M("prefix", {"length": 4}, ALL6)),
    "lora+bitfit": cand(M("lora", {"rank": 4}, ALL6), M("bitfit", {"targets": ["q"]}, ALL6)),
}


@pytest.mark.parametrize("name", list(MINILM_CASES))
def test_analytic_equals_measured_on_minilm(minilm, name):
    from autopeft.methods import build

    c = MINILM_CASES[name]
    built = build(minilm, c, seed=0)
    got = measure(built, minilm, latency=False)
    want = estimate(c, minilm.info, num_labels=minilm.num_labels)
    assert got.trainable_params == want.trainable_params == built.num_trainable() - got.head_params
    assert got.base_params == want.base_params == 22_713_216
    assert got.head_params == want.head_params == 384 * 2 + 2
    assert got.base_flops_per_token == pytest.approx(want.base_flops_per_token, rel=1e-12)
    assert got.extra_flops_per_token == pytest.approx(want.extra_flops_per_token, rel=1e-9, abs=1e-9)
    assert got.flops_ratio_merged == pytest.approx(want.flops_ratio_merged, rel=1e-9, abs=1e-12)
    assert got.mergeable == want.mergeable
    assert got.latency_ratio is None


@pytest.mark.parametrize("fixture", ["tiny_gpt2", "tiny_llama"])
@pytest.mark.parametrize("modules", [
    (M("lora", {"rank": 4, "targets": ["q", "k", "v", "o", "ffn_in", "ffn_out"]}, [0, 2]),),
    (M("ia3", {"targets": ["q", "k", "v", "ffn_out"]}, [1, 3]),),
    (M("prompt", {"length": 6}),),
    (M("prefix", {"length": 6, "bottleneck": 16}, [0, 1, 2, 3]),),
    (M("adapter", {"size": 8}, [0, 1]), M("prefix", {"length": 3}, [2, 3])),
    (M("dora", {"rank": 4, "targets": ["q", "k", "v", "o", "ffn_in", "ffn_out"]}, [1, 3]),),
    (M("rslora", {"rank": 2, "targets": ["v", "ffn_out"]}, [0]),),
    (M("full", {}),),
], ids=["lora", "ia3", "prompt", "prefix-mlp", "adapter+prefix", "dora", "rslora", "full"])
def test_analytic_equals_measured_on_decoders(request, fixture, modules):
    """GPT-2's fused c_attn (DoRA: one magnitude of 3h), Llama's grouped-query k/v, gate_proj
    and rotary matmul."""
    from autopeft.methods import build

    base = request.getfixturevalue(fixture)
    c = cand(*modules, n=4)
    built = build(base, c, seed=0)
    got = measure(built, base, latency=False)
    want = estimate(c, base.info, num_labels=base.num_labels)
    assert (got.trainable_params, got.base_params, got.head_params) == \
        (want.trainable_params, want.base_params, want.head_params)
    assert got.base_flops_per_token == pytest.approx(want.base_flops_per_token, rel=1e-12)
    assert got.extra_flops_per_token == pytest.approx(want.extra_flops_per_token, rel=1e-9, abs=1e-9)


def test_formulas_against_hand_computed_numbers():
    info = model_info("minilm")  # BERT: 6 layers, h 384, FFN 1536, vocab 30522, 512 positions
    # embeddings h*(V + P + 2) + LN 2h; per layer 4(h^2+h) + (hi+i) + (ih+h) + 2 LN (4h); pooler
    per_layer = 4 * (384 * 384 + 384) + (384 * 1536 + 1536) + (1536 * 384 + 384) + 4 * 384
    assert base_param_count(info) == 384 * (30522 + 512 + 2) + 2 * 384 + 6 * per_layer + 384 * 384 + 384
    assert head_param_count(info, 2) == 770
    lora = estimate(cand(M("lora", {"rank": 8, "targets": ["q", "v"]}, ALL6)), info)
    assert lora.trainable_params == 6 * 2 * 8 * (384 + 384)  # L * matrices * r(d_in + d_out)
    assert lora.extra_flops_per_token == 2 * lora.trainable_params  # one MAC per weight
    assert lora.mergeable and lora.flops_ratio_merged == 0.0 and lora.flops_ratio > 0
    # Houlsby adapter: 2 adapters per layer, each 2*h*s + h + s
    houlsby = estimate(cand(M("adapter", {"size": 64, "placement": "houlsby"}, ALL6)), info)
    assert houlsby.trainable_params == 6 * 2 * (2 * 384 * 64 + 384 + 64)
    assert not houlsby.mergeable and houlsby.flops_ratio_merged == houlsby.flops_ratio
    # prefix: P keys+values per layer; every token attends to P more positions (4 P h per layer)
    prefix = estimate(cand(M("prefix", {"length": 10}, ALL6)), info)
    assert prefix.trainable_params == 10 * 6 * 2 * 384
    assert prefix.extra_flops_per_token == 6 * 4 * 10 * 384
    assert estimate(cand(M("prompt", {"length": 20})), info).trainable_params == 20 * 384
    ia3 = estimate(cand(M("ia3", {}, ALL6)), info)  # k, v outputs (h) + FFN activation (i)
    assert ia3.trainable_params == 6 * (384 + 384 + 1536) and ia3.extra_flops_per_token == 0
    bitfit = estimate(cand(M("bitfit", {}, ALL6)), info)
    assert bitfit.trainable_params == 6 * (4 * 384 + 1536 + 384)
    # DoRA: LoRA's r(in + out) plus a magnitude of `out` per matrix; per token its FLOPs add
    # the LoRA weight B A (formed through an identity: 2 in r (in + out)) spread over T tokens
    dora = estimate(cand(M("dora", {"rank": 8, "targets": ["q", "ffn_in"]}, ALL6)), info)
    assert dora.trainable_params == 6 * (8 * (384 + 384) + 384 + 8 * (384 + 1536) + 1536)
    assert dora.extra_flops_per_token == 6 * (2 * 8 * (384 + 384) * (1 + 384 / 64)
                                              + 2 * 8 * (384 + 1536) * (1 + 384 / 64))
    assert dora.mergeable and dora.flops_ratio_merged == 0.0
    rslora = estimate(cand(M("rslora", {"rank": 8, "targets": ["q", "v"]}, ALL6)), info)
    assert (rslora.trainable_params, rslora.extra_flops_per_token) == \
        (lora.trainable_params, lora.extra_flops_per_token)
    full = estimate(cand(M("full", {})), info)  # every base weight, the head apart
    assert full.trainable_params == full.base_params == base_param_count(info)
    assert full.params_ratio == 1.0 and full.flops_ratio == 0.0 and full.mergeable
    head_only = estimate(cand(), info)
    assert head_only.trainable_params == 0 and head_only.flops_ratio == 0 and head_only.mergeable
    # base FLOPs per token: 2 * non-embedding linear weights + 4 L T h + pooler/head per sequence
    linear = 4 * 384 * 384 + 2 * 384 * 1536
    T = 64
    want = (T * 2 * 6 * linear + 4 * 6 * T * T * 384 + 2 * 384 * 384 + 2 * 384 * 2) / T
    assert head_only.base_flops_per_token == pytest.approx(want, rel=1e-12)


def test_merge_rules():
    assert is_mergeable(cand(M("lora", {}, ALL6), M("ia3", {}, ALL6), M("bitfit", {}, ALL6)))
    for t in ("dora", "rslora"):
        assert is_mergeable(cand(M(t, {}, ALL6)))
    assert is_mergeable(cand(M("full", {})))
    for t in ("adapter", "parallel_adapter", "prefix", "unipelt", "mam"):
        assert not is_mergeable(cand(M(t, {}, ALL6)))
    assert not is_mergeable(cand(M("prompt", {})))
    info = model_info("minilm")
    mixed = estimate(cand(M("lora", {"rank": 4}, [0, 1]), M("adapter", {"size": 8}, ALL6)), info)
    adapter_only = estimate(cand(M("adapter", {"size": 8}, ALL6)), info)
    assert mixed.flops_ratio > adapter_only.flops_ratio
    # after merging only the adapter's FLOPs remain (LoRA in a mixture adapts q separately)
    assert mixed.flops_ratio_merged == pytest.approx(adapter_only.flops_ratio, rel=1e-12)


def test_cost_meter_caches_the_base_and_restores_the_model(minilm, monkeypatch):
    from autopeft.cost import CostMeter
    from autopeft.cost import measured as cost
    from autopeft.methods import build

    built = build(minilm, MINILM_CASES["adapter-pfeiffer"], seed=0)
    built.model.train()
    grads = {n: p.requires_grad for n, p in built.model.named_parameters()}
    calls = []
    real = cost._forward_flops
    monkeypatch.setattr(cost, "_forward_flops", lambda m, x: calls.append(m) or real(m, x))
    meter = CostMeter(minilm, latency_settings={"min_pairs": 2, "max_pairs": 2, "warmup": 0})
    first = meter.measure(built, latency=True)
    again = build(minilm, MINILM_CASES["adapter-pfeiffer"], seed=1)  # same architecture
    second = meter.measure(again, latency=False)
    assert len(calls) == 2  # the base once, the architecture once: both cached
    other = build(minilm, MINILM_CASES["parallel_adapter"], seed=0)
    meter.measure(other, latency=False)
    assert len(calls) == 3
    assert first.extra_flops_per_token == second.extra_flops_per_token > 0
    assert isinstance(first.latency_ratio, float) and first.latency_ratio > -1
    assert built.model.training  # measure ran in eval mode and put the mode back
    assert {n: p.requires_grad for n, p in built.model.named_parameters()} == grads
    assert minilm.model.training is False
    meter.close()  # frees the counts: the next measure counts the base and the arch again
    assert meter.measure(again, latency=False) == second
    assert len(calls) == 5
    measure(again, minilm, latency=False)  # the one-off function keeps nothing
    measure(again, minilm, latency=False)
    assert len(calls) == 9


def test_cost_meter_flop_cache_is_a_bounded_lru(minilm, monkeypatch):
    from autopeft.cost import CostMeter
    from autopeft.cost import measured as cost
    from autopeft.methods import build

    calls = []
    real = cost._forward_flops
    monkeypatch.setattr(cost, "_forward_flops", lambda m, x: calls.append(m) or real(m, x))
    a, b, c = (build(minilm, cand(M("lora", {"rank": r}, [0])), seed=0) for r in (1, 2, 3))
    meter = CostMeter(minilm, flop_cache_size=2)
    for built in (a, b, a, c):  # a is used again before c arrives, so b is the one to go
        meter.measure(built, latency=False)
    assert len(calls) == 1 + 3 and len(meter._flops) == 2
    meter.measure(a, latency=False)
    assert len(calls) == 4  # a is still cached
    meter.measure(b, latency=False)
    assert len(calls) == 5  # b was evicted


def test_the_evaluator_owns_its_cost_meter_and_close_frees_it(monkeypatch):
    """ProxyEvaluator's set-up creates the meter; close() frees its counts and base copy."""
    from autopeft.cost import CostMeter
    from autopeft.evaluation import proxy

    closed = []
    monkeypatch.setattr(CostMeter, "close", lambda self: closed.append(self))
    evaluator = proxy.ProxyEvaluator.__new__(proxy.ProxyEvaluator)
    meter = CostMeter(base=None)
    evaluator._setup = proxy._Setup(key=("k",), raw=None, splits={}, base=None, encoded={},
                                    device=None, seconds=0.0, meter=meter)
    evaluator.close()
    assert closed == [meter] and evaluator._setup is None
    evaluator.close()  # closing twice is harmless
    assert closed == [meter]


def test_import_stays_light_and_estimate_needs_no_torch():
    code = ("import sys, autopeft.cost as c; from autopeft.models import model_info; "
            "from autopeft.candidate import Candidate, ModuleConfig as M; "
            "print(c.estimate(Candidate((M('lora', {}, [0, 1]),), {}, 6), model_info('minilm'))"
            ".trainable_params); assert 'torch' not in sys.modules, 'torch imported'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(2 * 2 * 8 * 768)


def test_summarize_default_space_is_exact_and_reproducible():
    from autopeft.space import load_space

    bound = load_space("default.yaml").bind(6, 384)
    lines = summarize_space(bound, "minilm")
    assert lines == summarize_space(bound, "minilm", seed=1)  # enumerated: the seed is moot
    text = "\n".join(lines)
    assert "exact, over all" in text and "22,713,216 base parameters" in text
    # the smallest default candidate is IA3 everywhere, the largest a Houlsby adapter (64)
    assert "min 13,824 (0.061%)" in text
    assert f"max {6 * 2 * (2 * 384 * 64 + 384 + 64):,}" in text
    assert "770 parameters for 2 labels" in text


def test_summarize_sampled_space_finds_the_largest_candidate():
    from autopeft.space import load_space

    bound = load_space("autopeft_paper.yaml").bind(6, 384)
    lines = summarize_space(bound, "minilm", n=100, seed=3)
    assert lines == summarize_space(bound, "minilm", n=100, seed=3)
    info = model_info("minilm")
    biggest = estimate(cand(M("adapter", {"size": 384}, ALL6), M("parallel_adapter", {"size": 384}, ALL6),
                            M("prefix", {"length": 384}, ALL6)), info)
    text = "\n".join(lines)
    assert "median over 100 samples (seed 3)" in text
    assert "median over 64 samples" in summarize_space(bound, "minilm", n=3)[0]  # the floor
    assert f"max {biggest.trainable_params:,}" in text  # found by the coordinate search
    assert "min 0 (0.000%)" in text  # everything off: the head-only baseline


def test_summarize_reports_candidates_the_model_cannot_take():
    from autopeft.space import load_space

    info = model_info("tiny-llama")
    lines = summarize_space(load_space("default.yaml").bind(info.num_layers, info.hidden_size),
                            "tiny-llama")
    assert any("cannot be built on tiny-llama" in line and "BitFit" in line for line in lines)


def _count_forwards(model):
    calls = []
    return calls, model.register_forward_pre_hook(lambda *a: calls.append(1))


def test_a_merging_candidate_is_not_timed_its_deployed_latency_is_the_base(minilm):
    """LoRA, IA3, BitFit deploy merged: latency 0 exactly, basis "merged", no timed forward."""
    from autopeft.cost import CostMeter
    from autopeft.methods import build

    meter = CostMeter(minilm)
    for name in ("lora", "ia3", "bitfit", "lora+bitfit"):
        built = build(minilm, MINILM_CASES[name], seed=0)
        calls, hook = _count_forwards(built.model)
        try:
            got = meter.measure(built, latency_limit=0.15)
        finally:
            hook.remove()
        assert len(calls) == 1, name  # the FLOP-counting forward only
        assert (got.latency_ratio, got.latency_low, got.latency_high) == (0.0, 0.0, 0.0)
        assert got.latency_basis == "merged" and got.latency_pairs == 0 and got.mergeable
    assert meter.measure(built, latency=False).latency_basis is None


def test_latency_is_timed_once_per_architecture_and_stored_with_its_interval(minilm,
                                                                             monkeypatch):
    """The meter hands paired_ratio the candidate's and the base's forwards and the limit,
    stores the estimate's interval, and reuses it for the same architecture (another init
    or seed); another limit or architecture is timed again. paired_ratio is replaced by a
    recorder here: its statistics are tests/test_latency.py's."""
    import torch

    from autopeft.cost import CostMeter
    from autopeft.cost import measured
    from autopeft.cost.latency import LatencyEstimate
    from autopeft.methods import build
    from autopeft.records import Metrics

    import time

    seen = []

    def fake_pairs(run_candidate, run_base, *, limit, **settings):
        run_candidate()
        run_base()
        seen.append((limit, settings, torch.get_num_threads()))
        return LatencyEstimate(0.2, 0.17, 0.24, 40, 0.99, 1.5)

    monkeypatch.setattr(measured, "paired_ratio", fake_pairs)
    meter = CostMeter(minilm, latency_settings={"budget_s": 2.0})
    pfeiffer = MINILM_CASES["adapter-pfeiffer"]
    built = build(minilm, pfeiffer, seed=0)
    calls, hook = _count_forwards(built.model)
    threads = torch.get_num_threads()
    got = meter.measure(built, latency_limit=0.15)
    hook.remove()
    assert len(calls) == 2  # FLOPs, then the one forward the recorder ran
    # one thread, timed by the thread's CPU clock (the budget by the wall clock)
    assert seen == [(0.15, {"budget_s": 2.0, "clock": time.thread_time,
                            "wall": time.perf_counter}, 1)]
    assert torch.get_num_threads() == threads
    assert (got.latency_ratio, got.latency_low, got.latency_high, got.latency_pairs,
            got.latency_confidence, got.latency_basis) == (0.2, 0.17, 0.24, 40, 0.99, "measured")
    assert Metrics.from_dict(Metrics(0.9, "accuracy", got).to_dict()).cost == got
    zero_init = cand(M("adapter", {**pfeiffer.modules[0].params, "init": "zero"},
                       pfeiffer.modules[0].layers))
    assert meter.measure(build(minilm, zero_init, seed=3), latency_limit=0.15) == got
    assert len(seen) == 1  # same architecture: not timed again
    meter.measure(built, latency_limit=0.3)
    meter.measure(build(minilm, MINILM_CASES["adapter-houlsby"], seed=0), latency_limit=0.15)
    assert len(seen) == 3
    meter.close()
    meter.measure(built, latency_limit=0.15)
    assert len(seen) == 4  # close() forgets the estimates too


@pytest.mark.slow
def test_real_latency_of_an_adapter_on_minilm(minilm):
    """The real clock on the real model: the stored figures are an interval around the
    median from at least the first look's pairs (no assertion on the times themselves)."""
    from autopeft.cost import CostMeter
    from autopeft.methods import build
    from autopeft.reward import latency_verdict

    built = build(minilm, MINILM_CASES["adapter-houlsby"], seed=0)
    got = CostMeter(minilm).measure(built, latency_limit=0.15)
    assert got.latency_basis == "measured" and 10 <= got.latency_pairs <= 160
    assert got.latency_low <= got.latency_ratio <= got.latency_high
    assert got.latency_confidence >= 0.99
    assert latency_verdict(got.to_dict(), 0.15) in ("within", "over", "uncertain")


def test_the_evaluator_times_latency_against_the_experiments_limit():
    from autopeft.config import ExperimentConfig
    from autopeft.evaluation import proxy

    got = []

    class Meter:
        def measure(self, built, **kw):
            got.append(kw)

    evaluator = proxy.ProxyEvaluator.__new__(proxy.ProxyEvaluator)
    s = proxy._Setup(key=("k",), raw=None, splits={}, base=None, encoded={}, device=None,
                     seconds=0.0, meter=Meter())
    cfg = ExperimentConfig.from_dict({"constraints": {"max_latency_ratio": 0.2}})
    evaluator._cost(object(), s, cfg)
    evaluator._cost(object(), s, ExperimentConfig())
    assert got == [{"latency_limit": 0.2}, {"latency_limit": 0.15}]  # 0.15: the default
