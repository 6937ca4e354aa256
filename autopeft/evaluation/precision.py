"""Frozen linear weights stored in bf16 for a trial that trains under bf16 autocast.

Under `torch.autocast(dtype=bfloat16)` every linear layer casts its fp32 weight to bf16 on
each forward (autocast caches casts only for leaves that require grad, so a frozen weight
is cast again at every step).  On the default candidate that is ~10M frozen values read as
fp32 and written as bf16 per step, ~5 % of a CPU step (profiled: aten::copy_/_to_copy).
Storing each frozen linear weight in bf16 once per trial removes the cast and changes no
value the kernels see: autocast would hand them exactly that bf16 tensor (round to nearest
even, the same conversion), and a bf16 weight under autocast is used as it is.

Only parameters of `torch.nn.Linear` modules are converted, and only frozen ones (a
trainable bias, as in BitFit, stays fp32: autocast casts it per step as before).  The
linear's computation is `F.linear` under autocast either way.  Everything else (layer
norms, embeddings, which autocast runs in fp32; trainable modules; the head) is left alone.

Module types whose own code reads a frozen base weight outside `F.linear` (DoRA computes
the weight norm of base + update) would see different values: `convertible(candidate)`
says no for them, and tests/test_precision.py checks, type by type, that the logits under
autocast are bit-identical with and without the conversion.

The trial model is private to the trial (built from a fresh copy of the base), so nothing
needs converting back; the trainable weights saved by a checkpoint keep their dtype.
"""
from __future__ import annotations

from typing import Any

from autopeft._imports import require
from autopeft.candidate import Candidate

# types whose forward uses a frozen base weight other than through F.linear
_READS_BASE_WEIGHT = frozenset({"dora"})


def convertible(candidate: Candidate) -> bool:
    """Whether every module of the candidate leaves frozen linears to F.linear."""
    return not any(m.type in _READS_BASE_WEIGHT for m in candidate.modules)


def frozen_linears_to_bf16(model: Any) -> int:
    """Store every frozen parameter of every nn.Linear in bf16; returns how many values."""
    torch = require("torch")
    done = 0
    for module in model.modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        for name, p in module.named_parameters(recurse=False):
            if p.requires_grad or p.dtype != torch.float32:
                continue
            setattr(module, name, torch.nn.Parameter(p.detach().to(torch.bfloat16),
                                                     requires_grad=False))
            done += p.numel()
    return done
