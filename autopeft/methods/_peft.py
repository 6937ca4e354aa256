"""The peft backend: one module per candidate (besides BitFit), whose plug-in gives the
peft config (autopeft.moduletypes.<type>.peft_config) and its own initialisation after
wrapping (after_peft).

Target modules are given to peft as the list of exact full module names (resolved by
autopeft.moduletypes.targets), so peft's suffix matching can never pick up `pooler.dense` or
`attention.output.dense` by accident; we do not use `layers_to_transform`, which in
peft 0.21.2 matches the first integer after `layers_pattern` in a name and is therefore
only as exact as that pattern.
"""
from __future__ import annotations

from typing import Any

from autopeft.candidate import ModuleConfig
from autopeft.moduletypes import BuildContext, get


def peft_config(m: ModuleConfig, ctx: BuildContext, **common: Any) -> Any:
    """The peft config of module `m` (also what a configs-only export saves)."""
    from autopeft._imports import require

    peft = require("peft")
    return get(m.type).peft_config(peft, m, ctx,
                                   {"task_type": "SEQ_CLS", "modules_to_save": list(ctx.heads),
                                    **common})


def build_peft(model: Any, m: ModuleConfig, ctx: BuildContext) -> Any:
    peft = __import__("peft")
    model = peft.get_peft_model(model, peft_config(m, ctx))
    get(m.type).after_peft(model, m, ctx)
    return model
