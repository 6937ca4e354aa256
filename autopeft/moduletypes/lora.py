"""lora: W + (alpha/r)·B·A on the chosen linear sub-modules (Hu et al. 2021).

Alone (besides BitFit) peft builds it: LoraConfig with target_modules = exact module names,
init pissa/olora from peft, the others ours. In a mixture AdapterHub's LoRAConfig
(attn_matrices, intermediate_lora, output_lora, leave_out); there is no 'o' target there.
The LoRA variants (dora.py, rslora.py) subclass this plug-in.
"""
from __future__ import annotations

from typing import Any, Iterable

from autopeft.moduletypes.base import (INIT_SCALE, LORA_DATA_FREE_INITS, BuildContext, ModuleType,
                                       ParamSpec, fail, init_param)
from autopeft.moduletypes.registry import register
from autopeft.moduletypes.shapes import lora_shapes
from autopeft.moduletypes.targets import ADAPTERS_FFN_FLAGS, FAMILY_TARGETS

PEFT_ADAPTER = "default"  # the adapter name peft gives a model's only adapter


def lora_params(info: Any, r: int, targets: Iterable[str], backend: str,
                gated: bool = False) -> int:
    """LoRA per layer: A is r x in, B is out x r (Hu et al. 2021, eq. 3) for each adapted
    matrix; a gate (UniPELT) adds a Linear in -> 1."""
    return sum(r * (a + b) + ((a + 1) if gated else 0)
               for a, b, _ in lora_shapes(info, targets, backend))


def check_rank(m: Any, info: Any, candidate: Any, targets: Iterable[str]) -> None:
    h, inter, kv = info.hidden_size, info.intermediate_size, info.kv_size
    table = {"q": [h, h], "k": [h, kv], "v": [h, kv], "o": [h, h],
             "ffn_in": [h, inter], "ffn_out": [inter, h]}
    dims = [d for t in targets for d in table[t]]
    rank = int(m.params["rank"])
    if rank > min(dims):
        raise fail(candidate, f"LoRA rank {rank} exceeds the smallest dimension ({min(dims)}) "
                   f"of the adapted matrices (hidden size {info.hidden_size})",
                   f"use a rank of at most {min(dims)}")


def check_lora_targets_in_mixture(m: Any, info: Any, candidate: Any) -> None:
    """AdapterHub's LoRA/IA3 sites: no attention output, FFN sites per family."""
    targets = m.params.get("targets") or ()
    if "o" in targets:
        raise fail(candidate, f"{m.type} on the attention output (o) is not available when "
                   "mixed with other modules (AdapterHub adapters has no such LoRA target)",
                   f"drop 'o' from the {m.type} targets, or use {m.type} alone (peft)")
    flags = ADAPTERS_FFN_FLAGS.get(info.family, {})
    for t in ("ffn_in", "ffn_out"):
        if t in targets and t not in flags:
            raise fail(candidate, f"{m.type} on {t} of a {info.family} model cannot be "
                       "expressed exactly in a mixture (AdapterHub adapters adapts "
                       f"{'+'.join(FAMILY_TARGETS[info.family][t])} only partly)",
                       f"drop {t} from the {m.type} targets, or use {m.type} alone (peft)")


def adapters_lora_config(m: Any, ctx: BuildContext, cls: Any, **extra: Any) -> Any:
    """An AdapterHub LoRAConfig/IA3Config on m's targets and layers."""
    targets = tuple(m.params.get("targets", ("q", "v")))
    flags = ADAPTERS_FFN_FLAGS[ctx.info.family]  # check_mixture refused targets missing here
    attn = [t for t in ("q", "k", "v") if t in targets]
    kwargs = dict(selfattn_lora=bool(attn), attn_matrices=attn or ["q"],
                  intermediate_lora=False, output_lora=False, leave_out=leave_out(m, ctx),
                  **extra)
    for t in ("ffn_in", "ffn_out"):
        if t in targets:
            kwargs[flags[t]] = True
    return cls(**kwargs)


def leave_out(m: Any, ctx: BuildContext) -> list[int]:
    """AdapterHub's `leave_out`: the layers not chosen (read per block at add time, exact)."""
    chosen = set(m.layers or ())
    return [i for i in range(ctx.info.num_layers) if i not in chosen]


