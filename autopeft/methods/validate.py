"""validate(candidate, info): refuse a candidate the model cannot take, before any training.

Pure Python (reads ModelInfo only), so spaces and controllers can call it cheaply. The
checks every type shares are here; each type's own live in its plug-in
(autopeft.moduletypes.<type>: check, check_mixture). Every error is a CandidateError that
names the candidate, says what is wrong and the fix.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from autopeft.candidate import Candidate, ModuleConfig
from autopeft.moduletypes import backend_for, fail, get
from autopeft.moduletypes.targets import FAMILY_TARGETS, KNOWN_FAMILIES, partial_fused

if TYPE_CHECKING:  # pragma: no cover
    from autopeft.models import ModelInfo

__all__ = ["validate", "backend_for", "fail"]


def validate(candidate: Candidate, info: "ModelInfo") -> None:
    """Raise CandidateError if `candidate` cannot be built on the model described by `info`."""
    if candidate.num_layers is not None and candidate.num_layers != info.num_layers:
        raise fail(candidate, f"it was resolved for a {candidate.num_layers}-layer model but "
                   f"{info.ref!r} has {info.num_layers} layers",
                   f"bind the space to {info.ref!r} (num_layers={info.num_layers}) again")
    if candidate.num_layers is None:
        # backend_for compares prefix layers with the model's layer count
        candidate = Candidate(candidate.modules, candidate.hyper, info.num_layers)
    seen: set[str] = set()
    for m in candidate.modules:
        if m.type in seen:
            raise fail(candidate, f"module type {m.type!r} appears twice",
                       "merge the two into one module with a joint layer set")
        seen.add(m.type)
        _check_module(candidate, m, info)
    if backend_for(candidate) == "adapters":
        _check_mixture(candidate, info)


def _check_module(candidate: Candidate, m: ModuleConfig, info: "ModelInfo") -> None:
    plugin = get(m.type)
    family = info.family
    if family not in KNOWN_FAMILIES and plugin.needs_family:
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
    elif plugin.layered:
        raise fail(candidate, f"{m.type} has no layer set", "give the module a layers list")
    targets = m.params.get("targets")
    if targets is not None:
        if not targets:
            raise fail(candidate, f"{m.type} targets no sub-module, so it would match nothing",
                       f"choose at least one of {list(FAMILY_TARGETS.get(family, {}))}")
        group = partial_fused(family, targets)
        if group is not None and plugin.whole_fused:
            names = "+".join(t for t in ("q", "k", "v") if t in group)
            raise fail(candidate, f"{family} fuses {names} into one projection (c_attn) and "
                       f"{m.type} cannot adapt only part of it (asked: {'+'.join(targets)})",
                       f"request all of {names} or none of them")
    plugin.check(m, info, candidate)


def _check_mixture(candidate: Candidate, info: "ModelInfo") -> None:
    """Checks for candidates built with AdapterHub `adapters` (mixtures, bottlenecks): one
    block of each kind, then each type's own refusals."""
    parts: dict[str, str] = {}
    for m in candidate.modules:
        plugin = get(m.type)
        if plugin.additive:
            continue
        for part in plugin.mixture_parts:
            # a serial adapter beside a parallel one is fine: the parallel one is then ours
            if part in parts:
                raise fail(candidate, f"{m.type} and {parts[part]} both bring a {part} block",
                           "keep only one of them, or merge their settings")
            parts[part] = m.type
        plugin.check_mixture(m, info, candidate)
