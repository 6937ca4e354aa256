"""The cost of a candidate relative to its base model: parameters, FLOPs, latency, mergeability.

Two paths that agree (tests/test_cost.py checks them against each other on MiniLM):

* `measure(built, base)`: counts the trainable tensors of a built model, counts forward FLOPs
  with torch.utils.flop_counter.FlopCounterMode on a fixed reference batch, and times forwards.
  The evaluator calls it once per trial, so the base model's figures are cached per
  (model, labels, seq_len, batch, device).
* `estimate(candidate, info)`: the same parameter count from ModelInfo shapes alone, and FLOPs
  from formulas, without torch. `summarize_space` uses it to describe a whole space.

Definitions (the choices are ours; the paper reports "% of parameters" without saying more):

* trainable_params: trainable PEFT parameters, *excluding* the classifier head. The head
  (BERT `classifier`, GPT-2/Llama `score`) is trained by every candidate, the head-only
  baseline included, so it does not tell candidates apart; it is reported as `head_params`.
* base_params: every parameter of the pretrained model (embeddings, layers, BERT's pooler),
  excluding the classification head.
* params_ratio = trainable_params / base_params.
* FLOPs count matrix multiplications only (matmul, linear, attention scores and mixing), the
  convention of FlopCounterMode and of Kaplan et al. 2020 (Scaling Laws, Table 1): 2 FLOPs per
  multiply-accumulate; elementwise work (IA3's scaling, biases, norms, activations) is free.
  "Per token" divides a forward's FLOPs by the number of *input* tokens (batch * seq_len), so
  prompt tokens, which lengthen the sequence, show up as overhead.
* Merged FLOPs: LoRA (W + BA folds into W, Hu et al. 2021 sec. 4.1), IA3 (the scaling folds
  into the weights it rescales, Liu et al. 2022 sec. 3.3) and BitFit (it changes existing
  biases) add nothing once merged. Adapters, parallel adapters, prefixes, prompts and the gated
  mixtures (UniPELT's gates depend on the input) cannot merge.
"""
from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

from autopeft.candidate import Candidate, ModuleConfig
from autopeft.exceptions import CandidateError
from autopeft.records import Cost

if TYPE_CHECKING:  # pragma: no cover
    from autopeft.models import BaseModel, ModelInfo

logger = logging.getLogger(__name__)

MERGEABLE = {"lora": True, "ia3": True, "bitfit": True, "adapter": False,
             "parallel_adapter": False, "prefix": False, "prompt": False, "unipelt": False,
             "mam": False}
SEQ_LEN = 64
BATCH = 8
REPEATS = 3  # timed forwards per model (alternating candidate/base); medians compared
LATENCY_BUDGET_S = 0.6  # stop timing after this long (keeps measure() near 1 s on MiniLM)


def is_mergeable(candidate: Candidate) -> bool:
    """True when every module folds into the base weights (the head-only baseline too)."""
    return all(MERGEABLE[m.type] for m in candidate.modules)


# --------------------------------------------------------------------------- shapes

def _linears(info: "ModelInfo") -> dict[str, tuple[int, int, bool]]:
    """Per-layer linear sub-modules of a family: relative name -> (in, out, has_bias)."""
    h, i, kv, cfg = info.hidden_size, info.intermediate_size, info.kv_size, info.config
    if info.family == "bert":
        return {"attention.self.query": (h, h, True), "attention.self.key": (h, h, True),
                "attention.self.value": (h, h, True), "attention.output.dense": (h, h, True),
                "intermediate.dense": (h, i, True), "output.dense": (i, h, True)}
    if info.family == "gpt2":
        return {"attn.c_attn": (h, 3 * h, True), "attn.c_proj": (h, h, True),
                "mlp.c_fc": (h, i, True), "mlp.c_proj": (i, h, True)}
    if info.family == "llama":
        qd = info.num_heads * info.head_dim
        ab, mb = bool(cfg.get("attention_bias", False)), bool(cfg.get("mlp_bias", False))
        return {"self_attn.q_proj": (h, qd, ab), "self_attn.k_proj": (h, kv, ab),
                "self_attn.v_proj": (h, kv, ab), "self_attn.o_proj": (qd, h, ab),
                "mlp.gate_proj": (h, i, mb), "mlp.up_proj": (h, i, mb),
                "mlp.down_proj": (i, h, mb)}
    raise CandidateError(f"no parameter formulas for model family {info.family!r} "
                         f"(model {info.ref!r}).\n  fix: use a BERT-, GPT-2- or Llama-style model")