class LoRA(ModuleType):
    name = "lora"
    doc = "LoRA: W + (alpha/r)·B·A on the chosen linear sub-modules (Hu et al. 2021)"
    params = (
        ParamSpec("rank", "int", 8, low=1, high=4096, doc="r, the rank of B·A"),
        ParamSpec("alpha", "float", 16.0, low=1e-6, high=1e6, doc="scaling numerator"),
        ParamSpec("dropout", "float", 0.0, low=0.0, high=0.9),
        ParamSpec("targets", "targets", ("q", "v")),
        init_param(extra=LORA_DATA_FREE_INITS),
        INIT_SCALE,
    )
    size_param = "rank"
    # W + BA folds into W (Hu et al. 2021, sec. 4.1)
    mergeable = True
    mixture_parts = ("lora",)

    def peft_extra(self, m: Any) -> dict:
        """LoraConfig keywords a variant adds (use_dora, use_rslora)."""
        return {}

    def check(self, m: Any, info: Any, candidate: Any) -> None:
        check_rank(m, info, candidate, m.params["targets"])
        if m.params.get("init") in LORA_DATA_FREE_INITS and info.family == "gpt2":
            raise fail(candidate, f"LoRA init {m.params['init']!r} decomposes the base weight, "
                       "which peft does not support for GPT-2's Conv1D layers",
                       "use init default/zero/xavier/kaiming/gaussian on GPT-2")

    def check_mixture(self, m: Any, info: Any, candidate: Any) -> None:
        if m.params.get("init") in LORA_DATA_FREE_INITS:
            raise fail(candidate, f"LoRA init {m.params['init']!r} comes from peft, which builds "
                       "LoRA only when it is the candidate's one module (besides bitfit)",
                       "use init default/zero/xavier/kaiming/gaussian in a mixture")
        check_lora_targets_in_mixture(m, info, candidate)

    def alone_backend(self, m: Any, candidate: Any) -> str | None:
        return "peft"

    def peft_config(self, peft: Any, m: Any, ctx: BuildContext, common: dict) -> Any:
        init = m["init"]
        return peft.LoraConfig(
            r=int(m["rank"]), lora_alpha=float(m["alpha"]), lora_dropout=float(m["dropout"]),
            target_modules=ctx.module_names(m, m["targets"]),
            init_lora_weights=init if init in LORA_DATA_FREE_INITS else True,
            fan_in_fan_out=ctx.info.family == "gpt2",  # GPT-2's Conv1D stores (in, out)
            **self.peft_extra(m), **common)

    def after_peft(self, model: Any, m: Any, ctx: BuildContext) -> None:
        from autopeft.moduletypes.init import Projection, apply_init

        init = m["init"] if m["init"] not in LORA_DATA_FREE_INITS else "default"
        for module in model.modules():
            if PEFT_ADAPTER in getattr(module, "lora_A", {}):
                apply_init(Projection(module.lora_A[PEFT_ADAPTER].weight),
                           Projection(module.lora_B[PEFT_ADAPTER].weight),
                           init, float(m["init_scale"]), ctx.generator)

    def adapters_alpha(self, m: Any) -> float:
        return float(m["alpha"])

    def adapters_configs(self, ad: Any, m: Any, ctx: BuildContext) -> list[Any]:
        return [adapters_lora_config(m, ctx, ad.LoRAConfig, r=int(m["rank"]),
                                     alpha=self.adapters_alpha(m), dropout=float(m["dropout"]))]

    def adapters_projections(self, module: Any, m: Any) -> tuple[Any, Any] | None:
        from adapters.methods.lora import LoRA as AdaptersLoRA

        from autopeft.moduletypes.init import Projection

        if m["init"] == "default" or not isinstance(module, AdaptersLoRA) or \
                module.composition_mode != "add":
            return None
        return Projection(module.lora_A), Projection(module.lora_B)

    def adapters_lora_targets(self, m: Any) -> tuple[str, ...]:
        return tuple(m["targets"])

    def param_count(self, m: Any, info: Any, backend: str) -> int:
        return len(m.layers or ()) * lora_params(info, int(m["rank"]), m["targets"], backend)

    def extra_flops(self, m: Any, info: Any, seq_len: int, backend: str,
                    num_labels: int) -> float:
        r = int(m["rank"])  # x A^T then (.) B^T: 2 r (in + out) per token per matrix
        return len(m.layers or ()) * sum(2.0 * r * (a + b)
                                         for a, b, _ in lora_shapes(info, m["targets"], backend))


register(LoRA())
