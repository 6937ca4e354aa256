"""prompt: trainable soft tokens prepended to the input (Lester et al. 2021).

peft's PromptTuningConfig (RANDOM; "vocab" = copies of sampled vocabulary embeddings,
ours). No layers; it combines only with bitfit; it works on any model family.
"""
from __future__ import annotations

from typing import Any

from autopeft.moduletypes.base import BuildContext, ModuleType, ParamSpec, fail
from autopeft.moduletypes.lora import PEFT_ADAPTER
from autopeft.moduletypes.registry import register
from autopeft.moduletypes.shapes import base_flops


class Prompt(ModuleType):
    name = "prompt"
    doc = "prompt tuning: trainable soft tokens prepended to the input (Lester et al. 2021)"
    params = (
        ParamSpec("length", "int", 20, low=1, high=1024),
        ParamSpec("init", "choice", "random", ("random", "vocab"),
                  doc="random normal, or copies of sampled vocabulary embeddings"),
    )
    layered = False
    size_param = "length"
    needs_family = False  # no module names: soft tokens before the first layer

    def check_mixture(self, m: Any, info: Any, candidate: Any) -> None:
        raise fail(candidate, "prompt tuning can only be combined with bitfit",
                   "use prompt alone (peft), or prefix instead of prompt in the mixture")

    def alone_backend(self, m: Any, candidate: Any) -> str | None:
        return "peft"

    def peft_config(self, peft: Any, m: Any, ctx: BuildContext, common: dict) -> Any:
        return peft.PromptTuningConfig(num_virtual_tokens=int(m["length"]),
                                       prompt_tuning_init="RANDOM", **common)

    def after_peft(self, model: Any, m: Any, ctx: BuildContext) -> None:
        if m["init"] != "vocab":
            return
        import torch

        # prompt tokens start as copies of randomly sampled vocabulary embeddings (Lester et al.)
        words = model.get_input_embeddings().weight
        prompt = model.prompt_encoder[PEFT_ADAPTER].embedding.weight
        ids = torch.randint(0, words.shape[0], (prompt.shape[0],), generator=ctx.generator)
        with torch.no_grad():
            prompt.copy_(words[ids].to(prompt.dtype))

    def param_count(self, m: Any, info: Any, backend: str) -> int:
        return int(m["length"]) * info.hidden_size  # P soft tokens of the embedding width

    def extra_flops(self, m: Any, info: Any, seq_len: int, backend: str,
                    num_labels: int) -> float:
        # P more positions go through the whole model
        P = int(m["length"])
        return (base_flops(info, seq_len + P, num_labels) - base_flops(info, seq_len, num_labels)) \
            / seq_len


register(Prompt())
