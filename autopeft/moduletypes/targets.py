"""Model-independent target names (q, k, v, o, ffn_in, ffn_out) -> each family's module names.

Names are resolved exactly: a module matches when its full name is
`<anything>.<layer container>.<i>.<relative name>` with the relative name equal to one in
the table below. So BERT's `output.dense` never matches `attention.output.dense` or
`pooler.dense`, and nothing outside the transformer layers is touched.

    target   bert                     gpt2            llama
    q        attention.self.query     attn.c_attn *   self_attn.q_proj
    k        attention.self.key       attn.c_attn *   self_attn.k_proj
    v        attention.self.value     attn.c_attn *   self_attn.v_proj
    o        attention.output.dense   attn.c_proj     self_attn.o_proj
    ffn_in   intermediate.dense       mlp.c_fc        mlp.up_proj + mlp.gate_proj
    ffn_out  output.dense             mlp.c_proj      mlp.down_proj

* GPT-2 fuses q, k and v into one projection, c_attn. How each method treats it:
  LoRA (peft) puts one low-rank update on c_attn when any of q/k/v is requested, i.e. the
  update spans all three (the usual GPT-2 LoRA setting); LoRA in a mixture (adapters) splits
  c_attn and adapts exactly the requested ones. IA3 and BitFit work per output feature of
  c_attn and cannot leave part of it out: they need q, k and v all requested or none, and
  raise a CandidateError otherwise.

Pure Python: no torch import. (Moved here from autopeft.methods.targets, which re-exports it.)
"""
from __future__ import annotations

import re
from typing import Iterable

# family -> regex of a layer's own prefix: group 1 = layer index, group 2 = relative name
LAYER_PATTERNS: dict[str, re.Pattern[str]] = {
    "bert": re.compile(r"^(?:.*\.)?encoder\.layer\.(\d+)\.(.+)$"),
    "gpt2": re.compile(r"^(?:.*\.)?h\.(\d+)\.(.+)$"),
    "llama": re.compile(r"^(?:.*\.)?layers\.(\d+)\.(.+)$"),
}

FAMILY_TARGETS: dict[str, dict[str, tuple[str, ...]]] = {
    "bert": {
        "q": ("attention.self.query",),
        "k": ("attention.self.key",),
        "v": ("attention.self.value",),
        "o": ("attention.output.dense",),
        "ffn_in": ("intermediate.dense",),
        "ffn_out": ("output.dense",),
    },
    "gpt2": {
        "q": ("attn.c_attn",),
        "k": ("attn.c_attn",),
        "v": ("attn.c_attn",),
        "o": ("attn.c_proj",),
        "ffn_in": ("mlp.c_fc",),
        "ffn_out": ("mlp.c_proj",),
    },
    "llama": {
        "q": ("self_attn.q_proj",),
        "k": ("self_attn.k_proj",),
        "v": ("self_attn.v_proj",),
        "o": ("self_attn.o_proj",),
        "ffn_in": ("mlp.up_proj", "mlp.gate_proj"),
        "ffn_out": ("mlp.down_proj",),
    },
}

# Targets that share one fused module, per family.
FUSED: dict[str, tuple[frozenset[str], ...]] = {
    "gpt2": (frozenset({"q", "k", "v"}),),
}

# Families whose linear sub-modules carry bias terms (BitFit needs them).
HAS_BIASES = {"bert": True, "gpt2": True, "llama": False}

KNOWN_FAMILIES = tuple(FAMILY_TARGETS)

# AdapterHub adapters (LoRA/IA3 in a mixture) names the FFN LoRA sites per model, and not
# always by meaning; family -> our FFN target -> the LoRAConfig flag that covers it exactly:
#   bert   intermediate_lora -> intermediate.dense, output_lora -> output.dense
#   gpt2   intermediate_lora -> mlp.c_fc,           output_lora -> mlp.c_proj
#   llama  intermediate_lora -> mlp.down_proj,      output_lora -> mlp.up_proj only (no
#          gate_proj), so Llama's ffn_in cannot be adapted exactly there
ADAPTERS_FFN_FLAGS: dict[str, dict[str, str]] = {
    "bert": {"ffn_in": "intermediate_lora", "ffn_out": "output_lora"},
    "gpt2": {"ffn_in": "intermediate_lora", "ffn_out": "output_lora"},
    "llama": {"ffn_out": "intermediate_lora"},
}


def relative_names(family: str, targets: Iterable[str]) -> tuple[str, ...]:
    """The per-layer relative module names for `targets`, deduplicated, in table order."""
    table = FAMILY_TARGETS[family]
    out: list[str] = []
    for t in targets:
        for rel in table[t]:
            if rel not in out:
                out.append(rel)
    return tuple(out)


def partial_fused(family: str, targets: Iterable[str]) -> frozenset[str] | None:
    """The fused group that `targets` covers only partly (None when every group is whole)."""
    chosen = set(targets)
    for group in FUSED.get(family, ()):
        if chosen & group and not group <= chosen:
            return group
    return None


def split_name(family: str, name: str) -> tuple[int, str] | None:
    """'bert.encoder.layer.3.attention.self.query' -> (3, 'attention.self.query')."""
    m = LAYER_PATTERNS[family].match(name)
    if m is None:
        return None
    return int(m.group(1)), m.group(2)


def module_names(all_names: Iterable[str], family: str, layers: Iterable[int],
                 targets: Iterable[str]) -> list[str]:
    """Full names (from named_modules) of the target sub-modules in exactly `layers`."""
    wanted_layers = set(layers)
    wanted_rel = set(relative_names(family, targets))
    out = []
    for name in all_names:
        parts = split_name(family, name)
        if parts and parts[0] in wanted_layers and parts[1] in wanted_rel:
            out.append(name)
    return out
