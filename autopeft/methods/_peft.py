"""The peft backend: lora, ia3, prompt, and prefix at all layers, one module per candidate.

Target modules are given to peft as the list of exact full module names (resolved by
autopeft.methods.targets), so peft's suffix matching can never pick up `pooler.dense` or
`attention.output.dense` by accident; we do not use `layers_to_transform`, which in
peft 0.21.2 matches the first integer after `layers_pattern` in a name and is therefore
only as exact as that pattern.
"""
from __future__ import annotations

import logging
from typing import Any

from autopeft.candidate import Candidate, ModuleConfig
from autopeft.methods.init import Projection, apply_init
from autopeft.methods.targets import module_names
from autopeft.methods.validate import fail

logger = logging.getLogger(__name__)

ADAPTER_NAME = "default"


def build_peft(model: Any, candidate: Candidate, m: ModuleConfig, info: Any, heads: list[str],
               generator: Any) -> Any:
    peft = __import__("peft")
    names = [n for n, _ in model.named_modules()]
    common = {"task_type": "SEQ_CLS", "modules_to_save": list(heads)}
    if m.type == "lora":
        targets = module_names(names, info.family, m.layers, m["targets"])
        _require_targets(candidate, m, targets)
        init = m["init"]
        config = peft.LoraConfig(
            r=int(m["rank"]), lora_alpha=float(m["alpha"]), lora_dropout=float(m["dropout"]),
            target_modules=targets,
            init_lora_weights=init if init in ("pissa", "olora") else True,
            fan_in_fan_out=info.family == "gpt2",  # GPT-2's Conv1D stores (in, out)
            **common)
    elif m.type == "ia3":
        targets = module_names(names, info.family, m.layers, m["targets"])
        _require_targets(candidate, m, targets)
        # IA3 scales the *input* of feed-forward down projections, the output of the others
        ff = module_names(names, info.family, m.layers, ("ffn_out",)) \
            if "ffn_out" in m["targets"] else []
        config = peft.IA3Config(target_modules=targets, feedforward_modules=ff,
                                fan_in_fan_out=info.family == "gpt2", **common)
    elif m.type == "prompt":
        config = peft.PromptTuningConfig(num_virtual_tokens=int(m["length"]),
                                         prompt_tuning_init="RANDOM", **common)
    elif m.type == "prefix":
        bottleneck = int(m["bottleneck"])
        config = peft.PrefixTuningConfig(num_virtual_tokens=int(m["length"]),
                                         prefix_projection=bottleneck > 0,
                                         encoder_hidden_size=bottleneck or info.hidden_size,
                                         **common)
    else:  # pragma: no cover - backend_for never routes other types here
        raise fail(candidate, f"{m.type} is not a peft module type", "report this as a bug")
    model = peft.get_peft_model(model, config)
    if m.type == "lora":
        for module in model.modules():
            if hasattr(module, "lora_A") and ADAPTER_NAME in getattr(module, "lora_A", {}):
                apply_init(Projection(module.lora_A[ADAPTER_NAME].weight),
                           Projection(module.lora_B[ADAPTER_NAME].weight),
                           m["init"] if m["init"] not in ("pissa", "olora") else "default",
                           float(m["init_scale"]), generator)
    if m.type == "prompt" and m["init"] == "vocab":
        _init_prompt_from_vocab(model, generator)
    return model


def _require_targets(candidate: Candidate, m: ModuleConfig, targets: list[str]) -> None:
    # validate() catches this from the config already; this guards models whose module
    # names differ from their family's (a renamed fork), so peft never silently adapts nothing
    if not targets:
        raise fail(candidate, f"{m.type} targets {list(m['targets'])} match no module in layers "
                   f"{list(m.layers or ())} of this model",
                   "check the model family's module names (autopeft.methods.targets)")


def _init_prompt_from_vocab(model: Any, generator: Any) -> None:
    """Prompt tokens start as copies of randomly sampled vocabulary embeddings (Lester et al.)."""
    import torch

    words = model.get_input_embeddings().weight
    prompt = model.prompt_encoder[ADAPTER_NAME].embedding.weight
    ids = torch.randint(0, words.shape[0], (prompt.shape[0],), generator=generator)
    with torch.no_grad():
        prompt.copy_(words[ids].to(prompt.dtype))
