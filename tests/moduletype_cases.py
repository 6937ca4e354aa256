"""THE list of module types for the per-type tests: one entry per registered type.

Adding a module type = its plug-in file (autopeft/moduletypes/<type>.py) + one entry here.
tests/test_moduletypes.py fails until every registered type has one. Each entry drives:
building on MiniLM with trainable weights exactly at `sites` (test_methods_build), analytic
== measured parameters and FLOPs (test_cost), the configs-only export round trip
(test_export), and the trained export reloaded by the plain library (test_export_reload).
"""
from __future__ import annotations

from dataclasses import dataclass

from autopeft.candidate import ModuleConfig as M

Q, K, V = "attention.self.query", "attention.self.key", "attention.self.value"
O, FI, FO = "attention.output.dense", "intermediate.dense", "output.dense"
EVERY = "every parameter"  # `sites` of full fine-tuning


def at(layers, *wheres):
    return {f"L{i}:{w}" for i in layers for w in wheres}


@dataclass(frozen=True)
class TypeCase:
    type: str
    modules: tuple                # on MiniLM (6 layers)
    sites: object                 # fixtures_models.site_of names (head included), or EVERY
    backend: str                  # Built.backend
    identity: bool                # logits equal the base model's before training
    library: str | None           # configs-only export: peft / adapters / None
    complete: bool                # ... whose library artifact alone holds everything
    trained_library: str | None   # a trained export reloads with: peft/adapters/transformers
    lr: float = 1e-2              # a learning rate at which 6 steps lower the loss


TYPES = [
    TypeCase("lora", (M("lora", {}, [1, 3]),), at([1, 3], f"{Q}/lora", f"{V}/lora") | {"head"},
             "peft", True, "peft", True, "peft"),
    TypeCase("dora", (M("dora", {"rank": 4, "targets": ["q", "ffn_out"]}, [0, 2]),),
             at([0, 2], f"{Q}/lora", f"{Q}/magnitude", f"{FO}/lora", f"{FO}/magnitude")
             | {"head"}, "peft", True, "peft", True, "peft"),
    TypeCase("rslora", (M("rslora", {"rank": 16, "targets": ["k"]}, [4]),),
             at([4], f"{K}/lora") | {"head"}, "peft", True, "peft", True, "peft"),
    TypeCase("ia3", (M("ia3", {}, [0, 1, 2]),),
             at([0, 1, 2], f"{K}/ia3", f"{V}/ia3", f"{FO}/ia3") | {"head"}, "peft", True,
             "peft", True, "peft"),
    TypeCase("bitfit", (M("bitfit", {"targets": ["q", "ffn_in"]}, [4]),),
             at([4], f"{Q}/bias", f"{FI}/bias") | {"head"}, "own", True, None, False, None),
    TypeCase("prompt", (M("prompt", {"length": 5}),), {"prompt", "head"}, "peft", False,
             "peft", True, "peft", lr=5e-2),
    TypeCase("prefix", (M("prefix", {"length": 5}, range(6)),), {"prompt", "head"}, "peft",
             False, "peft", True, "peft", lr=5e-2),
    TypeCase("adapter", (M("adapter", {"size": 16, "init": "zero"}, [0, 3]),),
             at([0, 3], "output/bn") | {"head"}, "adapters", True, "adapters", True, "adapters"),
    TypeCase("parallel_adapter", (M("parallel_adapter", {"size": 16}, [1, 2]),),
             at([1, 2], "output/bn") | {"head"}, "adapters", True, "adapters", True, "adapters"),
    TypeCase("unipelt", (M("unipelt", {"size": 8, "prefix_length": 4}, [5]),),
             at([5], f"{Q}/lora", f"{Q}/lora-gate", f"{V}/lora", f"{V}/lora-gate", "output/bn",
                "output/bn-gate", "attention.self/prefix-gate") | {"prefix-pool", "head"},
             "adapters", False, "adapters", True, "adapters"),
    TypeCase("mam", (M("mam", {"size": 16, "prefix_length": 4}, [0, 1]),),
             at([0, 1], "output/bn") | {"prefix-pool", "head"}, "adapters", False, "adapters",
             True, "adapters", lr=3e-3),  # its prefix MLP (800 wide) overshoots at 1e-2
    TypeCase("full", (M("full", {}),), EVERY, "own", True, None, False, "transformers",
             lr=1e-4),  # every weight moves: a fine-tuning learning rate
]
