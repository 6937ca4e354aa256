"""A Candidate: one concrete PEFT configuration, resolved against a model's layer count.

This is what a space sample turns into, what the methods layer builds, what storage keeps
and what export writes. Its canonical dict form (`to_dict`) is plain JSON:

    {"modules": [{"type": "lora", "layers": [0, 1, 2, 3, 4, 5], "targets": ["q", "v"],
                  "rank": 8, "alpha": 16.0, "dropout": 0.0, "init": "default",
                  "init_scale": 1.0}],
     "hyper": {"learning_rate": 0.001},
     "num_layers": 6}

Every module carries every parameter of its type (defaults filled in from
autopeft.moduletypes), `layers` as sorted absolute indices (absent for `prompt`),
`targets` as a sorted tuple in TARGETS order. A candidate with no modules is the
"head only" baseline: frozen encoder, trainable classifier head.

A module of a mixture may carry its own training hyperparameters (`"hyper":
{"learning_rate": 0.01}`, only learning_rate and weight_decay: MODULE_HYPER): its
weights then form their own optimizer parameter group (autopeft.methods.groups); the
candidate's `hyper` trains everything else, the classifier head included. The key is
written only when a module has such values, so other candidates keep their form and key.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from autopeft.moduletypes import MODULE_TYPES, TARGETS

_SCALED_INITS = ("zero", "xavier", "kaiming", "gaussian")
# the hyperparameters one optimizer parameter group can have of its own (batch size and
# warmup are one per training run)
MODULE_HYPER = ("learning_rate", "weight_decay")


@dataclass(frozen=True)
class ModuleConfig:
    type: str
    params: Mapping[str, Any]
    layers: tuple[int, ...] | None = None  # None for modules without layers (prompt)
    hyper: Mapping[str, Any] = field(default_factory=dict)  # its own parameter group

    def __post_init__(self) -> None:
        if self.type not in MODULE_TYPES:
            raise ValueError(f"unknown module type {self.type!r}; known: {sorted(MODULE_TYPES)}")
        spec = MODULE_TYPES[self.type]
        params = dict(self.params)
        unknown = set(params) - set(spec.param_names)
        if unknown:
            raise ValueError(f"module {self.type!r} has no parameter(s) {sorted(unknown)}; "
                             f"known: {list(spec.param_names)}")
        for p in spec.params:
            params.setdefault(p.name, p.default)
            if p.kind == "targets":
                params[p.name] = tuple(t for t in TARGETS if t in set(params[p.name]))
        object.__setattr__(self, "params", params)
        hyper = dict(self.hyper)
        if set(hyper) - set(MODULE_HYPER):
            raise ValueError(f"module {self.type!r}: only {list(MODULE_HYPER)} can be set per "
                             f"module, got {sorted(set(hyper) - set(MODULE_HYPER))}")
        object.__setattr__(self, "hyper", {k: float(v) for k, v in hyper.items()})
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(sorted(int(i) for i in self.layers)))

    def __getitem__(self, key: str) -> Any:
        return self.params[key]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if self.layers is not None:
            out["layers"] = list(self.layers)
        for k, v in self.params.items():
            out[k] = list(v) if isinstance(v, tuple) else v
        if self.hyper:
            out["hyper"] = dict(self.hyper)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ModuleConfig":
        d = dict(d)
        typ = d.pop("type")
        layers = d.pop("layers", None)
        hyper = d.pop("hyper", None) or {}
        return cls(typ, d, None if layers is None else tuple(layers), hyper)

    def summary(self) -> str:
        spec = MODULE_TYPES[self.type]
        bits = []
        for p in spec.params:
            v = self.params[p.name]
            # the scale only means something for the scaled inits
            if p.name == "init_scale" and self.params.get("init") not in _SCALED_INITS:
                continue
            if isinstance(v, tuple):
                v = "+".join(v)
            bits.append(f"{p.name}={v}")
        if self.layers is not None:
            bits.append(f"layers={_ranges(self.layers)}")
        bits += [f"{_SHORT.get(k, k)}={v:.3g}" for k, v in self.hyper.items()]
        return f"{self.type}({', '.join(bits)})"


@dataclass(frozen=True)
class Candidate:
    modules: tuple[ModuleConfig, ...]
    hyper: Mapping[str, Any] = field(default_factory=dict)
    num_layers: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "modules": [m.to_dict() for m in self.modules],
            "hyper": dict(self.hyper),
            "num_layers": self.num_layers,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Candidate":
        return cls(
            tuple(ModuleConfig.from_dict(m) for m in d.get("modules", [])),
            dict(d.get("hyper", {})),
            d.get("num_layers"),
        )

    def key(self) -> str:
        """A stable hash of the canonical form (same config -> same key)."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def architecture_key(self) -> str:
        """The key of the modules alone, without any training hyperparameter (the
        candidate's or a module's own): what a warm start must match."""
        bare = tuple(ModuleConfig(m.type, m.params, m.layers) for m in self.modules)
        return Candidate(bare, {}, self.num_layers).key()

    @property
    def types(self) -> tuple[str, ...]:
        return tuple(m.type for m in self.modules)

    def summary(self) -> str:
        if not self.modules:
            return "head-only"
        return " + ".join(m.summary() for m in self.modules)


_SHORT = {"learning_rate": "lr", "weight_decay": "wd"}


def _ranges(idx: tuple[int, ...]) -> str:
    """[0,1,2,5] -> '0-2,5'"""
    if not idx:
        return "none"
    parts, start, prev = [], idx[0], idx[0]
    for i in idx[1:] + (None,):  # type: ignore[operator]
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ",".join(parts)
