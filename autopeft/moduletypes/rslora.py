"""rslora: rank-stabilised LoRA, scaling alpha/sqrt(r) instead of alpha/r (Kalajdzievski
2023, "A Rank Stabilization Scaling Factor for Fine-Tuning with LoRA", arXiv:2312.03732).

Same shapes, parameters and FLOPs as LoRA, and it merges the same way (only the scalar
differs). Alone: peft's LoraConfig(use_rslora=True). In a mixture: AdapterHub's LoRAConfig
scales by alpha/r, so it gets alpha·sqrt(r), which is exactly alpha/sqrt(r) after its
division by r.
"""
from __future__ import annotations

import math
from typing import Any

from autopeft.moduletypes.base import INITS, ParamSpec
from autopeft.moduletypes.lora import LoRA
from autopeft.moduletypes.registry import register


class RsLoRA(LoRA):
    name = "rslora"
    doc = "rsLoRA: LoRA scaled by alpha/sqrt(r) (Kalajdzievski 2023)"
    # pissa/olora rewrite W with the alpha/r scale in mind (peft warns against rslora there)
    params = tuple(ParamSpec("init", "choice", "default", INITS, doc="initialisation, see INITS")
                   if p.name == "init" else p for p in LoRA.params)

    def peft_extra(self, m: Any) -> dict:
        return {"use_rslora": True}

    def adapters_alpha(self, m: Any) -> float:
        return float(m["alpha"]) * math.sqrt(int(m["rank"]))


register(RsLoRA())
