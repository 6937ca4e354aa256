"""bitfit: train only bias terms (Ben Zaken et al. 2022), our own code.

The paper trains every bias of the encoder; autopeft restricts it to the biases of the
chosen target sub-modules in the chosen layers, so BitFit composes with the same
layer/target choices as the other types, and with any other backend (it runs after them).
Trainable parameter count = sum over chosen layers and target modules of the bias length
(the module's output width), e.g. BERT with all six targets: L * (4h + i + h).
"""
from __future__ import annotations

from typing import Any

from autopeft.moduletypes.base import TARGETS, BuildContext, ModuleType, ParamSpec, fail
from autopeft.moduletypes.registry import register
from autopeft.moduletypes.shapes import target_shapes
from autopeft.moduletypes.targets import HAS_BIASES, module_names


class BitFit(ModuleType):
    name = "bitfit"
    doc = "BitFit: train only the bias terms (Ben Zaken et al. 2022)"
    params = (ParamSpec("targets", "targets", TARGETS),)
    mergeable = True  # it changes existing biases: nothing to merge, nothing added
    additive = True
    whole_fused = True  # one bias per output feature of c_attn: q, k, v only together

    def check(self, m: Any, info: Any, candidate: Any) -> None:
        if not HAS_BIASES.get(info.family, True):
            raise fail(candidate, f"{info.family} models have no bias terms in their linear "
                       "layers, so BitFit has nothing to train",
                       "drop bitfit for this model family, or use lora / ia3")

    def build_own(self, model: Any, m: Any, ctx: BuildContext) -> None:
        # names of the model as it is now (peft may have wrapped it)
        names = [n for n, _ in model.named_modules()]
        modules = dict(model.named_modules())
        for name in module_names(names, ctx.info.family, m.layers or (), m["targets"]):
            bias = getattr(modules[name], "bias", None)
            if bias is not None:
                bias.requires_grad_(True)

    def param_count(self, m: Any, info: Any, backend: str) -> int:
        return len(m.layers or ()) * sum(b for _, b, bias in target_shapes(info, m["targets"])
                                         if bias)

    def extra_flops(self, m: Any, info: Any, seq_len: int, backend: str,
                    num_labels: int) -> float:
        return 0.0  # elementwise only


register(BitFit())