def _targets(info: "ModelInfo", targets: Iterable[str]) -> list[tuple[int, int, bool]]:
    """Shapes of the distinct sub-modules the targets name (GPT-2's q/k/v share c_attn)."""
    from autopeft.methods.targets import relative_names

    table = _linears(info)
    return [table[rel] for rel in relative_names(info.family, targets)]


def base_param_count(info: "ModelInfo") -> int:
    """Parameters of the pretrained model without the classification head, from config.json."""
    cfg, h, n = info.config, info.hidden_size, info.num_layers
    linear = sum(a * b + (b if bias else 0) for a, b, bias in _linears(info).values())
    if info.family == "bert":
        emb = h * (info.vocab_size + int(cfg.get("max_position_embeddings", 512))
                   + int(cfg.get("type_vocab_size", 2))) + 2 * h
        # two LayerNorms (weight + bias) per layer; the pooler is a dense h -> h with bias
        return emb + n * (linear + 4 * h) + h * h + h
    if info.family == "gpt2":
        emb = h * (info.vocab_size + int(cfg.get("n_positions", 1024)))
        return emb + n * (linear + 4 * h) + 2 * h  # ln_1, ln_2 per layer; ln_f
    # llama: RMSNorms have a weight only; the sequence-classification model has no lm_head
    return h * info.vocab_size + n * (linear + 2 * h) + h


# --------------------------------------------------------------------------- parameters

def module_params(m: ModuleConfig, info: "ModelInfo", backend: str = "peft") -> int:
    """Exact trainable parameters that module `m` adds, as autopeft.methods builds it.

    `backend` is the one autopeft.methods.validate.backend_for picks for the candidate
    ("peft" when the module is alone, "adapters" in mixtures): a few shapes differ.
    """
    h, n_layers = info.hidden_size, len(m.layers or ())
    t = m.type
    if t == "lora":
        return n_layers * _lora_params(info, int(m["rank"]), m["targets"], backend)
    if t == "ia3":
        # IA3: one vector per adapted matrix (Liu et al. 2022, sec. 3.3): of the input width
        # for the FFN down projection (it rescales the intermediate activation), of the output
        # width for the others (keys, values)
        # (peft's feedforward_modules); AdapterHub's IA3 scales every output
        from autopeft.methods.targets import relative_names

        table = _linears(info)
        ff = set(relative_names(info.family, ("ffn_out",))) if backend == "peft" else set()
        if backend != "peft":
            return n_layers * sum(b for _, b, _ in _split_targets(info, m["targets"]))
        return n_layers * sum(table[rel][0] if rel in ff else table[rel][1]
                              for rel in relative_names(info.family, m["targets"]))
    if t == "bitfit":
        # BitFit trains the existing bias terms of the chosen linears (Ben Zaken et al. 2022)
        return n_layers * sum(b for _, b, bias in _targets(info, m["targets"]) if bias)
    if t == "prompt":
        # prompt tuning: P soft tokens of the embedding width (Lester et al. 2021)
        return int(m["length"]) * h
    if t == "prefix":
        return _prefix_params(int(m["length"]), int(m["bottleneck"]), n_layers, info, backend)
    if t in ("adapter", "parallel_adapter"):
        count = 2 if t == "adapter" and m["placement"] == "houlsby" else 1
        return n_layers * count * _bottleneck_params(h, int(m["size"]))
    if t == "unipelt":
        # UniPELT (Mao et al. 2022) as AdapterHub builds it: a prefix (MLP width 512), a serial
        # adapter and LoRA on q and v, each with a sigmoid gate (a Linear to one unit)
        lora = _lora_params(info, int(m["rank"]), ("q", "v"), "adapters", gated=True)
        return n_layers * (lora + _bottleneck_params(h, int(m["size"])) + (h + 1)) + \
            _prefix_params(int(m["prefix_length"]), 512, n_layers, info, "adapters") + \
            n_layers * (h + 1)
    if t == "mam":
        # Mix-and-Match (He et al. 2022): a prefix reparametrised through an MLP of width 800
        # (AdapterHub's MAMConfig) and a parallel FFN adapter
        return _prefix_params(int(m["prefix_length"]), 800, n_layers, info, "adapters") + \
            n_layers * _bottleneck_params(h, int(m["size"]))
    raise CandidateError(f"no parameter formula for module type {t!r}")


