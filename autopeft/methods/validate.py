"""validate(candidate, info): refuse a candidate the model cannot take, before any training.

Pure Python (reads ModelInfo only), so spaces and controllers can call it cheaply.
Every error is a CandidateError that names the candidate, says what is wrong and the fix.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from autopeft.candidate import Candidate, ModuleConfig
from autopeft.exceptions import CandidateError
from autopeft.methods.targets import (ADAPTERS_FFN_FLAGS, FAMILY_TARGETS, HAS_BIASES,
                                      KNOWN_FAMILIES, partial_fused)

if TYPE_CHECKING:  # pragma: no cover
    from autopeft.models import ModelInfo

# Module types served by peft when alone in a candidate (plus bitfit, which is our own code
# and combines with anything). Everything else goes to AdapterHub `adapters`.
PEFT_TYPES = ("lora", "ia3", "prompt", "prefix")
# What each type contributes to an adapters ConfigUnion (one block per kind per layer).
_ADAPTERS_PARTS = {
    "lora": ("lora",),
    "ia3": ("lora",),  # adapters implements IA3 as LoRA with composition_mode="scale"
    "adapter": ("serial",),
    "parallel_adapter": ("parallel",),
    "prefix": ("prefix",),
    "prompt": ("prompt",),
    "unipelt": ("lora", "prefix", "serial"),
    "mam": ("prefix", "parallel"),
}


def fail(candidate: Candidate, reason: str, fix: str) -> CandidateError:
    return CandidateError(f"candidate {candidate.summary()} cannot be built: {reason}\n  fix: {fix}")


def backend_for(candidate: Candidate) -> str:
    """Which backend builds the candidate's modules other than bitfit."""
    types = [t for t in candidate.types if t != "bitfit"]
    if not types:
        return "own" if "bitfit" in candidate.types else "none"
    if len(types) == 1 and types[0] in PEFT_TYPES:
        m = next(m for m in candidate.modules if m.type == types[0])
        if m.type != "prefix" or m.layers is None or len(m.layers) == candidate.num_layers:
            return "peft"
    return "adapters"


def validate(candidate: Candidate, info: "ModelInfo") -> None:
    """Raise CandidateError if `candidate` cannot be built on the model described by `info`."""
    if candidate.num_layers is not None and candidate.num_layers != info.num_layers:
        raise fail(candidate, f"it was resolved for a {candidate.num_layers}-layer model but "
                   f"{info.ref!r} has {info.num_layers} layers",
                   f"bind the space to {info.ref!r} (num_layers={info.num_layers}) again")
    if candidate.num_layers is None:
        # backend_for compares prefix layers with the model's layer count
        candidate = Candidate(candidate.modules, candidate.hyper, info.num_layers)
    seen: dict[str, str] = {}
    for m in candidate.modules:
        if m.type in seen:
            raise fail(candidate, f"module type {m.type!r} appears twice",
                       "merge the two into one module with a joint layer set")
        seen[m.type] = m.type
        _check_module(candidate, m, info)
    if backend_for(candidate) == "adapters":
        _check_mixture(candidate, info)


