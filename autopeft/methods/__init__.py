"""Build a PEFT model from a Candidate. Each module type is a plug-in
(autopeft.moduletypes.<type>) that says how each backend builds it; this package joins them:

    type              backend                    how
    lora              peft (alone)               LoraConfig, target_modules = exact module names;
                                                 init pissa/olora from peft, the others ours
                      adapters (in a mixture)    LoRAConfig(attn_matrices, intermediate_lora,
                                                 output_lora, leave_out); no 'o' target there
    dora              peft (alone only)          LoraConfig(use_dora=True); magnitude re-set
                                                 after our inits
    rslora            peft (alone)               LoraConfig(use_rslora=True)
                      adapters (in a mixture)    LoRAConfig with alpha * sqrt(r)
    ia3               peft (alone)               IA3Config, ffn_out as feedforward_modules
                      adapters (in a mixture)    IA3Config(..., leave_out)
    prompt            peft                       PromptTuningConfig (RANDOM; "vocab" = copies of
                                                 sampled vocabulary embeddings, ours); combines
                                                 only with bitfit
    prefix            peft (alone, all layers)   PrefixTuningConfig (bottleneck > 0 = projection)
                      adapters (layer subset or  PrefixTuningConfig(flat, bottleneck_size,
                      in a mixture)              leave_out)
    adapter           adapters                   SeqBnConfig (pfeiffer) / DoubleSeqBnConfig
                                                 (houlsby), leave_out
    parallel_adapter  adapters                   ParBnConfig(scaling), leave_out
                      own (beside a serial       a parallel FFN adapter hooked around the FFN
                      adapter)                   (adapters cannot put both at one location)
    unipelt           adapters                   UniPELTConfig parts (gated prefix + serial
                                                 adapter + LoRA), leave_out
    mam               adapters                   MAMConfig parts (prefix, bottleneck 800 +
                                                 ParBnConfig), leave_out
    bitfit            own                        requires_grad on the chosen biases; composes
                                                 with any other backend
    full              own (alone only)           requires_grad on every weight: full fine-tuning
    (none)            -                          head only: frozen encoder, trainable head

Any mix of types in one Candidate (e.g. the AutoPEFT paper's adapter + parallel_adapter +
prefix on one layer set) is one AdapterHub ConfigUnion, plus our own parts.

On GPT-2 and Llama, adapters' prefix blocks run only under eager attention (adapters 1.3.0
drops them under sdpa: the logits do not move), so models built there with a prefix are
switched to eager attention.

Every built model has its base weights frozen (full fine-tuning: none) and its classifier
head (`classifier` for BERT, `score` for GPT-2/Llama) trainable. Building draws all randomness from `seed`: backend
initialisers run inside torch.random.fork_rng with that seed, ours use a torch.Generator, so
the caller's global RNG state is left as it was.

`validate` is pure Python; `build` imports torch, peft and adapters when called.
"""
from __future__ import annotations

import logging
from typing import Any

from autopeft.candidate import Candidate
from autopeft.methods._adapters import build_adapters, mixture_parts
from autopeft.methods._peft import build_peft
from autopeft.methods.built import Built
from autopeft.methods.validate import backend_for, validate
from autopeft.moduletypes import BuildContext, get

__all__ = ["build", "validate", "Built", "backend_for"]

logger = logging.getLogger(__name__)


def build(base: Any, candidate: Candidate, seed: int = 0) -> Built:
    """Put `candidate`'s modules into a fresh copy of `base` (an autopeft.models.BaseModel)."""
    from autopeft._imports import require

    info = base.info
    validate(candidate, info)
    torch = require("torch")
    if candidate.num_layers is None:
        candidate = Candidate(candidate.modules, candidate.hyper, info.num_layers)
    backend = backend_for(candidate)
    generator = torch.Generator().manual_seed(int(seed))
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    main = [m for m in candidate.modules if not get(m.type).additive]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        model = base.fresh()
        for p in model.parameters():
            p.requires_grad_(False)
        heads = tuple(h for h in info.head_names if hasattr(model, h))
        ctx = BuildContext(info, candidate, tuple(n for n, _ in model.named_modules()), heads,
                           generator, mixture_parts(main))
        if backend == "peft":
            model = build_peft(model, main[0], ctx)
        elif backend == "adapters":
            model = build_adapters(model, main, ctx)
        elif backend == "own":
            for m in main:
                get(m.type).build_own(model, m, ctx)
        for m in candidate.modules:  # BitFit: our own code, after whichever backend
            if get(m.type).additive:
                get(m.type).build_own(model, m, ctx)
        if backend != "peft":  # peft's modules_to_save already trains a copy of the head
            for h in heads:
                getattr(model, h).requires_grad_(True)
    built = Built(model=model, backend=backend, candidate=candidate, info=info, seed=int(seed),
                  head_names=heads)
    logger.info("built %s with %s: %d trainable parameters", candidate.summary(), backend,
                built.num_trainable())
    return built
