"""The registry of module types: register(plugin), get(name), all_types(), and the views
the rest of autopeft reads (MODULE_TYPES) and the backend choice (backend_for).

Like PEFT's register_peft_method, a plug-in registers itself when its module is imported;
autopeft.moduletypes imports every plug-in file of its package, and other packages may
register their own types the same way before building spaces or candidates.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Iterator

from autopeft.moduletypes.base import TARGETS, ModuleType

_TYPES: dict[str, ModuleType] = {}
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_KINDS = ("int", "float", "choice", "targets", "bool")


def register(plugin: ModuleType) -> ModuleType:
    """Add a module type; refuses a second type of the same name and a malformed schema."""
    if not isinstance(plugin, ModuleType):
        raise TypeError(f"register() takes a ModuleType instance, got {plugin!r}")
    name = plugin.name
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"module type name {name!r} must be lower-case letters, digits and _")
    if name in _TYPES:
        raise ValueError(f"module type {name!r} is already registered "
                         f"(by {type(_TYPES[name]).__module__}); pick another name")
    names = [p.name for p in plugin.params]
    if len(set(names)) != len(names):
        raise ValueError(f"module type {name!r} lists a parameter twice: {names}")
    if plugin.size_param is not None and plugin.size_param not in names:
        raise ValueError(f"module type {name!r}: size_param {plugin.size_param!r} is not one "
                         f"of its parameters {names}")
    for p in plugin.params:
        if p.kind not in _KINDS:
            raise ValueError(f"module type {name!r}: parameter {p.name!r} has kind {p.kind!r}, "
                             f"not one of {_KINDS}")
        if p.kind == "targets" and not set(p.default) <= set(TARGETS):
            raise ValueError(f"module type {name!r}: default targets {p.default} not in {TARGETS}")
    _TYPES[name] = plugin
    return plugin


def get(name: str) -> ModuleType:
    try:
        return _TYPES[name]
    except KeyError:
        raise KeyError(f"unknown module type {name!r}; known: {sorted(_TYPES)}") from None


def all_types() -> tuple[ModuleType, ...]:
    return tuple(_TYPES.values())


class _View(Mapping):
    """A read-only, always current mapping over the registry (name -> value)."""

    def __init__(self, value: Any = None) -> None:
        self._value = value

    def __getitem__(self, name: str) -> Any:
        plugin = _TYPES[name]
        return plugin if self._value is None else self._value(plugin)

    def __iter__(self) -> Iterator[str]:
        return iter(list(_TYPES))

    def __len__(self) -> int:
        return len(_TYPES)

    def __repr__(self) -> str:
        return f"MODULE_TYPES({sorted(_TYPES)})"


# name -> ModuleType, as the DSL and Candidate have always read it
MODULE_TYPES: Mapping[str, ModuleType] = _View()


def backend_for(candidate: Any) -> str:
    """Which backend builds the candidate's modules other than the additive ones (BitFit):
    "peft" or "own" when one module's plug-in says so for itself alone, AdapterHub
    "adapters" for everything else; "own" for additive modules only, "none" for head only."""
    main = [m for m in candidate.modules if not get(m.type).additive]
    if not main:
        return "own" if candidate.modules else "none"
    if len(main) == 1:
        backend = get(main[0].type).alone_backend(main[0], candidate)
        if backend is not None:
            return backend
    return "adapters"

# name -> whether the type folds into the base weights (read by autopeft.cost)
MERGEABLE: Mapping[str, bool] = _View(lambda plugin: plugin.mergeable)
