"""The AdapterHub `adapters` backend: bottleneck adapters, prefixes on a layer subset, mixtures.

All parts of a candidate go into one adapter named "autopeft" whose config is a ConfigUnion
(or a single config), with `leave_out` = the layers not chosen. `leave_out` in adapters 1.3.0
is read per block at add time (ModelAdaptersConfig.match): a block is added to layer i
unless i is in its leave_out, which is exact for bottleneck, LoRA/IA3 and prefix blocks.

adapters names the FFN LoRA sites per model, not always by meaning: see
autopeft.methods.targets.ADAPTERS_FFN_FLAGS (Llama's ffn_in cannot be adapted exactly).
After building, the sites that really got LoRA weights are checked against the request.
"""
from __future__ import annotations

import logging
from typing import Any

from autopeft.candidate import Candidate, ModuleConfig
from autopeft.methods.init import Projection, apply_init
from autopeft.methods.targets import ADAPTERS_FFN_FLAGS, FAMILY_TARGETS, split_name
from autopeft.methods.validate import fail

logger = logging.getLogger(__name__)

NAME = "autopeft"

def _leave_out(m: ModuleConfig, num_layers: int) -> list[int]:
    chosen = set(m.layers or ())
    return [i for i in range(num_layers) if i not in chosen]


def _reduction(hidden: int, size: int) -> float:
    # adapters computes the width as int(hidden // reduction_factor); the +0.5 keeps float
    # rounding from landing one below `size`
    return hidden / (int(size) + 0.5)


def _lora_config(ad: Any, candidate: Candidate, m: ModuleConfig, info: Any, leave_out: list[int],
                 cls: Any, **extra: Any) -> Any:
    targets = tuple(m.params.get("targets", ("q", "v")))
    flags = ADAPTERS_FFN_FLAGS[info.family]  # validate() refused targets missing here
    attn = [t for t in ("q", "k", "v") if t in targets]
    kwargs = dict(selfattn_lora=bool(attn), attn_matrices=attn or ["q"],
                  intermediate_lora=False, output_lora=False, leave_out=leave_out, **extra)
    for t in ("ffn_in", "ffn_out"):
        if t in targets:
            kwargs[flags[t]] = True
    return cls(**kwargs)


def _configs(ad: Any, candidate: Candidate, modules: list[ModuleConfig], info: Any,
             with_own_parallel: bool) -> list[Any]:
    L, h = info.num_layers, info.hidden_size
    out = []
    for m in modules:
        lo = _leave_out(m, L)
        if m.type == "adapter":
            cls = ad.SeqBnConfig if m["placement"] == "pfeiffer" else ad.DoubleSeqBnConfig
            out.append(cls(reduction_factor=_reduction(h, m["size"]),
                           non_linearity=m["activation"], leave_out=lo))
        elif m.type == "parallel_adapter":
            if not with_own_parallel:
                out.append(ad.ParBnConfig(reduction_factor=_reduction(h, m["size"]),
                                          scaling=float(m["scaling"]),
                                          non_linearity=m["activation"], leave_out=lo))
        elif m.type == "prefix":
            b = int(m["bottleneck"])
            out.append(ad.PrefixTuningConfig(prefix_length=int(m["length"]), flat=b == 0,
                                             bottleneck_size=b or 512, leave_out=lo))
        elif m.type == "lora":
            out.append(_lora_config(ad, candidate, m, info, lo, ad.LoRAConfig, r=int(m["rank"]),
                                    alpha=float(m["alpha"]), dropout=float(m["dropout"])))
        elif m.type == "ia3":
            out.append(_lora_config(ad, candidate, m, info, lo, ad.IA3Config))
        elif m.type == "unipelt":
            out += [
                ad.PrefixTuningConfig(prefix_length=int(m["prefix_length"]), leave_out=lo,
                                      use_gating=True),
                ad.SeqBnConfig(reduction_factor=_reduction(h, m["size"]), leave_out=lo,
                               use_gating=True),
                ad.LoRAConfig(r=int(m["rank"]), alpha=float(m["alpha"]), leave_out=lo,
                              use_gating=True),
            ]
        elif m.type == "mam":
            out += [
                ad.PrefixTuningConfig(prefix_length=int(m["prefix_length"]), bottleneck_size=800,
                                      leave_out=lo),
                ad.ParBnConfig(reduction_factor=_reduction(h, m["size"]),
                               scaling=float(m["scaling"]), leave_out=lo),
            ]
        else:
            raise fail(candidate, f"{m.type} is not available in a mixture",
                       "use it alone, or combine it only with bitfit")
    return out