def _bottleneck_params(h: int, s: int) -> int:
    """A bottleneck adapter: down h -> s and up s -> h, both with bias (Houlsby et al. 2019,
    sec. 2.1: 2md + d + m parameters per adapter)."""
    return 2 * h * s + h + s


def _lora_params(info: "ModelInfo", r: int, targets: Iterable[str], backend: str,
                 gated: bool = False) -> int:
    """LoRA per layer: A is r x in, B is out x r (Hu et al. 2021, eq. 3) for each adapted
    matrix; a gate (UniPELT) adds a Linear in -> 1."""
    shapes = _targets(info, targets) if backend == "peft" else _split_targets(info, targets)
    return sum(r * (a + b) + ((a + 1) if gated else 0) for a, b, _ in shapes)


def _split_targets(info: "ModelInfo", targets: Iterable[str]) -> list[tuple[int, int, bool]]:
    """LoRA in AdapterHub `adapters` adapts q, k, v as separate matrices even on GPT-2."""
    if info.family != "gpt2":
        return _targets(info, targets)
    h = info.hidden_size
    out = [(h, h, True) for t in ("q", "k", "v") if t in set(targets)]
    return out + _targets(info, [t for t in targets if t not in ("q", "k", "v")])


def _prefix_params(length: int, bottleneck: int, n_layers: int, info: "ModelInfo",
                   backend: str) -> int:
    """Prefix tuning (Li & Liang 2021): P keys and values per prefixed layer.

    Without reparametrisation the P x (layers * 2 * kv) table is trained directly; with it,
    an embedding P x e feeds an MLP e -> b -> layers * 2 * kv (sec. 4.3 of the paper).
    kv is the key/value width (smaller than h under grouped-query attention); e is kv in
    peft (its token_dim) and h in AdapterHub adapters.
    """
    width = n_layers * 2 * info.kv_size
    if bottleneck <= 0:
        return length * width
    e = info.kv_size if backend == "peft" else info.hidden_size
    return length * e + (e * bottleneck + bottleneck) + (bottleneck * width + width)


def trainable_params(candidate: Candidate, info: "ModelInfo") -> int:
    """Exact trainable parameters of the candidate's modules (head excluded)."""
    from autopeft.methods.validate import backend_for

    backend = backend_for(_with_layers(candidate, info))
    return sum(module_params(m, info, backend) for m in candidate.modules)


def head_param_count(info: "ModelInfo", num_labels: int = 2) -> int:
    """The classifier head: BERT's has a bias, GPT-2's and Llama's `score` has none."""
    h = info.hidden_size
    return h * num_labels + (num_labels if info.family == "bert" else 0)


def _with_layers(candidate: Candidate, info: "ModelInfo") -> Candidate:
    if candidate.num_layers is None:
        return Candidate(candidate.modules, candidate.hyper, info.num_layers)
    return candidate


# --------------------------------------------------------------------------- FLOPs

