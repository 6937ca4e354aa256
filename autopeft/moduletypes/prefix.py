"""prefix: trainable key/value prefixes in attention (Li & Liang 2021).

Alone on all layers: peft's PrefixTuningConfig (bottleneck > 0 = projection). On a layer
subset or in a mixture: AdapterHub's PrefixTuningConfig(flat, bottleneck_size, leave_out).
"""
from __future__ import annotations

from typing import Any

from autopeft.moduletypes.base import BuildContext, ModuleType, ParamSpec
from autopeft.moduletypes.lora import leave_out
from autopeft.moduletypes.registry import register
from autopeft.moduletypes.shapes import prefix_flops, prefix_params


class Prefix(ModuleType):
    name = "prefix"
    doc = "prefix tuning: trainable key/value prefixes in attention (Li & Liang 2021)"
    params = (
        ParamSpec("length", "int", 10, low=1, high=1024, doc="number of prefix tokens"),
        ParamSpec("bottleneck", "int", 0, low=0, high=8192,
                  doc="reparametrisation MLP width; 0 = no reparametrisation"),
    )
    size_param = "length"
    mixture_parts = ("prefix",)

    def alone_backend(self, m: Any, candidate: Any) -> str | None:
        # peft prefixes every layer; a subset needs AdapterHub's leave_out
        if m.layers is None or len(m.layers) == candidate.num_layers:
            return "peft"
        return None

    def peft_config(self, peft: Any, m: Any, ctx: BuildContext, common: dict) -> Any:
        bottleneck = int(m["bottleneck"])
        return peft.PrefixTuningConfig(num_virtual_tokens=int(m["length"]),
                                       prefix_projection=bottleneck > 0,
                                       encoder_hidden_size=bottleneck or ctx.info.hidden_size,
                                       **common)

    def adapters_configs(self, ad: Any, m: Any, ctx: BuildContext) -> list[Any]:
        b = int(m["bottleneck"])
        return [ad.PrefixTuningConfig(prefix_length=int(m["length"]), flat=b == 0,
                                      bottleneck_size=b or 512, leave_out=leave_out(m, ctx))]

    def param_count(self, m: Any, info: Any, backend: str) -> int:
        return prefix_params(int(m["length"]), int(m["bottleneck"]), len(m.layers or ()), info,
                             backend)

    def extra_flops(self, m: Any, info: Any, seq_len: int, backend: str,
                    num_labels: int) -> float:
        return prefix_flops(int(m["length"]), int(m["bottleneck"]), len(m.layers or ()), info,
                            seq_len, backend)


register(Prefix())
