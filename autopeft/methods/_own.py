"""Our own modules, where neither peft nor adapters fits.

BitFit (Ben Zaken et al. 2022): train only bias terms. The paper trains every bias of the
encoder; autopeft restricts it to the biases of the chosen target sub-modules in the chosen
layers, so BitFit composes with the same layer/target choices as the other types. Trainable
parameter count = sum over chosen layers and target modules of the bias length (the module's
output width), e.g. BERT with all six targets: L * (4h + i + h).

Parallel FFN adapter (He et al. 2022, "Towards a unified view"): h = FFN(x) + s * up(f(down(x)))
where x is the FFN input. AdapterHub's ParBnConfig implements it, but it cannot share a
layer's FFN location with a serial adapter in one adapter setup (its config union refuses two
bottleneck blocks at one location, and a Stack composition feeds the parallel block the
serial block's output). The AutoPEFT paper's space puts a serial and a parallel adapter into
the same layers, so when both are asked for, the parallel one is this module, hooked around
the FFN, and the serial adapter (adapters) then sees FFN(x) + s * PA(x) as the FFN output.
"""
from __future__ import annotations

import logging
from typing import Any, Iterable

from autopeft.methods.init import Projection, apply_init
from autopeft.methods.targets import LAYER_PATTERNS, module_names

logger = logging.getLogger(__name__)

PARALLEL_ATTR = "autopeft_parallel"


def enable_bitfit(model: Any, family: str, layers: Iterable[int], targets: Iterable[str]) -> list[str]:
    """Set requires_grad on the biases of the target modules; returns their names."""
    names = [n for n, _ in model.named_modules()]
    chosen = module_names(names, family, layers, targets)
    modules = dict(model.named_modules())
    out = []
    for name in chosen:
        bias = getattr(modules[name], "bias", None)
        if bias is not None:
            bias.requires_grad_(True)
            out.append(name + ".bias")
    return out


def add_parallel_adapters(model: Any, family: str, layers: Iterable[int], hidden: int, size: int,
                          activation: str, scaling: float, init: str, init_scale: float,
                          generator: Any) -> list[Any]:
    """Attach a parallel adapter beside the FFN of each chosen layer (trainable)."""
    import torch

    from autopeft.methods._modules import ParallelFFNAdapter

    wanted = set(layers)
    layer_modules = {}
    for name, module in model.named_modules():
        m = LAYER_PATTERNS[family].match(name + ".x")
        if m and m.group(2) == "x":
            layer_modules[int(m.group(1))] = module
    branches = []
    for i in sorted(wanted):
        layer = layer_modules[i]
        branch = ParallelFFNAdapter(hidden, size, activation, scaling)
        with torch.no_grad():  # default: as AdapterHub's mam_adapter init (identity at step 0)
            bound = 1.0 / hidden ** 0.5
            branch.down.weight.uniform_(-bound, bound, generator=generator)
            branch.down.bias.zero_()
            branch.up.weight.zero_()
            branch.up.bias.zero_()
        apply_init(Projection(branch.down.weight, branch.down.bias),
                   Projection(branch.up.weight, branch.up.bias), init, init_scale, generator)
        setattr(layer, PARALLEL_ATTR, branch)
        if family == "bert":
            layer.intermediate.register_forward_pre_hook(branch.remember_input)
            layer.output.dense.register_forward_hook(branch.add_to_output)
        else:
            layer.mlp.register_forward_hook(branch.add_from_input)
        branches.append(branch)
    return branches
