"""unipelt: gated LoRA + prefix + serial adapter (Mao et al. 2022).

AdapterHub builds UniPELTConfig's parts: a gated prefix (MLP width 512), a gated serial
adapter and gated LoRA on q and v, each gate a Linear to one unit; leave_out. The gates
depend on the input, so it cannot merge.
"""
from __future__ import annotations

from typing import Any

from autopeft.moduletypes.adapter import check_size, reduction
from autopeft.moduletypes.base import BuildContext, ModuleType, ParamSpec
from autopeft.moduletypes.lora import check_rank, leave_out, lora_params
from autopeft.moduletypes.registry import register
from autopeft.moduletypes.shapes import (bottleneck_params, prefix_flops, prefix_params,
                                         split_target_shapes)

QV = ("q", "v")
PREFIX_MLP = 512  # AdapterHub's PrefixTuningConfig bottleneck_size default


class UniPELT(ModuleType):
    name = "unipelt"
    doc = "UniPELT: gated LoRA + prefix + serial adapter (Mao et al. 2022)"
    params = (
        ParamSpec("rank", "int", 8, low=1, high=4096),
        ParamSpec("alpha", "float", 16.0, low=1e-6, high=1e6),
        ParamSpec("prefix_length", "int", 10, low=1, high=1024),
        ParamSpec("size", "int", 16, low=1, high=8192, doc="adapter bottleneck width"),
    )
    mixture_parts = ("lora", "prefix", "serial")

    def check(self, m: Any, info: Any, candidate: Any) -> None:
        check_rank(m, info, candidate, QV)
        check_size(m, info, candidate)

    def adapters_configs(self, ad: Any, m: Any, ctx: BuildContext) -> list[Any]:
        lo = leave_out(m, ctx)
        return [
            ad.PrefixTuningConfig(prefix_length=int(m["prefix_length"]), leave_out=lo,
                                  use_gating=True),
            ad.SeqBnConfig(reduction_factor=reduction(ctx.info.hidden_size, m["size"]),
                           leave_out=lo, use_gating=True),
            ad.LoRAConfig(r=int(m["rank"]), alpha=float(m["alpha"]), leave_out=lo,
                          use_gating=True),
        ]

    def adapters_lora_targets(self, m: Any) -> tuple[str, ...]:
        return QV

    def param_count(self, m: Any, info: Any, backend: str) -> int:
        h, n_layers = info.hidden_size, len(m.layers or ())
        lora = lora_params(info, int(m["rank"]), QV, "adapters", gated=True)
        return n_layers * (lora + bottleneck_params(h, int(m["size"])) + (h + 1)) + \
            prefix_params(int(m["prefix_length"]), PREFIX_MLP, n_layers, info, "adapters") + \
            n_layers * (h + 1)

    def extra_flops(self, m: Any, info: Any, seq_len: int, backend: str,
                    num_labels: int) -> float:
        # LoRA on q, v and the serial adapter, plus the gates: a Linear to one unit per token
        # for each LoRA matrix, the adapter and the prefix of every layer
        h, n_layers = info.hidden_size, len(m.layers or ())
        lora = sum(2.0 * int(m["rank"]) * (a + b) + 2.0 * a
                   for a, b, _ in split_target_shapes(info, QV))
        adapter = 4.0 * h * int(m["size"]) + 2.0 * h
        return n_layers * (lora + adapter + 2.0 * h) + \
            prefix_flops(int(m["prefix_length"]), PREFIX_MLP, n_layers, info, seq_len, "adapters")


register(UniPELT())