def build_adapters(model: Any, candidate: Candidate, modules: list[ModuleConfig], info: Any,
                   generator: Any) -> Any:
    from autopeft._imports import require

    ad = require("adapters")
    types = {m.type for m in modules}
    serial = "adapter" in types or "unipelt" in types
    own_parallel = serial and "parallel_adapter" in types
    configs = _configs(ad, candidate, modules, info, own_parallel)
    config = configs[0] if len(configs) == 1 else ad.ConfigUnion(*configs)
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
    if info.family in ("gpt2", "llama") and any(isinstance(c, ad.PrefixTuningConfig)
                                                 for c in configs):
        # adapters 1.3.0's GPT-2/Llama attention drops the prefix under sdpa (measured: the
        # logits do not move even for large prefixes); its eager path applies it
        model.set_attn_implementation("eager")
    if own_parallel:
        from autopeft.methods._own import add_parallel_adapters

        m = next(m for m in modules if m.type == "parallel_adapter")
        add_parallel_adapters(model, info.family, m.layers or (), info.hidden_size,
                              int(m["size"]), m["activation"], float(m["scaling"]), m["init"],
                              float(m["init_scale"]), generator)
    _apply_inits(model, modules, generator)
    _check_sites(model, candidate, modules, info)
    return model


def _drop_inactive_warning(record: logging.LogRecord) -> bool:
    return "none are activated" not in record.getMessage()


def _apply_inits(model: Any, modules: list[ModuleConfig], generator: Any) -> None:
    from adapters.methods.lora import LoRA
    from adapters.methods.modeling import Adapter, ParallelAdapter

    by_type = {m.type: m for m in modules}
    for name, mod in model.named_modules():
        if isinstance(mod, ParallelAdapter):
            m = by_type.get("parallel_adapter")
        elif isinstance(mod, Adapter):
            m = by_type.get("adapter")
        elif isinstance(mod, LoRA) and mod.composition_mode == "add":
            m = by_type.get("lora")
        else:
            continue
        if m is None or m["init"] == "default":
            continue
        if isinstance(mod, LoRA):
            inp, out = Projection(mod.lora_A), Projection(mod.lora_B)
        else:
            down = next(x for x in mod.adapter_down.modules() if hasattr(x, "weight"))
            inp, out = Projection(down.weight, down.bias), \
                Projection(mod.adapter_up.weight, mod.adapter_up.bias)
        apply_init(inp, out, m["init"], float(m["init_scale"]), generator)


def _check_sites(model: Any, candidate: Candidate, modules: list[ModuleConfig], info: Any) -> None:
    """LoRA/IA3 weights must sit in exactly the requested layers and sub-modules."""
    expected: set[tuple[int, str]] = set()
    for m in modules:
        if m.type in ("lora", "ia3", "unipelt"):
            targets = m.params.get("targets", ("q", "v"))
            for i in m.layers or ():
                for t in targets:
                    for rel in FAMILY_TARGETS[info.family][t]:
                        expected.add((i, rel))
    found: set[tuple[int, str]] = set()
    for name, _ in model.named_parameters():
        if f".loras.{NAME}." in name:
            parts = split_name(info.family, name.split(".loras.")[0])
            if parts:
                found.add(parts)
    if found != expected:
        raise fail(candidate, f"AdapterHub adapters placed LoRA/IA3 at {sorted(found - expected)} "
                   f"beyond the request and missed {sorted(expected - found)}",
                   "use lora/ia3 alone (peft), or other targets")