def base_flops(info: "ModelInfo", seq_len: int, num_labels: int = 2) -> float:
    """Forward matmul FLOPs of one sequence of `seq_len` tokens through the base model.

    2 FLOPs per weight per token for every linear (Kaplan et al. 2020, Table 1: C_forward ~ 2N),
    plus attention scores QK^T and the mixing AV: 2 * T * T * d each per layer, i.e. 4*L*T^2*d
    per sequence (PaLM, Chowdhery et al. 2022, App. B counts the same 4 L T d per token before
    tripling it for training). BERT's pooler and head see one token per sequence; GPT-2's and
    Llama's `score` head runs on every position.
    """
    T, h, L = seq_len, info.hidden_size, info.num_layers
    linear = sum(a * b for a, b, _ in _linears(info).values())
    attn_width = info.num_heads * info.head_dim
    total = T * 2.0 * L * linear + 4.0 * L * T * T * attn_width
    if info.family == "llama":
        # rotary angles (Su et al. 2021) are computed as a matmul of the d/2 inverse
        # frequencies with the T positions (transformers' LlamaRotaryEmbedding)
        total += 2.0 * (info.head_dim // 2) * T
    if info.family == "bert":
        total += 2.0 * h * h + 2.0 * h * num_labels
    else:
        total += T * 2.0 * h * num_labels
    return total


def module_extra_flops(m: ModuleConfig, info: "ModelInfo", seq_len: int, backend: str = "peft",
                       num_labels: int = 2) -> float:
    """Forward matmul FLOPs that module `m` adds per input token (unmerged)."""
    T, h = seq_len, info.hidden_size
    n_layers = len(m.layers or ())
    t = m.type
    if t == "lora":
        r = int(m["rank"])  # x A^T then (.) B^T: 2 r (in + out) per token per matrix
        shapes = _targets(info, m["targets"]) if backend == "peft" else _split_targets(info, m["targets"])
        return n_layers * sum(2.0 * r * (a + b) for a, b, _ in shapes)
    if t in ("ia3", "bitfit"):
        return 0.0  # elementwise only
    if t in ("adapter", "parallel_adapter"):
        count = 2 if t == "adapter" and m["placement"] == "houlsby" else 1
        return n_layers * count * 4.0 * h * int(m["size"])  # down + up: 2 * 2 h s
    if t == "prefix":
        return _prefix_flops(int(m["length"]), int(m["bottleneck"]), n_layers, info, T, backend)
    if t == "unipelt":
        # LoRA on q, v and the serial adapter as above, plus the gates: a Linear to one unit
        # per token for each LoRA matrix, the adapter and the prefix of every layer
        lora = sum(2.0 * int(m["rank"]) * (a + b) + 2.0 * a
                   for a, b, _ in _split_targets(info, ("q", "v")))
        adapter = 4.0 * h * int(m["size"]) + 2.0 * h
        return n_layers * (lora + adapter + 2.0 * h) + \
            _prefix_flops(int(m["prefix_length"]), 512, n_layers, info, T, "adapters")
    if t == "mam":
        return n_layers * 4.0 * h * int(m["size"]) + \
            _prefix_flops(int(m["prefix_length"]), 800, n_layers, info, T, "adapters")
    if t == "prompt":
        # P more positions go through the whole model
        P = int(m["length"])
        return (base_flops(info, T + P, num_labels) - base_flops(info, T, num_labels)) / T
    raise CandidateError(f"no FLOP formula for module type {t!r}")


def _prefix_flops(length: int, bottleneck: int, n_layers: int, info: "ModelInfo", T: int,
                  backend: str) -> float:
    # every query attends to P more keys: 2 P d for the scores and 2 P d for the mixing
    attn = n_layers * 4.0 * length * info.num_heads * info.head_dim
    if bottleneck <= 0:
        return attn
    # the reparametrisation MLP runs once per sequence on the P prefix embeddings
    width = n_layers * 2 * info.kv_size
    e = info.kv_size if backend == "peft" else info.hidden_size
    return attn + length * 2.0 * (e * bottleneck + bottleneck * width) / T


def estimate(candidate: Candidate, info: "ModelInfo", *, seq_len: int = SEQ_LEN,
             num_labels: int = 2) -> Cost:
    """The analytic Cost of a candidate on a model: no torch, no weights (latency is None)."""
    from autopeft.methods.validate import backend_for

    cand = _with_layers(candidate, info)
    backend = backend_for(cand)
    params = sum(module_params(m, info, backend) for m in cand.modules)
    base_p = base_param_count(info)
    base_f = base_flops(info, seq_len, num_labels) / seq_len
    extras = [(m, module_extra_flops(m, info, seq_len, backend, num_labels)) for m in cand.modules]
    extra = sum(f for _, f in extras)
    merged = sum(f for m, f in extras if not MERGEABLE[m.type])
    return Cost(trainable_params=params, base_params=base_p, params_ratio=params / base_p,
                base_flops_per_token=base_f, extra_flops_per_token=extra,
                flops_ratio=extra / base_f, flops_ratio_merged=merged / base_f,
                latency_ratio=None, mergeable=is_mergeable(cand),
                head_params=head_param_count(info, num_labels))


# --------------------------------------------------------------------------- measured

@dataclass(frozen=True)
class _BaseStats:
    params: int          # base parameters, head excluded
    flops_per_seq: float  # forward FLOPs of one reference sequence


_BASE_CACHE: dict[tuple, _BaseStats] = {}


def clear_cache() -> None:
    """Forget the cached base-model measurements."""
    _BASE_CACHE.clear()


def split_params(model: Any, head_names: Iterable[str], *, trainable_only: bool) -> tuple[int, int]:
    """(non-head, head) parameter counts; a parameter is in the head when a component of its
    name is a head name (peft's copy is `classifier.modules_to_save.default.weight`)."""
    heads = set(head_names)
    body = head = 0
    for name, p in model.named_parameters():
        if trainable_only and not p.requires_grad:
            continue
        if heads.intersection(name.split(".")):
            head += p.numel()
        else:
            body += p.numel()
    return body, head


def _reference_batch(model: Any, vocab_size: int, batch: int, seq_len: int) -> dict[str, Any]:
    """A fixed batch of token ids (seeded, never the pad id) and a full attention mask."""
    import torch

    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1, max(vocab_size, 2), (batch, seq_len), generator=gen)
    pad = getattr(getattr(model, "config", None), "pad_token_id", None)
    if pad is not None:
        ids[ids == pad] = (pad + 1) % vocab_size
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device)}


