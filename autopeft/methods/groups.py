"""Optimizer parameter groups: one per module that has its own learning rate.

The mixture rule of the DSL (autopeft.space): with `select: any` an entry may have its own
learning rate and weight decay (ModuleConfig.hyper). Its weights then form their own AdamW
parameter group; everything else (the classifier head, the modules without values of
their own) trains with the candidate's values. As before, weights with fewer than two
dimensions (biases, LayerNorm, IA3 scales) never get weight decay.

Each group carries `lr_scale` = its learning rate / the candidate's, so the training loop
keeps one schedule (warmup, decay) and multiplies it per group.

Which module a trainable weight belongs to is read from its name: the backends put their
weights under names that mark the kind of block (measured on BERT, GPT-2 and Llama builds
by tests/test_recipes.py). Two modules of one type cannot be told apart this way, which is
why the DSL refuses own hyperparameters on two entries of one type.
"""
from __future__ import annotations

from typing import Any, Mapping

from autopeft.exceptions import TrialFailedError

# (part of a parameter name, the types that own it in priority order): the first part
# found in a name decides; the first of its types present in the candidate owns the weight
MARKERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (".autopeft_parallel.", ("parallel_adapter",)),       # ours (beside a serial adapter)
    ("prefix_gates", ("unipelt",)),
    ("prefix_tuning", ("prefix", "unipelt", "mam")),      # adapters' prefix pool
    ("prompt_encoder", ("prefix", "prompt")),             # peft prefix / prompt tuning
    (".loras.", ("lora", "rslora", "ia3", "unipelt")),    # adapters' LoRA and IA3 blocks
    ("lora_", ("lora", "dora", "rslora")),                # peft: lora_A/B, DoRA's magnitude
    ("ia3_", ("ia3",)),                                   # peft IA3: ia3_l
    (".adapters.", ("adapter", "parallel_adapter", "unipelt", "mam")),  # bottlenecks
)


def owner(name: str, types: tuple[str, ...], head_names: tuple[str, ...]) -> str | None:
    """The module type a trainable weight belongs to, or None (head and the rest)."""
    parts = name.split(".")
    if any(h in parts for h in head_names):
        return None
    for mark, owners in MARKERS:
        if mark in name:
            return next((t for t in owners if t in types), None)
    # a trainable weight of the base model itself: a bias that BitFit switched on
    return "bitfit" if "bitfit" in types else None


def param_groups(built: Any, settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    """AdamW parameter groups for a built candidate (autopeft.methods.Built), given the
    trial's `settings` (learning_rate, weight_decay: the candidate's values)."""
    named = [(n, p) for n, p in built.model.named_parameters() if p.requires_grad]
    lr, wd = float(settings["learning_rate"]), float(settings["weight_decay"])
    own = {m.type: m for m in built.candidate.modules if m.hyper}
    buckets: dict[str | None, list[Any]] = {None: []}
    if own:
        types = tuple(m.type for m in built.candidate.modules)
        heads = tuple(built.head_names) or tuple(getattr(built.info, "head_names", ()))
        for name, p in named:
            t = owner(name, types, heads)
            buckets.setdefault(t if t in own else None, []).append(p)
    else:
        buckets[None] = [p for _, p in named]
    groups = []
    for t, params in buckets.items():
        hyper = own[t].hyper if t is not None else {}
        if t is not None and not params:
            raise TrialFailedError(f"no trainable weight of the {t} module was found, so its "
                                   "own learning rate cannot be applied (a backend naming "
                                   "its weights in a new way: see autopeft.methods.groups)")
        scale = float(hyper.get("learning_rate", lr)) / lr if lr > 0 else 1.0
        decay = float(hyper.get("weight_decay", wd))
        groups.append({"params": [p for p in params if p.ndim >= 2], "weight_decay": decay,
                       "lr_scale": scale, "module": t})
        groups.append({"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0,
                       "lr_scale": scale, "module": t})
    # the candidate's own two groups always exist (as before); empty module halves go
    return [g for g in groups if g["params"] or g["module"] is None]
