"""Analytic cost: exact trainable parameters from ModelInfo shapes, FLOPs from formulas.

No torch: this runs on config.json alone (autopeft.models.model_info). Definitions are in the
package docstring (autopeft.cost); each type's formulas, with their sources, are in its
plug-in (autopeft.moduletypes.<type>: param_count, extra_flops, mergeable) and the shared
shapes in autopeft.moduletypes.shapes. tests/test_cost.py checks every formula against the
measured count of a real built model.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from autopeft.candidate import Candidate, ModuleConfig
from autopeft.moduletypes import MERGEABLE, backend_for, get
from autopeft.moduletypes.shapes import base_flops, base_param_count
from autopeft.records import Cost

if TYPE_CHECKING:  # pragma: no cover
    from autopeft.models import ModelInfo

__all__ = ["MERGEABLE", "SEQ_LEN", "base_flops", "base_param_count", "estimate",
           "head_param_count", "is_mergeable", "module_extra_flops", "module_params",
           "trainable_params"]

SEQ_LEN = 64


def is_mergeable(candidate: Candidate) -> bool:
    """True when every module folds into the base weights (the head-only baseline too)."""
    return all(get(m.type).mergeable for m in candidate.modules)


def module_params(m: ModuleConfig, info: "ModelInfo", backend: str = "peft") -> int:
    """Exact trainable parameters that module `m` adds, as autopeft.methods builds it.

    `backend` is the one autopeft.moduletypes.backend_for picks for the candidate
    ("peft" when the module is alone, "adapters" in mixtures): a few shapes differ.
    """
    return get(m.type).param_count(m, info, backend)


def module_extra_flops(m: ModuleConfig, info: "ModelInfo", seq_len: int, backend: str = "peft",
                       num_labels: int = 2) -> float:
    """Forward matmul FLOPs that module `m` adds per input token (unmerged)."""
    return get(m.type).extra_flops(m, info, seq_len, backend, num_labels)


def trainable_params(candidate: Candidate, info: "ModelInfo") -> int:
    """Exact trainable parameters of the candidate's modules (head excluded)."""
    backend = backend_for(_with_layers(candidate, info))
    return sum(module_params(m, info, backend) for m in candidate.modules)


def head_param_count(info: "ModelInfo", num_labels: int = 2) -> int:
    """The classifier head: BERT's has a bias, GPT-2's and Llama's `score` has none."""
    h = info.hidden_size
    return h * num_labels + (num_labels if info.family == "bert" else 0)


def _with_layers(candidate: Candidate, info: "ModelInfo") -> Candidate:
    if candidate.num_layers is None:
        return Candidate(candidate.modules, candidate.hyper, info.num_layers)
    return candidate


def estimate(candidate: Candidate, info: "ModelInfo", *, seq_len: int = SEQ_LEN,
             num_labels: int = 2) -> Cost:
    """The analytic Cost of a candidate on a model: no torch, no weights (latency is None)."""
    cand = _with_layers(candidate, info)
    backend = backend_for(cand)
    params = sum(module_params(m, info, backend) for m in cand.modules)
    base_p = base_param_count(info)
    base_f = base_flops(info, seq_len, num_labels) / seq_len
    extras = [(m, module_extra_flops(m, info, seq_len, backend, num_labels)) for m in cand.modules]
    extra = sum(f for _, f in extras)
    merged = sum(f for m, f in extras if not get(m.type).mergeable)
    return Cost(trainable_params=params, base_params=base_p, params_ratio=params / base_p,
                base_flops_per_token=base_f, extra_flops_per_token=extra,
                flops_ratio=extra / base_f, flops_ratio_merged=merged / base_f,
                latency_ratio=None, mergeable=is_mergeable(cand),
                head_params=head_param_count(info, num_labels))