def _flop_mapping() -> dict[Any, Any]:
    """FlopCounterMode knows the CUDA attention kernels but not the CPU one that SDPA picks
    here; count it with torch's own attention formula so prefixes and prompts show up."""
    import torch
    from torch.utils.flop_counter import flop_registry, sdpa_flop_count

    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is None or op in flop_registry:
        return {}

    def cpu_sdpa(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
        return sdpa_flop_count(query_shape, key_shape, value_shape)

    return {op: cpu_sdpa}


def _forward_flops(model: Any, inputs: dict[str, Any]) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False, custom_mapping=_flop_mapping())
    # FlopCounterMode's module tracker hooks every input that requires grad and fails on
    # AdapterHub's flat prefix (a view of a parameter made under no_grad); the count needs
    # no gradients, so switch them off for this forward and restore them afterwards
    trainable = [p for p in model.parameters() if p.requires_grad]
    try:
        for p in trainable:
            p.requires_grad_(False)
        with torch.no_grad(), counter:
            model(**inputs)
    finally:
        for p in trainable:
            p.requires_grad_(True)
    return float(counter.get_total_flops())


def _paired_seconds(model: Any, base_model: Any, inputs: dict[str, Any], repeats: int,
                    budget_s: float) -> tuple[float, float]:
    """Median forward time of the candidate and of the base, timed in alternation so that a
    change in the machine's load hits both alike. Stops after `repeats` pairs, or earlier
    once `budget_s` seconds are spent (at least one pair): a loaded machine costs precision,
    not time."""
    import torch

    cuda = inputs["input_ids"].device.type == "cuda"

    def timed(m: Any) -> float:
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        m(**inputs)
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    cand, base = [], []
    start = time.perf_counter()
    with torch.no_grad():
        for _ in range(max(1, repeats)):
            cand.append(timed(model))
            base.append(timed(base_model))
            if time.perf_counter() - start > budget_s:
                break
    return statistics.median(cand), statistics.median(base)


