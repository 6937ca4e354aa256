"""ia3: learned rescaling of keys, values and FFN activations (Liu et al. 2022).

Alone: peft's IA3Config, ffn_out as feedforward_modules. In a mixture: AdapterHub's
IA3Config (LoRA with composition_mode="scale"), leave_out.
"""
from __future__ import annotations

from typing import Any

from autopeft.moduletypes.base import BuildContext, ModuleType, ParamSpec
from autopeft.moduletypes.lora import adapters_lora_config, check_lora_targets_in_mixture
from autopeft.moduletypes.registry import register
from autopeft.moduletypes.shapes import linears, split_target_shapes
from autopeft.moduletypes.targets import relative_names


class IA3(ModuleType):
    name = "ia3"
    doc = "IA3: learned rescaling of keys, values and FFN activations (Liu et al. 2022)"
    params = (ParamSpec("targets", "targets", ("k", "v", "ffn_out")),)
    # the scaling folds into the weights it rescales (Liu et al. 2022, sec. 3.3)
    mergeable = True
    whole_fused = True  # one scale per output feature of c_attn: q, k, v only together
    mixture_parts = ("lora",)  # adapters implements IA3 as LoRA with composition_mode="scale"

    def check_mixture(self, m: Any, info: Any, candidate: Any) -> None:
        check_lora_targets_in_mixture(m, info, candidate)

    def alone_backend(self, m: Any, candidate: Any) -> str | None:
        return "peft"

    def peft_config(self, peft: Any, m: Any, ctx: BuildContext, common: dict) -> Any:
        targets = ctx.module_names(m, m["targets"])
        # IA3 scales the *input* of feed-forward down projections, the output of the others
        ff = ctx.module_names(m, ("ffn_out",)) if "ffn_out" in m["targets"] else []
        return peft.IA3Config(target_modules=targets, feedforward_modules=ff,
                              fan_in_fan_out=ctx.info.family == "gpt2", **common)

    def adapters_configs(self, ad: Any, m: Any, ctx: BuildContext) -> list[Any]:
        return [adapters_lora_config(m, ctx, ad.IA3Config)]

    def adapters_lora_targets(self, m: Any) -> tuple[str, ...]:
        return tuple(m["targets"])

    def param_count(self, m: Any, info: Any, backend: str) -> int:
        # one vector per adapted matrix (Liu et al. 2022, sec. 3.3). peft scales the input of
        # the FFN down projection (its feedforward_modules: the intermediate activation, as in
        # the paper) and the output of the others (keys, values); AdapterHub's IA3 (LoRA with
        # composition_mode="scale") scales every output.
        n_layers = len(m.layers or ())
        if backend != "peft":
            return n_layers * sum(b for _, b, _ in split_target_shapes(info, m["targets"]))
        table = linears(info)
        ff = set(relative_names(info.family, ("ffn_out",)))
        return n_layers * sum(table[rel][0] if rel in ff else table[rel][1]
                              for rel in relative_names(info.family, m["targets"]))

    def extra_flops(self, m: Any, info: Any, seq_len: int, backend: str,
                    num_labels: int) -> float:
        return 0.0  # elementwise only


register(IA3())