def _check_module(candidate: Candidate, m: ModuleConfig, info: "ModelInfo") -> None:
    family = info.family
    if family not in KNOWN_FAMILIES and m.type != "prompt":
        raise fail(candidate, f"model {info.ref!r} is of family {family!r} "
                   f"(model_type {info.model_type!r}); autopeft maps module names only for "
                   f"{list(KNOWN_FAMILIES)}",
                   "use prompt tuning only, or a BERT-, GPT-2- or Llama-style model")
    if m.layers is not None:
        if not m.layers:
            raise fail(candidate, f"{m.type} has an empty layer set",
                       "choose at least one layer, or drop the module (size 0 = off)")
        bad = [i for i in m.layers if i < 0 or i >= info.num_layers]
        if bad:
            raise fail(candidate, f"{m.type} asks for layer(s) {bad} but {info.ref!r} has layers "
                       f"0..{info.num_layers - 1}",
                       f"use layer indices below {info.num_layers}")
    elif m.type != "prompt":
        raise fail(candidate, f"{m.type} has no layer set", "give the module a layers list")
    targets = m.params.get("targets")
    if targets is not None:
        if not targets:
            raise fail(candidate, f"{m.type} targets no sub-module, so it would match nothing",
                       f"choose at least one of {list(FAMILY_TARGETS.get(family, {}))}")
        group = partial_fused(family, targets)
        if group is not None and m.type in ("ia3", "bitfit"):
            names = "+".join(t for t in ("q", "k", "v") if t in group)
            raise fail(candidate, f"{family} fuses {names} into one projection (c_attn) and "
                       f"{m.type} cannot adapt only part of it (asked: {'+'.join(targets)})",
                       f"request all of {names} or none of them")
    if m.type == "bitfit" and not HAS_BIASES.get(family, True):
        raise fail(candidate, f"{family} models have no bias terms in their linear layers, so "
                   "BitFit has nothing to train",
                   "drop bitfit for this model family, or use lora / ia3")
    if m.type in ("lora", "unipelt"):
        rank = int(m.params["rank"])
        dims = _target_dims(info, targets if targets is not None else ("q", "v"))
        if rank > min(dims):
            raise fail(candidate, f"LoRA rank {rank} exceeds the smallest dimension ({min(dims)}) "
                       f"of the adapted matrices (hidden size {info.hidden_size})",
                       f"use a rank of at most {min(dims)}")
    for size_key in ("size",):
        if size_key in m.params and int(m.params[size_key]) > info.hidden_size:
            raise fail(candidate, f"{m.type} bottleneck size {m.params[size_key]} is above the "
                       f"hidden size {info.hidden_size} (no longer a bottleneck)",
                       f"use a size of at most {info.hidden_size}")
    if m.type == "lora" and m.params["init"] in ("pissa", "olora") and family == "gpt2":
        raise fail(candidate, f"LoRA init {m.params['init']!r} decomposes the base weight, which "
                   "peft does not support for GPT-2's Conv1D layers",
                   "use init default/zero/xavier/kaiming/gaussian on GPT-2")


def _target_dims(info: "ModelInfo", targets) -> list[int]:
    h, inter, kv = info.hidden_size, info.intermediate_size, info.kv_size
    dims = {"q": [h, h], "k": [h, kv], "v": [h, kv], "o": [h, h],
            "ffn_in": [h, inter], "ffn_out": [inter, h]}
    return [d for t in targets for d in dims[t]]


def _check_mixture(candidate: Candidate, info: "ModelInfo") -> None:
    """Checks for candidates built with AdapterHub `adapters` (mixtures, bottlenecks)."""
    parts: dict[str, str] = {}
    for m in candidate.modules:
        if m.type == "bitfit":
            continue
        for part in _ADAPTERS_PARTS[m.type]:
            # a serial adapter beside a parallel one is fine: the parallel one is then ours
            if part in parts:
                raise fail(candidate, f"{m.type} and {parts[part]} both bring a {part} block",
                           "keep only one of them, or merge their settings")
            parts[part] = m.type
        if m.type == "lora" and m.params["init"] in ("pissa", "olora"):
            raise fail(candidate, f"LoRA init {m.params['init']!r} comes from peft, which builds "
                       "LoRA only when it is the candidate's one module (besides bitfit)",
                       "use init default/zero/xavier/kaiming/gaussian in a mixture")
        targets = m.params.get("targets")
        if m.type in ("lora", "ia3") and targets and "o" in targets:
            raise fail(candidate, f"{m.type} on the attention output (o) is not available when "
                       "mixed with other modules (AdapterHub adapters has no such LoRA target)",
                       f"drop 'o' from the {m.type} targets, or use {m.type} alone (peft)")
        if m.type in ("lora", "ia3") and targets:
            flags = ADAPTERS_FFN_FLAGS.get(info.family, {})
            for t in ("ffn_in", "ffn_out"):
                if t in targets and t not in flags:
                    raise fail(candidate, f"{m.type} on {t} of a {info.family} model cannot be "
                               "expressed exactly in a mixture (AdapterHub adapters adapts "
                               f"{'+'.join(FAMILY_TARGETS[info.family][t])} only partly)",
                               f"drop {t} from the {m.type} targets, or use {m.type} alone (peft)")
    if "prompt" in parts:
        raise fail(candidate, "prompt tuning can only be combined with bitfit",
                   "use prompt alone (peft), or prefix instead of prompt in the mixture")
