"""ModuleType: the plug-in base class, one subclass per PEFT module type.

A plug-in says everything autopeft needs to know about its type, in one place:

    schema       name, doc, params (ParamSpec, defaults), layered, size_param
    validation   check(m, info, candidate), check_mixture(m, info, candidate),
                 needs_family, whole_fused, mixture_parts
    building     alone_backend(m, candidate) -> "peft" | "own" | None (None: AdapterHub);
                 peft_config / after_peft, adapters_configs / after_adapters /
                 adapters_projections / adapters_lora_targets, build_own; additive (BitFit:
                 our own code, applied after whichever backend builds the rest)
    cost         param_count(m, info, backend), extra_flops(m, info, seq_len, backend,
                 num_labels), mergeable
    export       in_library_artifact(m, parts), export_own(out, m, built, info),
                 weights_in_library_artifact

Two methods are abstract (the cost formulas: every type must state them and cite them);
the rest are hooks with generous defaults. `m` is a candidate's ModuleConfig of this type,
`info` an autopeft.models.ModelInfo, `candidate` the whole Candidate (all duck-typed: this
layer imports neither). Build hooks import torch/peft/adapters inside the function and get
the libraries' modules as arguments, so importing a plug-in stays pure Python.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from autopeft.exceptions import CandidateError

TARGETS = ("q", "k", "v", "o", "ffn_in", "ffn_out")

# Initialisations for modules that own new weights (adapters, LoRA).  Semantics, shared by
# every backend (see autopeft.moduletypes.init):
#   default   the backend's own initialisation
#   zero      the output projection (LoRA B, adapter up-projection) is zero, so the module is
#             an identity at step 0; the input projection is kaiming-uniform scaled by init_scale
#   xavier    xavier-normal on both projections, std multiplied by init_scale
#   kaiming   kaiming-normal (fan_in) on both projections, std multiplied by init_scale
#   gaussian  N(0, (0.02 * init_scale)^2) on both projections
INITS = ("default", "zero", "xavier", "kaiming", "gaussian")
# peft's data-free LoRA initialisations (they need no calibration data)
LORA_DATA_FREE_INITS = ("pissa", "olora")
ACTIVATIONS = ("relu", "gelu", "swish", "tanh")


@dataclass(frozen=True)
class ParamSpec:
    """One parameter of a module type.

    kind: "int", "float", "choice", "targets" (a subset of TARGETS), or "bool".
    `allowed` constrains choice values; low/high bound numbers (inclusive).
    """

    name: str
    kind: str
    default: Any
    allowed: tuple = ()
    low: float | None = None
    high: float | None = None
    doc: str = ""


def init_param(default: str = "default", extra: tuple[str, ...] = ()) -> ParamSpec:
    return ParamSpec("init", "choice", default, INITS + extra, doc="initialisation, see INITS")


INIT_SCALE = ParamSpec("init_scale", "float", 1.0, low=0.1, high=1.0,
                       doc="multiplies the init's std/bound; in [0.1, 1.0]")


def fail(candidate: Any, reason: str, fix: str) -> CandidateError:
    """The one error shape for a candidate that cannot be built: which, why, and the fix."""
    return CandidateError(f"candidate {candidate.summary()} cannot be built: {reason}\n  fix: {fix}")


@dataclass
class BuildContext:
    """What build hooks see: the model's module names (before any wrapping), its heads,
    the adapters blocks the candidate brings (`parts`, for mixtures) and the seeded
    torch.Generator our own initialisers draw from (None for a configs-only export)."""

    info: Any
    candidate: Any
    names: tuple[str, ...]
    heads: tuple[str, ...]
    generator: Any = None
    parts: frozenset = frozenset()

    def module_names(self, m: Any, targets: Iterable[str]) -> list[str]:
        """Exact full names of `targets` in m's layers; refuses a match of nothing."""
        from autopeft.moduletypes.targets import module_names

        found = module_names(self.names, self.info.family, m.layers or (), targets)
        # validate() catches this from the config already; this guards models whose module
        # names differ from their family's (a renamed fork), so nothing is silently adapted
        if not found:
            raise fail(self.candidate, f"{m.type} targets {list(targets)} match no module in "
                       f"layers {list(m.layers or ())} of this model",
                       "check the model family's module names (autopeft.moduletypes.targets)")
        return found


