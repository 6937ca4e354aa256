"""The AdapterHub `adapters` backend: bottleneck adapters, prefixes on a layer subset, mixtures.

All parts of a candidate go into one adapter named "autopeft" whose config is a ConfigUnion
(or a single config) of what each module's plug-in gives (adapters_configs), with
`leave_out` = the layers not chosen. `leave_out` in adapters 1.3.0 is read per block at add
time (ModelAdaptersConfig.match): a block is added to layer i unless i is in its leave_out,
which is exact for bottleneck, LoRA/IA3 and prefix blocks.

adapters names the FFN LoRA sites per model, not always by meaning: see
autopeft.moduletypes.targets.ADAPTERS_FFN_FLAGS (Llama's ffn_in cannot be adapted exactly).
After building, the sites that really got LoRA weights are checked against the request.
"""
from __future__ import annotations

import logging
from typing import Any

from autopeft.candidate import ModuleConfig
from autopeft.moduletypes import BuildContext, fail, get
from autopeft.moduletypes.targets import FAMILY_TARGETS, split_name

logger = logging.getLogger(__name__)

NAME = "autopeft"


def mixture_parts(modules: list[ModuleConfig]) -> frozenset:
    """The kinds of AdapterHub blocks the modules bring (serial, parallel, prefix, lora...)."""
    return frozenset(p for m in modules for p in get(m.type).mixture_parts)


def adapters_config(ad: Any, modules: list[ModuleConfig], ctx: BuildContext) -> tuple[Any, list]:
    """(the adapter config, its parts) for `modules` (also what a configs-only export saves)."""
    configs = [c for m in modules for c in get(m.type).adapters_configs(ad, m, ctx)]
    return (configs[0] if len(configs) == 1 else ad.ConfigUnion(*configs)), configs


def build_adapters(model: Any, modules: list[ModuleConfig], ctx: BuildContext) -> Any:
    from autopeft._imports import require

    ad = require("adapters")
    config, configs = adapters_config(ad, modules, ctx)
    # adapters warns "There are adapters available but none are activated" while adding
    # (a forward pass runs before train_adapter activates the adapter); it is dropped
    mixin_logger = logging.getLogger("adapters.model_mixin")
    mixin_logger.addFilter(_drop_inactive_warning)
    try:
        ad.init(model)
        model.add_adapter(NAME, config=config)
        model.train_adapter(NAME)
    finally:
        mixin_logger.removeFilter(_drop_inactive_warning)
    if ctx.info.family in ("gpt2", "llama") and any(isinstance(c, ad.PrefixTuningConfig)
                                                     for c in configs):
        # adapters 1.3.0's GPT-2/Llama attention drops the prefix under sdpa (measured: the
        # logits do not move even for large prefixes); its eager path applies it
        model.set_attn_implementation("eager")
    for m in modules:
        get(m.type).after_adapters(model, m, ctx)
    _apply_inits(model, modules, ctx)
    _check_sites(model, modules, ctx)
    return model


def _drop_inactive_warning(record: logging.LogRecord) -> bool:
    return "none are activated" not in record.getMessage()


def _apply_inits(model: Any, modules: list[ModuleConfig], ctx: BuildContext) -> None:
    """One pass in model order (so the seeded draws keep their order), each AdapterHub module
    initialised by the plug-in that claims it."""
    from autopeft.moduletypes.init import apply_init

    for _, mod in model.named_modules():
        for m in modules:
            pair = get(m.type).adapters_projections(mod, m)
            if pair is not None:
                apply_init(pair[0], pair[1], m["init"], float(m["init_scale"]), ctx.generator)
                break


def _check_sites(model: Any, modules: list[ModuleConfig], ctx: BuildContext) -> None:
    """LoRA/IA3 weights must sit in exactly the requested layers and sub-modules."""
    family = ctx.info.family
    expected: set[tuple[int, str]] = set()
    for m in modules:
        for t in get(m.type).adapters_lora_targets(m):
            for i in m.layers or ():
                for rel in FAMILY_TARGETS[family][t]:
                    expected.add((i, rel))
    found: set[tuple[int, str]] = set()
    for name, _ in model.named_parameters():
        if f".loras.{NAME}." in name:
            parts = split_name(family, name.split(".loras.")[0])
            if parts:
                found.add(parts)
    if found != expected:
        raise fail(ctx.candidate, f"AdapterHub adapters placed LoRA/IA3 at "
                   f"{sorted(found - expected)} beyond the request and missed "
                   f"{sorted(expected - found)}", "use lora/ia3 alone (peft), or other targets")
