"""full: full fine-tuning, every weight of the model trains. The reference the PEFT types
are measured against ("how close to full fine-tuning"), not a PEFT method.

Built by our own code: requires_grad on every parameter (embeddings, every layer, norms,
BERT's pooler, the head). It is the candidate's only module. Cost: trainable parameters =
every base parameter (head apart, as for every type), so params_ratio is exactly 1.0; it
adds no FLOPs and no latency (the fine-tuned model has the base's architecture), so it
counts as mergeable: there is nothing left to merge. Export with trained weights: the whole
model in transformers' own format (save_pretrained: config.json + model.safetensors), which
AutoModelForSequenceClassification.from_pretrained loads as it is; it is not a PEFT adapter,
and autopeft_weights/ is not written beside it (it would be a second copy of every weight).
"""
from __future__ import annotations

from typing import Any

from autopeft.moduletypes.base import BuildContext, ModuleType, fail
from autopeft.moduletypes.registry import register
from autopeft.moduletypes.shapes import base_param_count


class Full(ModuleType):
    name = "full"
    doc = "full fine-tuning: every weight trains (the reference, not a PEFT method)"
    params = ()
    layered = False
    mergeable = True
    needs_family = False  # names no sub-module
    weights_in_library_artifact = True

    def check(self, m: Any, info: Any, candidate: Any) -> None:
        if len(candidate.modules) > 1:
            raise fail(candidate, "full fine-tuning trains every weight already, so it is the "
                       "candidate's only module",
                       "drop the other modules, or drop full")

    def alone_backend(self, m: Any, candidate: Any) -> str | None:
        return "own"

    def build_own(self, model: Any, m: Any, ctx: BuildContext) -> None:
        for p in model.parameters():
            p.requires_grad_(True)

    def param_count(self, m: Any, info: Any, backend: str) -> int:
        return base_param_count(info)

    def extra_flops(self, m: Any, info: Any, seq_len: int, backend: str,
                    num_labels: int) -> float:
        return 0.0

    def export_own(self, out: Any, m: Any, built: Any, info: Any) -> dict | None:
        if built is None:
            return None  # nothing but the candidate describes an untrained full fine-tuning
        built.model.save_pretrained(str(out))
        return {"library": "transformers",
                "load": "transformers.AutoModelForSequenceClassification.from_pretrained("
                        "<this folder>)  (the tokenizer: from <model>)"}


register(Full())
