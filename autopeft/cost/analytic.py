"""Analytic cost: exact trainable parameters from ModelInfo shapes, FLOPs from formulas.

No torch: this runs on config.json alone (autopeft.models.model_info). Definitions are in the
package docstring (autopeft.cost); tests/test_cost.py checks every formula against the
measured count of a real built model.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from autopeft.candidate import Candidate, ModuleConfig
from autopeft.exceptions import CandidateError
from autopeft.records import Cost

if TYPE_CHECKING:  # pragma: no cover
    from autopeft.models import ModelInfo

MERGEABLE = {"lora": True, "ia3": True, "bitfit": True, "adapter": False,
             "parallel_adapter": False, "prefix": False, "prompt": False, "unipelt": False,
             "mam": False}
SEQ_LEN = 64


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
        # IA3: one vector per adapted matrix (Liu et al. 2022, sec. 3.3). peft scales the
        # input of the FFN down projection (its feedforward_modules: the intermediate
        # activation, as in the paper) and the output of the others (keys, values);
        # AdapterHub's IA3 (LoRA with composition_mode="scale") scales every output.
        if backend != "peft":
            return n_layers * sum(b for _, b, _ in _split_targets(info, m["targets"]))
        from autopeft.methods.targets import relative_names

        table = _linears(info)
        ff = set(relative_names(info.family, ("ffn_out",)))
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
