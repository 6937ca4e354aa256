"""dora: weight-decomposed LoRA, W' = m · (W + s·B·A) / ||W + s·B·A||_c (Liu et al. 2024,
"DoRA", eq. 5), with a trainable magnitude m per output feature of each adapted matrix.

peft builds it (LoraConfig(use_dora=True), peft 0.21.2), alone only: AdapterHub adapters
1.3.0 has no DoRA, so a mixture is refused. It merges: W' is one matrix again (DoRA,
arXiv:2402.09353, abstract: "avoiding any additional inference overhead"; peft's
merge_and_unload folds it).

Cost as peft 0.21.2 computes it (autopeft/cost checks it against FlopCounterMode):
  parameters  LoRA's r·(in + out) per adapted matrix + `out` for the magnitude vector
  FLOPs       LoRA's 2·r·(in + out) per token, plus, once per forward, the LoRA weight B·A
              that the column norm needs; peft forms it as lora_B(lora_A(I_in)) (its
              get_lora_weight, "errors with FSDP" otherwise), i.e. 2·in·r·(in + out) FLOPs.
              Per input token of a T-token sequence (autopeft.cost's reference forward is
              one sequence): 2·r·(in + out)·(1 + in / T). The norm itself and the rescaling
              are elementwise (free by the matmul-only convention). In eval mode and with
              dropout 0 peft reuses the base output, so W·x is not computed twice.
"""
from __future__ import annotations

from typing import Any

from autopeft.moduletypes.base import INITS, BuildContext, ParamSpec, fail
from autopeft.moduletypes.lora import PEFT_ADAPTER, LoRA
from autopeft.moduletypes.registry import register
from autopeft.moduletypes.shapes import lora_shapes


class DoRA(LoRA):
    name = "dora"
    doc = "DoRA: LoRA with a learned magnitude per output feature (Liu et al. 2024); peft only"
    # pissa/olora decompose W themselves; peft 0.21.2 does not combine them with DoRA here
    params = tuple(ParamSpec("init", "choice", "default", INITS, doc="initialisation, see INITS")
                   if p.name == "init" else p for p in LoRA.params)
    mergeable = True
    mixture_parts = ()

    def peft_extra(self, m: Any) -> dict:
        return {"use_dora": True}

    def check_mixture(self, m: Any, info: Any, candidate: Any) -> None:
        raise fail(candidate, "DoRA is built by peft, which builds it only as the candidate's "
                   "one module (besides bitfit); AdapterHub adapters has no DoRA",
                   "use dora alone (bitfit may join it), or lora in the mixture")

    def after_peft(self, model: Any, m: Any, ctx: BuildContext) -> None:
        import torch

        super().after_peft(model, m, ctx)
        if m["init"] == "default":
            return
        # peft set m = ||W + s·B·A||_c with its own B = 0; our init moved B (or A): recompute
        # it so that the built module starts as DoRA defines it
        with torch.no_grad():
            for module in model.modules():
                dora = getattr(module, "lora_magnitude_vector", {})
                if PEFT_ADAPTER in dora:
                    dora[PEFT_ADAPTER].update_layer(
                        base_layer=module.get_base_layer(),
                        lora_A=module.lora_A[PEFT_ADAPTER].weight,
                        lora_B=module.lora_B[PEFT_ADAPTER].weight,
                        scaling=module.scaling[PEFT_ADAPTER])

    def param_count(self, m: Any, info: Any, backend: str) -> int:
        magnitude = sum(b for _, b, _ in lora_shapes(info, m["targets"], backend))
        return super().param_count(m, info, backend) + len(m.layers or ()) * magnitude

    def extra_flops(self, m: Any, info: Any, seq_len: int, backend: str,
                    num_labels: int) -> float:
        r = int(m["rank"])
        return len(m.layers or ()) * sum(2.0 * r * (a + b) * (1.0 + a / seq_len)
                                         for a, b, _ in lora_shapes(info, m["targets"], backend))


register(DoRA())
