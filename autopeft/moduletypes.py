"""The PEFT module types autopeft knows, their parameters, defaults and allowed values.

One table shared by the DSL (which validates spaces against it) and the methods layer
(which builds models from candidates). Pure Python: no torch here.

Sub-module targets are model-independent names; the methods layer maps them onto each
model family's real module names (BERT `attention.self.query`, GPT-2 `c_attn`, Llama
`q_proj`...):

    q, k, v   attention query / key / value projections
    o         attention output projection
    ffn_in    feed-forward up projection (BERT `intermediate.dense`, Llama `up_proj`+`gate_proj`)
    ffn_out   feed-forward down projection (BERT `output.dense`, Llama `down_proj`)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TARGETS = ("q", "k", "v", "o", "ffn_in", "ffn_out")

# Initialisations for modules that own new weights (adapters, LoRA).  Semantics, shared by
# every backend (see autopeft.methods.init):
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


@dataclass(frozen=True)
class ModuleType:
    name: str
    doc: str
    params: tuple[ParamSpec, ...]
    layered: bool = True  # has an insertion-layer choice
    # A size parameter whose value 0 means "module off" (AutoPEFT paper style levels)
    size_param: str | None = None
    components: tuple[str, ...] = field(default=())  # for combinations: the parts it mixes

    def param(self, name: str) -> ParamSpec | None:
        for p in self.params:
            if p.name == name:
                return p
        return None

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)


def _init(default: str = "default", extra: tuple[str, ...] = ()) -> ParamSpec:
    return ParamSpec("init", "choice", default, INITS + extra, doc="initialisation, see INITS")


_INIT_SCALE = ParamSpec("init_scale", "float", 1.0, low=0.1, high=1.0,
                        doc="multiplies the init's std/bound; in [0.1, 1.0]")

MODULE_TYPES: dict[str, ModuleType] = {
    t.name: t
    for t in (
        ModuleType(
            "lora",
            "LoRA: W + (alpha/r)·B·A on the chosen linear sub-modules (Hu et al. 2021)",
            (
                ParamSpec("rank", "int", 8, low=1, high=4096, doc="r, the rank of B·A"),
                ParamSpec("alpha", "float", 16.0, low=1e-6, high=1e6, doc="scaling numerator"),
                ParamSpec("dropout", "float", 0.0, low=0.0, high=0.9),
                ParamSpec("targets", "targets", ("q", "v")),
                _init(extra=LORA_DATA_FREE_INITS),
                _INIT_SCALE,
            ),
            size_param="rank",
        ),
        ModuleType(
            "adapter",
            "serial bottleneck adapter (Houlsby et al. 2019; Pfeiffer et al. 2021 placement)",
            (
                ParamSpec("size", "int", 64, low=1, high=8192, doc="bottleneck width"),
                ParamSpec("placement", "choice", "pfeiffer", ("pfeiffer", "houlsby"),
                          doc="pfeiffer: after the FFN only; houlsby: after attention and FFN"),
                ParamSpec("activation", "choice", "relu", ACTIVATIONS),
                _init(),
                _INIT_SCALE,
            ),
            size_param="size",
        ),
        ModuleType(
            "parallel_adapter",
            "parallel bottleneck adapter beside the FFN (He et al. 2022)",
            (
                ParamSpec("size", "int", 64, low=1, high=8192),
                ParamSpec("scaling", "float", 4.0, low=1e-6, high=1e6),
                ParamSpec("activation", "choice", "relu", ACTIVATIONS),
                _init(),
                _INIT_SCALE,
            ),
            size_param="size",
        ),
        ModuleType(
            "prefix",
            "prefix tuning: trainable key/value prefixes in attention (Li & Liang 2021)",
            (
                ParamSpec("length", "int", 10, low=1, high=1024, doc="number of prefix tokens"),
                ParamSpec("bottleneck", "int", 0, low=0, high=8192,
                          doc="reparametrisation MLP width; 0 = no reparametrisation"),
            ),
            size_param="length",
        ),
        ModuleType(
            "prompt",
            "prompt tuning: trainable soft tokens prepended to the input (Lester et al. 2021)",
            (
                ParamSpec("length", "int", 20, low=1, high=1024),
                ParamSpec("init", "choice", "random", ("random", "vocab"),
                          doc="random normal, or copies of sampled vocabulary embeddings"),
            ),
            layered=False,
            size_param="length",
        ),
        ModuleType(
            "ia3",
            "IA3: learned rescaling of keys, values and FFN activations (Liu et al. 2022)",
            (ParamSpec("targets", "targets", ("k", "v", "ffn_out")),),
        ),
        ModuleType(
            "bitfit",
            "BitFit: train only the bias terms (Ben Zaken et al. 2022)",
            (ParamSpec("targets", "targets", TARGETS),),
        ),
        ModuleType(
            "unipelt",
            "UniPELT: gated LoRA + prefix + serial adapter (Mao et al. 2022)",
            (
                ParamSpec("rank", "int", 8, low=1, high=4096),
                ParamSpec("alpha", "float", 16.0, low=1e-6, high=1e6),
                ParamSpec("prefix_length", "int", 10, low=1, high=1024),
                ParamSpec("size", "int", 16, low=1, high=8192, doc="adapter bottleneck width"),
            ),
            components=("lora", "prefix", "adapter"),
        ),
        ModuleType(
            "mam",
            "Mix-and-Match: prefix tuning + scaled parallel FFN adapter (He et al. 2022)",
            (
                ParamSpec("prefix_length", "int", 30, low=1, high=1024),
                ParamSpec("size", "int", 64, low=1, high=8192),
                ParamSpec("scaling", "float", 4.0, low=1e-6, high=1e6),
            ),
            components=("prefix", "parallel_adapter"),
        ),
    )
}

# Hyperparameters a space may search beside the modules (hp.<name> decisions).
HYPERPARAMETERS: dict[str, ParamSpec] = {
    p.name: p
    for p in (
        ParamSpec("learning_rate", "float", 1e-3, low=1e-7, high=1.0),
        ParamSpec("weight_decay", "float", 0.0, low=0.0, high=1.0),
        ParamSpec("warmup_ratio", "float", 0.0, low=0.0, high=0.5),
        ParamSpec("batch_size", "int", 32, low=1, high=4096),
    )
}
