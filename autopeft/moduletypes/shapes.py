"""Model shapes from ModelInfo alone (config.json, no torch), and the formulas several
module types share. Definitions and conventions: autopeft.cost (matmul FLOPs only, 2 per
multiply-accumulate; parameters exclude the classifier head)."""
from __future__ import annotations

from typing import Any, Iterable

from autopeft.exceptions import CandidateError
from autopeft.moduletypes.targets import relative_names


def linears(info: Any) -> dict[str, tuple[int, int, bool]]:
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


def target_shapes(info: Any, targets: Iterable[str]) -> list[tuple[int, int, bool]]:
    """Shapes of the distinct sub-modules the targets name (GPT-2's q/k/v share c_attn)."""
    table = linears(info)
    return [table[rel] for rel in relative_names(info.family, targets)]


def split_target_shapes(info: Any, targets: Iterable[str]) -> list[tuple[int, int, bool]]:
    """LoRA in AdapterHub `adapters` adapts q, k, v as separate matrices even on GPT-2."""
    if info.family != "gpt2":
        return target_shapes(info, targets)
    h = info.hidden_size
    out = [(h, h, True) for t in ("q", "k", "v") if t in set(targets)]
    return out + target_shapes(info, [t for t in targets if t not in ("q", "k", "v")])


def lora_shapes(info: Any, targets: Iterable[str], backend: str) -> list[tuple[int, int, bool]]:
    """The matrices LoRA adapts: peft's (fused c_attn whole) or AdapterHub's (split)."""
    return target_shapes(info, targets) if backend == "peft" else split_target_shapes(info, targets)


def base_param_count(info: Any) -> int:
    """Parameters of the pretrained model without the classification head, from config.json."""
    cfg, h, n = info.config, info.hidden_size, info.num_layers
    linear = sum(a * b + (b if bias else 0) for a, b, bias in linears(info).values())
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


def base_flops(info: Any, seq_len: int, num_labels: int = 2) -> float:
    """Forward matmul FLOPs of one sequence of `seq_len` tokens through the base model.

    2 FLOPs per weight per token for every linear (Kaplan et al. 2020, Table 1: C_forward ~ 2N),
    plus attention scores QK^T and the mixing AV: 2 * T * T * d each per layer, i.e. 4*L*T^2*d
    per sequence (PaLM, Chowdhery et al. 2022, App. B counts the same 4 L T d per token before
    tripling it for training). BERT's pooler and head see one token per sequence; GPT-2's and
    Llama's `score` head runs on every position.
    """
    T, h, L = seq_len, info.hidden_size, info.num_layers
    linear = sum(a * b for a, b, _ in linears(info).values())
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


def bottleneck_params(h: int, s: int) -> int:
    """A bottleneck adapter: down h -> s and up s -> h, both with bias (Houlsby et al. 2019,
    sec. 2.1: 2md + d + m parameters per adapter)."""
    return 2 * h * s + h + s


def prefix_params(length: int, bottleneck: int, n_layers: int, info: Any, backend: str) -> int:
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


def prefix_flops(length: int, bottleneck: int, n_layers: int, info: Any, T: int,
                 backend: str) -> float:
    """Per input token: every query attends to P more keys (2 P d for the scores, 2 P d for
    the mixing); the reparametrisation MLP runs once per sequence on the P prefix embeddings."""
    attn = n_layers * 4.0 * length * info.num_heads * info.head_dim
    if bottleneck <= 0:
        return attn
    width = n_layers * 2 * info.kv_size
    e = info.kv_size if backend == "peft" else info.hidden_size
    return attn + length * 2.0 * (e * bottleneck + bottleneck * width) / T
