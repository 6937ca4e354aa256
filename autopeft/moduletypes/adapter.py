"""adapter: serial bottleneck adapter (Houlsby et al. 2019; Pfeiffer et al. 2021 placement).

AdapterHub builds it: SeqBnConfig (pfeiffer) / DoubleSeqBnConfig (houlsby), leave_out.
The helpers here (the reduction factor, the size check, the init of AdapterHub's
bottleneck modules) serve the other bottleneck types too.
"""
from __future__ import annotations

from typing import Any

from autopeft.moduletypes.base import (ACTIVATIONS, INIT_SCALE, BuildContext, ModuleType, ParamSpec,
                                       fail, init_param)
from autopeft.moduletypes.lora import leave_out
from autopeft.moduletypes.registry import register
from autopeft.moduletypes.shapes import bottleneck_params


def reduction(hidden: int, size: int) -> float:
    # adapters computes the width as int(hidden // reduction_factor); the +0.5 keeps float
    # rounding from landing one below `size`
    return hidden / (int(size) + 0.5)


def check_size(m: Any, info: Any, candidate: Any) -> None:
    if int(m.params["size"]) > info.hidden_size:
        raise fail(candidate, f"{m.type} bottleneck size {m.params['size']} is above the "
                   f"hidden size {info.hidden_size} (no longer a bottleneck)",
                   f"use a size of at most {info.hidden_size}")


def bottleneck_projections(module: Any) -> tuple[Any, Any]:
    """(down, up) Projections of an AdapterHub bottleneck module."""
    from autopeft.moduletypes.init import Projection

    down = next(x for x in module.adapter_down.modules() if hasattr(x, "weight"))
    return Projection(down.weight, down.bias), \
        Projection(module.adapter_up.weight, module.adapter_up.bias)


class Adapter(ModuleType):
    name = "adapter"
    doc = "serial bottleneck adapter (Houlsby et al. 2019; Pfeiffer et al. 2021 placement)"
    params = (
        ParamSpec("size", "int", 64, low=1, high=8192, doc="bottleneck width"),
        ParamSpec("placement", "choice", "pfeiffer", ("pfeiffer", "houlsby"),
                  doc="pfeiffer: after the FFN only; houlsby: after attention and FFN"),
        ParamSpec("activation", "choice", "relu", ACTIVATIONS),
        init_param(),
        INIT_SCALE,
    )
    size_param = "size"
    mixture_parts = ("serial",)

    def check(self, m: Any, info: Any, candidate: Any) -> None:
        check_size(m, info, candidate)

    def adapters_configs(self, ad: Any, m: Any, ctx: BuildContext) -> list[Any]:
        cls = ad.SeqBnConfig if m["placement"] == "pfeiffer" else ad.DoubleSeqBnConfig
        return [cls(reduction_factor=reduction(ctx.info.hidden_size, m["size"]),
                    non_linearity=m["activation"], leave_out=leave_out(m, ctx))]

    def adapters_projections(self, module: Any, m: Any) -> tuple[Any, Any] | None:
        from adapters.methods.modeling import Adapter as Bottleneck, ParallelAdapter

        if m["init"] == "default" or not isinstance(module, Bottleneck) or \
                isinstance(module, ParallelAdapter):
            return None
        return bottleneck_projections(module)

    def param_count(self, m: Any, info: Any, backend: str) -> int:
        count = 2 if m["placement"] == "houlsby" else 1
        return len(m.layers or ()) * count * bottleneck_params(info.hidden_size, int(m["size"]))

    def extra_flops(self, m: Any, info: Any, seq_len: int, backend: str,
                    num_labels: int) -> float:
        count = 2 if m["placement"] == "houlsby" else 1
        # down + up: 2 * 2 h s per token
        return len(m.layers or ()) * count * 4.0 * info.hidden_size * int(m["size"])


register(Adapter())
