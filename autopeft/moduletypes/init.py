"""Initialisations shared by every backend (semantics in autopeft.moduletypes.base.INITS).

A module with new weights is seen as a pair of projections: `inp` (LoRA A, adapter
down-projection) and `out` (LoRA B, adapter up-projection), each a weight of shape
(out_features, in_features) and an optional bias. "default" leaves the backend's own
initialisation alone; the others overwrite both projections, drawing from an explicit
torch.Generator so that the caller's global RNG state is never touched:

    zero      out = 0 (weight and bias); inp ~ U(-b, b), b = init_scale / sqrt(fan_in)
              (kaiming-uniform with a = sqrt(5), as nn.Linear and LoRA's A use)
    xavier    N(0, s^2), s = init_scale * sqrt(2 / (fan_in + fan_out))   (Glorot & Bengio 2010)
    kaiming   N(0, s^2), s = init_scale * sqrt(2 / fan_in)               (He et al. 2015, ReLU gain)
    gaussian  N(0, s^2), s = init_scale * 0.02
Biases are zero for every init other than default.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass
class Projection:
    weight: Any  # torch.nn.Parameter, shape (out_features, in_features)
    bias: Any = None


def expected_std(init: str, fan_in: int, fan_out: int, init_scale: float = 1.0) -> float:
    """The std a weight of that shape gets under `init` (for the random inits)."""
    if init == "xavier":
        return init_scale * math.sqrt(2.0 / (fan_in + fan_out))
    if init == "kaiming":
        return init_scale * math.sqrt(2.0 / fan_in)
    if init == "gaussian":
        return init_scale * 0.02
    if init == "zero":  # the input projection: uniform with bound init_scale/sqrt(fan_in)
        return init_scale / math.sqrt(fan_in) / math.sqrt(3.0)
    raise ValueError(f"init {init!r} has no fixed std")


def apply_init(inp: Projection, out: Projection, init: str, init_scale: float,
               generator: Any) -> None:
    """Overwrite a module's two projections in place according to `init`."""
    import torch

    if init == "default":
        return
    with torch.no_grad():
        for proj in (inp, out):
            fan_out, fan_in = proj.weight.shape
            if init == "zero" and proj is out:
                proj.weight.zero_()
            elif init == "zero":
                bound = init_scale / math.sqrt(fan_in)
                proj.weight.uniform_(-bound, bound, generator=generator)
            elif init in ("xavier", "kaiming", "gaussian"):
                std = expected_std(init, fan_in, fan_out, init_scale)
                proj.weight.normal_(0.0, std, generator=generator)
            else:
                raise ValueError(f"unknown init {init!r}")
            if proj.bias is not None:
                proj.bias.zero_()
