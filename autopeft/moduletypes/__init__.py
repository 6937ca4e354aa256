"""The PEFT module types autopeft knows: one plug-in file per type, and their registry.

Each type is one ModuleType object (autopeft/moduletypes/<type>.py): its parameters and
defaults, its validation, how each backend builds it, its parameter and FLOP formulas,
whether it merges and how it exports (autopeft.moduletypes.base describes the hooks).
Every public module of this package other than the infrastructure below is a plug-in and
is imported here, so adding a type is adding one file (and one entry in
tests/moduletype_cases.py, which drives every per-type test):

    from autopeft.moduletypes.base import ModuleType, ParamSpec
    from autopeft.moduletypes.registry import register

    class MyType(ModuleType):
        name = "mytype"
        params = (ParamSpec("size", "int", 8, low=1, high=4096),)
        ...
    register(MyType())

Registry API: register(plugin), get(name) -> ModuleType, all_types() -> tuple,
MODULE_TYPES (read-only name -> ModuleType mapping), backend_for(candidate).
The DSL (autopeft.space) and Candidate read TARGETS, INITS, ParamSpec, ModuleType,
MODULE_TYPES and HYPERPARAMETERS from here. Pure Python: no torch at import time.

Sub-module targets are model-independent names; autopeft.moduletypes.targets maps them
onto each model family's real module names (BERT `attention.self.query`, GPT-2 `c_attn`,
Llama `q_proj`...):

    q, k, v   attention query / key / value projections
    o         attention output projection
    ffn_in    feed-forward up projection (BERT `intermediate.dense`, Llama `up_proj`+`gate_proj`)
    ffn_out   feed-forward down projection (BERT `output.dense`, Llama `down_proj`)
"""
from __future__ import annotations

import importlib
import pkgutil

from autopeft.moduletypes.base import (ACTIVATIONS, INITS, LORA_DATA_FREE_INITS, TARGETS,
                                       BuildContext, ModuleType, ParamSpec, fail)
from autopeft.moduletypes.registry import (MERGEABLE, MODULE_TYPES, all_types, backend_for,
                                           get, register)

__all__ = ["TARGETS", "INITS", "LORA_DATA_FREE_INITS", "ACTIVATIONS", "ParamSpec", "ModuleType",
           "BuildContext", "MODULE_TYPES", "MERGEABLE", "HYPERPARAMETERS", "register", "get",
           "all_types", "backend_for", "fail"]

# modules of this package that are not plug-ins
_INFRASTRUCTURE = {"base", "registry", "targets", "init", "shapes"}


def _import_plugins() -> None:
    # sorted, so registration order (and all_types()) is the same on every machine
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if not info.name.startswith("_") and info.name not in _INFRASTRUCTURE:
            importlib.import_module(f"{__name__}.{info.name}")


_import_plugins()

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
