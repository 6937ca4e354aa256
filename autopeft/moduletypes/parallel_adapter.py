"""parallel_adapter: a bottleneck beside the FFN, h = FFN(x) + s * up(f(down(x))), x the FFN
input (He et al. 2022, "Towards a unified view").

AdapterHub's ParBnConfig(scaling), leave_out. It cannot share a layer's FFN location with a
serial adapter in one adapter setup (its config union refuses two bottleneck blocks at one
location, and a Stack composition feeds the parallel block the serial block's output). The
AutoPEFT paper's space puts a serial and a parallel adapter into the same layers, so when a
serial block is in the candidate, the parallel one is our own module
(autopeft.moduletypes._parallel_module), hooked around the FFN, and the serial adapter then
sees FFN(x) + s * PA(x) as the FFN output.
"""
from __future__ import annotations

from typing import Any

from autopeft.moduletypes.adapter import bottleneck_projections, check_size, reduction
from autopeft.moduletypes.base import (ACTIVATIONS, INIT_SCALE, BuildContext, ModuleType, ParamSpec,
                                       init_param)
from autopeft.moduletypes.lora import leave_out
from autopeft.moduletypes.registry import register
from autopeft.moduletypes.shapes import bottleneck_params
from autopeft.moduletypes.targets import LAYER_PATTERNS

PARALLEL_ATTR = "autopeft_parallel"


class ParallelAdapter(ModuleType):
    name = "parallel_adapter"
    doc = "parallel bottleneck adapter beside the FFN (He et al. 2022)"
    params = (
        ParamSpec("size", "int", 64, low=1, high=8192),
        ParamSpec("scaling", "float", 4.0, low=1e-6, high=1e6),
        ParamSpec("activation", "choice", "relu", ACTIVATIONS),
        init_param(),
        INIT_SCALE,
    )
    size_param = "size"
    mixture_parts = ("parallel",)

    def check(self, m: Any, info: Any, candidate: Any) -> None:
        check_size(m, info, candidate)

    def in_library_artifact(self, m: Any, parts: frozenset) -> bool:
        return "serial" not in parts  # beside a serial block it is our own module

    def adapters_configs(self, ad: Any, m: Any, ctx: BuildContext) -> list[Any]:
        if "serial" in ctx.parts:
            return []  # after_adapters adds our own
        return [ad.ParBnConfig(reduction_factor=reduction(ctx.info.hidden_size, m["size"]),
                               scaling=float(m["scaling"]), non_linearity=m["activation"],
                               leave_out=leave_out(m, ctx))]

    def after_adapters(self, model: Any, m: Any, ctx: BuildContext) -> None:
        if "serial" in ctx.parts:
            add_parallel_adapters(model, m, ctx)

    def adapters_projections(self, module: Any, m: Any) -> tuple[Any, Any] | None:
        from adapters.methods.modeling import ParallelAdapter as AdaptersParallel

        if m["init"] == "default" or not isinstance(module, AdaptersParallel):
            return None
        return bottleneck_projections(module)

    def param_count(self, m: Any, info: Any, backend: str) -> int:
        return len(m.layers or ()) * bottleneck_params(info.hidden_size, int(m["size"]))

    def extra_flops(self, m: Any, info: Any, seq_len: int, backend: str,
                    num_labels: int) -> float:
        return len(m.layers or ()) * 4.0 * info.hidden_size * int(m["size"])


def add_parallel_adapters(model: Any, m: Any, ctx: BuildContext) -> list[Any]:
    """Attach our parallel adapter beside the FFN of each chosen layer (trainable)."""
    import torch

    from autopeft.moduletypes._parallel_module import ParallelFFNAdapter
    from autopeft.moduletypes.init import Projection, apply_init

    family, hidden = ctx.info.family, ctx.info.hidden_size
    layer_modules = {}
    for name, module in model.named_modules():
        match = LAYER_PATTERNS[family].match(name + ".x")
        if match and match.group(2) == "x":
            layer_modules[int(match.group(1))] = module
    branches = []
    for i in sorted(set(m.layers or ())):
        layer = layer_modules[i]
        branch = ParallelFFNAdapter(hidden, int(m["size"]), m["activation"], float(m["scaling"]))
        with torch.no_grad():  # default: as AdapterHub's mam_adapter init (identity at step 0)
            bound = 1.0 / hidden ** 0.5
            branch.down.weight.uniform_(-bound, bound, generator=ctx.generator)
            branch.down.bias.zero_()
            branch.up.weight.zero_()
            branch.up.bias.zero_()
        apply_init(Projection(branch.down.weight, branch.down.bias),
                   Projection(branch.up.weight, branch.up.bias), m["init"],
                   float(m["init_scale"]), ctx.generator)
        setattr(layer, PARALLEL_ATTR, branch)
        if family == "bert":
            layer.intermediate.register_forward_pre_hook(branch.remember_input)
            layer.output.dense.register_forward_hook(branch.add_to_output)
        else:
            layer.mlp.register_forward_hook(branch.add_from_input)
        branches.append(branch)
    return branches


register(ParallelAdapter())
