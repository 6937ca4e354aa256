"""Dropout with cheaper random masks, for the trial model.

torch's CPU dropout draws one Bernoulli sample per element (aten::bernoulli_, ~5 ns per
element here): on the default candidate the hidden-state dropouts took ~1.0 s of a 16 s
trial (cProfile of a default proxy trial, one thread).  The random bits themselves are
cheap when drawn in bulk: one 64-bit draw gives four 16-bit uniforms, so a mask costs a
quarter of the draws and a comparison.

    keep element  iff  u >= t,   u uniform on the 16-bit integers, t = round(p * 2**16)
    output        =    x * keep / (1 - t / 2**16)

The drop probability is p rounded to a multiple of 2**-16 (0.1 -> 0.100006) and the
output is rescaled by the same rounded value, so the expected output is x exactly, as
with torch's dropout.  The masks come from torch's default generator, which the training
loop seeds with the trial seed (inside fork_rng): the same seed gives the same masks.  In
eval mode, or with p = 0, it is the identity.

Only `torch.nn.Dropout` modules are swapped (the model's hidden-state and head dropouts,
LoRA's input dropout); attention dropout inside scaled_dot_product_attention is left to
torch.  `fast_dropout(model)` swaps them in place and returns how many.
"""
from __future__ import annotations

from typing import Any

from autopeft._imports import require

_LEVELS = 1 << 16


def fast_dropout(model: Any) -> int:
    """Replace every nn.Dropout(p > 0) submodule of `model` by a FastDropout(p)."""
    torch = require("torch")
    cls = _fast_dropout_class(torch)
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Dropout and child.p > 0:
                setattr(parent, name, cls(child.p))
                swapped += 1
    return swapped


_CLASS: Any = None


def _fast_dropout_class(torch: Any) -> Any:
    global _CLASS
    if _CLASS is not None:
        return _CLASS

    class FastDropout(torch.nn.Module):
        """nn.Dropout with 16-bit uniform masks drawn four per 64-bit sample."""

        def __init__(self, p: float) -> None:
            super().__init__()
            self.p = float(p)
            self.threshold = int(round(self.p * _LEVELS))
            self.scale = _LEVELS / (_LEVELS - self.threshold) if self.threshold < _LEVELS \
                else 0.0

        def forward(self, x: Any) -> Any:
            if not self.training or self.threshold == 0:
                return x
            n = x.numel()
            bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device)
            bits.random_(-(2 ** 63), None)             # every 64-bit pattern
            u = bits.view(torch.int16)[:n].view(x.shape)
            # int16 is signed: u >= t - 2**15 keeps a share 1 - t / 2**16
            keep = (u >= self.threshold - _LEVELS // 2).to(x.dtype).mul_(self.scale)
            return x * keep

        def extra_repr(self) -> str:
            return f"p={self.p}"

    _CLASS = FastDropout
    return _CLASS