class ModuleType:
    """Base class of the module-type plug-ins (see the module docstring)."""

    name: str = ""
    doc: str = ""
    params: tuple[ParamSpec, ...] = ()
    layered: bool = True          # has an insertion-layer choice
    size_param: str | None = None  # its value 0 means "module off" (AutoPEFT paper levels)
    mergeable: bool = False       # folds into the base weights: no inference cost once merged
    additive: bool = False        # built by our own code after any backend (BitFit)
    needs_family: bool = True     # maps targets onto module names: needs a known model family
    whole_fused: bool = False     # works per output feature: a fused q/k/v only whole
    mixture_parts: tuple[str, ...] = ()  # blocks it brings into an AdapterHub ConfigUnion
    weights_in_library_artifact: bool = False  # export_own writes every weight itself

    def __repr__(self) -> str:
        return f"<module type {self.name!r}>"

    # ------------------------------------------------------------------ schema
    def param(self, name: str) -> ParamSpec | None:
        for p in self.params:
            if p.name == name:
                return p
        return None

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    # ------------------------------------------------------------------ validation
    def check(self, m: Any, info: Any, candidate: Any) -> None:
        """Type-specific refusals on any backend (the generic ones are in methods.validate)."""

    def check_mixture(self, m: Any, info: Any, candidate: Any) -> None:
        """Refusals when AdapterHub builds it inside a mixture."""
        if not self.mixture_parts:
            raise fail(candidate, f"{self.name} is not available in a mixture",
                       "use it alone, or combine it only with bitfit")

    # ------------------------------------------------------------------ building
    def alone_backend(self, m: Any, candidate: Any) -> str | None:
        """The backend when this is the candidate's one module besides additive ones."""
        return None

    def peft_config(self, peft: Any, m: Any, ctx: BuildContext, common: dict) -> Any:
        raise fail(ctx.candidate, f"{self.name} is not a peft module type", "report this as a bug")

    def after_peft(self, model: Any, m: Any, ctx: BuildContext) -> None:
        """Runs on the PeftModel (our own initialisations)."""

    def adapters_configs(self, ad: Any, m: Any, ctx: BuildContext) -> list[Any]:
        raise fail(ctx.candidate, f"{self.name} is not available in a mixture",
                   "use it alone, or combine it only with bitfit")

    def after_adapters(self, model: Any, m: Any, ctx: BuildContext) -> None:
        """Runs once the AdapterHub adapter is added (our own parts beside it)."""

    def adapters_projections(self, module: Any, m: Any) -> tuple[Any, Any] | None:
        """(inp, out) Projections of an AdapterHub module of this type to initialise, or None."""
        return None

    def adapters_lora_targets(self, m: Any) -> tuple[str, ...]:
        """The targets it asks AdapterHub to put LoRA/IA3 weights on (checked after building)."""
        return ()

    def build_own(self, model: Any, m: Any, ctx: BuildContext) -> None:
        raise fail(ctx.candidate, f"{self.name} has no own build", "report this as a bug")

    # ------------------------------------------------------------------ cost
    def param_count(self, m: Any, info: Any, backend: str) -> int:
        """Exact trainable parameters it adds as autopeft builds it (head excluded)."""
        raise NotImplementedError(f"module type {self.name!r} has no parameter formula")

    def extra_flops(self, m: Any, info: Any, seq_len: int, backend: str,
                    num_labels: int) -> float:
        """Forward matmul FLOPs it adds per input token, unmerged."""
        raise NotImplementedError(f"module type {self.name!r} has no FLOP formula")

    # ------------------------------------------------------------------ export
    def in_library_artifact(self, m: Any, parts: frozenset) -> bool:
        """Whether the peft/adapters files hold its weights (autopeft_weights/ always does)."""
        return not self.additive

    def export_own(self, out: Any, m: Any, built: Any, info: Any) -> dict | None:
        """For the "own" backend: write a library artifact into `out`; returns
        {"library": ..., "load": ...} or None when no library format holds it."""
        return None