class _EvalMode:
    """Eval mode for the duration, then every submodule's own mode back."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.modes: list[tuple[Any, bool]] = []

    def __enter__(self) -> Any:
        self.modes = [(m, m.training) for m in self.model.modules()]
        self.model.eval()
        return self.model

    def __exit__(self, *exc: object) -> None:
        for m, training in self.modes:
            m.training = training


def _base_model_on(base: "BaseModel", device: Any) -> Any:
    model = base.model
    if next(model.parameters()).device != device:
        key = ("model", base.info.ref, base.info.path, base.num_labels, str(device))
        if key not in _BASE_CACHE:
            _BASE_CACHE[key] = base.fresh().to(device).eval()
        model = _BASE_CACHE[key]
    return model


def _base_stats(base: "BaseModel", base_model: Any, seq_len: int) -> _BaseStats:
    key = (base.info.ref, base.info.path, base.num_labels, seq_len,
           str(next(base_model.parameters()).device))
    cached = _BASE_CACHE.get(key)
    if cached is None:
        with _EvalMode(base_model):
            one = _reference_batch(base_model, base.info.vocab_size, 1, seq_len)
            flops = _forward_flops(base_model, one)
        params, _ = split_params(base_model, base.info.head_names, trainable_only=False)
        cached = _BASE_CACHE[key] = _BaseStats(params, flops)
        logger.debug("base %s: %d params, %.4g FLOPs per %d-token sequence", base.info.ref,
                     params, flops, seq_len)
    return cached


def measure(built: Any, base: "BaseModel", *, seq_len: int = SEQ_LEN, batch: int = BATCH,
            latency: bool = True, repeats: int = REPEATS,
            latency_budget_s: float = LATENCY_BUDGET_S) -> Cost:
    """Measure a built candidate against its base model on a fixed reference batch.

    Parameters are counted from the model's tensors. FLOPs are counted with FlopCounterMode
    on one reference sequence (every op here is per sequence, so a batch costs exactly
    `batch` times as much); the base model's count is cached per (model, labels, seq_len,
    device). Latency: `repeats` forwards of the (batch x seq_len) reference batch through the
    candidate and the base, alternating, medians compared, within `latency_budget_s` (at
    least one pair). The base is timed again each call
    on purpose: on a shared machine a cached base time drifts with the load (we saw ratios
    of -75% against a base timed a minute earlier). Merged FLOPs subtract the analytic
    unmerged FLOPs of the modules that merge (exact for LoRA: its two matmuls are all it adds).
    """
    model = built.model
    device = next(model.parameters()).device
    info = base.info
    head_names = tuple(getattr(built, "head_names", ()) or info.head_names)
    base_model = _base_model_on(base, device)
    stats = _base_stats(base, base_model, seq_len)
    trainable, head = split_params(model, head_names, trainable_only=True)
    lat = None
    with _EvalMode(model):
        one = _reference_batch(model, info.vocab_size, 1, seq_len)
        flops = _forward_flops(model, one)
        if latency:
            inputs = _reference_batch(model, info.vocab_size, batch, seq_len)
            with _EvalMode(base_model):
                t_cand, t_base = _paired_seconds(model, base_model, inputs, repeats,
                                                 latency_budget_s)
            lat = (t_cand - t_base) / t_base
    base_fpt = stats.flops_per_seq / seq_len
    extra = (flops - stats.flops_per_seq) / seq_len
    candidate = _with_layers(built.candidate, info)
    if is_mergeable(candidate):
        merged = 0.0
    else:
        from autopeft.methods.validate import backend_for

        backend = backend_for(candidate)
        mergeable = sum(module_extra_flops(m, info, seq_len, backend, base.num_labels)
                        for m in candidate.modules if MERGEABLE[m.type])
        merged = max(0.0, extra - mergeable)
    return Cost(trainable_params=trainable, base_params=stats.params,
                params_ratio=trainable / stats.params, base_flops_per_token=base_fpt,
                extra_flops_per_token=extra, flops_ratio=extra / base_fpt,
                flops_ratio_merged=merged / base_fpt, latency_ratio=lat,
                mergeable=is_mergeable(candidate), head_params=head)


# --------------------------------------------------------------------------- space summary

SUMMARY_SAMPLES = 256
EXHAUSTIVE_LIMIT = 5000  # enumerate every architecture of a space up to this many


def summarize_space(bound: Any, model_ref: str | None = None, n: int = SUMMARY_SAMPLES,
                    seed: int = 0, *, seq_len: int = SEQ_LEN, num_labels: int = 2) -> list[str]:
    """Lines describing the cost range of a bound space on a model, without training.

    Uses the analytic `estimate`. Hyperparameters (hp.*) do not change the cost, so when the
    space has at most EXHAUSTIVE_LIMIT architectures they are all enumerated and the figures
    are exact; otherwise `n` samples (numpy Generator seeded with `seed`) plus the two
    extremes found by coordinate search from the largest and smallest sample.
    """
    import numpy as np

    from autopeft.models import model_info

    info = model_info(model_ref)
    seen: dict[str, tuple[Candidate, Cost] | None] = {}
    reasons: dict[str, int] = {}

    def consider(assignment: dict[str, Any]) -> Cost | None:
        cand = bound.to_candidate(assignment)
        key = Candidate(cand.modules, {}, cand.num_layers).key()
        if key not in seen:
            seen[key] = _estimate_or_reason(cand, info, seq_len, num_labels, reasons)
        row = seen[key]
        return None if row is None else row[1]

    everything = _enumerate(bound, EXHAUSTIVE_LIMIT)
    if everything is not None:
        for assignment in everything:
            consider(assignment)
        how = f"exact, over all {len(seen)} architectures of the space"
    else:
        rng = np.random.default_rng(seed)
        samples = [bound.sample(rng) for _ in range(max(1, n))]
        scored = [(consider(a), a) for a in samples]
        scored = [(c.trainable_params, a) for c, a in scored if c is not None]
        if scored:
            scored.sort(key=lambda r: r[0])
            for sign, start in ((1, scored[-1][1]), (-1, scored[0][1])):
                _coordinate_search(bound, start, lambda a: consider(a), sign)
        how = f"over {len(samples)} samples (seed {seed}) and a search for both extremes"
    rows = [r for r in seen.values() if r is not None]
    lines = [f"cost on {info.ref}: {base_param_count(info):,} base parameters (head excluded), "
             f"FLOPs per token at {seq_len} tokens; {how}"]
    if rows:
        rows.sort(key=lambda r: (r[1].trainable_params, r[1].flops_ratio))
        params = [c.trainable_params for _, c in rows]
        pct = [c.params_ratio for _, c in rows]
        mid = len(rows) // 2
        fl = sorted(c.flops_ratio for _, c in rows)
        flm = sorted(c.flops_ratio_merged for _, c in rows)
        lines += [
            f"  trainable parameters   min {params[0]:,} ({100 * pct[0]:.3f}%)   median "
            f"{params[mid]:,} ({100 * pct[mid]:.3f}%)   max {params[-1]:,} ({100 * pct[-1]:.3f}%)",
            f"  extra FLOPs per token  min {100 * fl[0]:+.2f}%   median {100 * fl[len(fl) // 2]:+.2f}%"
            f"   max {100 * fl[-1]:+.2f}%   (after merging: max {100 * flm[-1]:+.2f}%)",
            f"  smallest: {rows[0][0].summary()}",
            f"  largest:  {rows[-1][0].summary()}",
            f"  every candidate also trains the classifier head: "
            f"{head_param_count(info, num_labels):,} parameters for {num_labels} labels",
        ]
    bad = sum(1 for r in seen.values() if r is None)
    if bad:
        first = max(reasons, key=lambda k: reasons[k])
        lines.append(f"  {bad} of {len(seen)} architectures cannot be built on {info.ref}, "
                     f"e.g. {first}")
    return lines


def _estimate_or_reason(cand: Candidate, info: "ModelInfo", seq_len: int, num_labels: int,
                        reasons: dict[str, int]) -> tuple[Candidate, Cost] | None:
    from autopeft.methods.validate import validate

    try:
        validate(cand, info)
        return cand, estimate(cand, info, seq_len=seq_len, num_labels=num_labels)
    except CandidateError as exc:
        reason = str(exc).splitlines()[0].split(": ", 1)[-1]
        reasons[reason] = reasons.get(reason, 0) + 1
        return None


def _enumerate(bound: Any, limit: int) -> list[dict[str, Any]] | None:
    """Every assignment of the architecture decisions (hp.* held at their first option),
    or None when there are more than `limit`."""
    decisions = bound.decisions
    out: list[dict[str, Any]] = []

    def rec(i: int, partial: dict[str, Any]) -> bool:
        if len(out) > limit:
            return False
        if i == len(decisions):
            out.append(dict(partial))
            return True
        d = decisions[i]
        if not bound.is_active(d, partial):
            return rec(i + 1, partial)
        options = d.options()[:1] if d.name.startswith("hp.") else d.options()
        for value in options:
            partial[d.name] = value
            if not rec(i + 1, partial):
                return False
        del partial[d.name]
        return True

    return out if rec(0, {}) else None


def _coordinate_search(bound: Any, start: dict[str, Any], cost_of: Any, sign: int,
                       passes: int = 3) -> dict[str, Any]:
    """Greedy one-decision-at-a-time moves that raise (sign=1) or lower (sign=-1) the
    trainable parameter count; every assignment tried goes through `cost_of`."""
    current = dict(start)
    best = cost_of(current)
    if best is None:
        return current
    for _ in range(passes):
        moved = False
        for d in bound.decisions:
            if d.name.startswith("hp.") or d.name not in current:
                continue
            for value in d.options():
                if value == current.get(d.name):
                    continue
                trial = bound.walk(lambda x, d=d, v=value: v if x.name == d.name
                                   else current.get(x.name, x.options()[0]))
                c = cost_of(trial)
                if c is not None and sign * (c.trainable_params - best.trainable_params) > 0:
                    current, best, moved = trial, c, True
        if not moved:
            break
    return current
