"""mam: Mix-and-Match adapter, prefix tuning + a scaled parallel FFN adapter (He et al. 2022).

AdapterHub builds MAMConfig's parts: a prefix reparametrised through an MLP of width 800
and a ParBnConfig(scaling), leave_out.
"""
from __future__ import annotations

from typing import Any

from autopeft.moduletypes.adapter import check_size, reduction
from autopeft.moduletypes.base import BuildContext, ModuleType, ParamSpec
from autopeft.moduletypes.lora import leave_out
from autopeft.moduletypes.registry import register
from autopeft.moduletypes.shapes import bottleneck_params, prefix_flops, prefix_params

PREFIX_MLP = 800  # AdapterHub's MAMConfig


class MAM(ModuleType):
    name = "mam"
    doc = "Mix-and-Match: prefix tuning + scaled parallel FFN adapter (He et al. 2022)"
    params = (
        ParamSpec("prefix_length", "int", 30, low=1, high=1024),
        ParamSpec("size", "int", 64, low=1, high=8192),
        ParamSpec("scaling", "float", 4.0, low=1e-6, high=1e6),
    )
    mixture_parts = ("prefix", "parallel")

    def check(self, m: Any, info: Any, candidate: Any) -> None:
        check_size(m, info, candidate)

    def adapters_configs(self, ad: Any, m: Any, ctx: BuildContext) -> list[Any]:
        lo = leave_out(m, ctx)
        return [
            ad.PrefixTuningConfig(prefix_length=int(m["prefix_length"]),
                                  bottleneck_size=PREFIX_MLP, leave_out=lo),
            ad.ParBnConfig(reduction_factor=reduction(ctx.info.hidden_size, m["size"]),
                           scaling=float(m["scaling"]), leave_out=lo),
        ]

    def param_count(self, m: Any, info: Any, backend: str) -> int:
        n_layers = len(m.layers or ())
        return prefix_params(int(m["prefix_length"]), PREFIX_MLP, n_layers, info, "adapters") + \
            n_layers * bottleneck_params(info.hidden_size, int(m["size"]))

    def extra_flops(self, m: Any, info: Any, seq_len: int, backend: str,
                    num_labels: int) -> float:
        n_layers = len(m.layers or ())
        return n_layers * 4.0 * info.hidden_size * int(m["size"]) + \
            prefix_flops(int(m["prefix_length"]), PREFIX_MLP, n_layers, info, seq_len, "adapters")


register(MAM())
