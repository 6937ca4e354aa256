"""Built: a model with a candidate's modules in place, and its trainable-weight checkpoints."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autopeft.candidate import Candidate
from autopeft.methods.validate import fail

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "trainable.safetensors"
META_FILE = "built.json"


@dataclass
class Built:
    """model: torch module, base frozen, modules in place, classifier head trainable.

    backend: "peft" | "adapters" | "own" | "none" — who built the (non-BitFit) modules
    (autopeft.moduletypes.backend_for).
    Only parameters with requires_grad are trained, saved and restored.
    """

    model: Any
    backend: str
    candidate: Candidate
    info: Any
    seed: int = 0
    head_names: tuple[str, ...] = ()

    def trainable_parameters(self) -> dict[str, Any]:
        return {n: p for n, p in self.model.named_parameters() if p.requires_grad}

    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.trainable_parameters().values())

    def save(self, directory: str | Path) -> Path:
        """Write the trainable weights (modules + head) and what they belong to."""
        from safetensors.torch import save_file

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        tensors = {n: p.detach().contiguous().cpu() for n, p in self.trainable_parameters().items()}
        tmp = out / (WEIGHTS_FILE + ".tmp")
        save_file(tensors, str(tmp))
        tmp.replace(out / WEIGHTS_FILE)
        meta = {"candidate": self.candidate.to_dict(), "candidate_key": self.candidate.key(),
                "backend": self.backend, "model": self.info.ref, "seed": self.seed,
                "names": sorted(tensors)}
        (out / META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True))
        logger.debug("saved %d trainable tensors to %s", len(tensors), out)
        return out

    def load_adapter_weights(self, directory: str | Path) -> None:
        """Load weights saved by `save` of a model built from the same candidate."""
        import torch
        from safetensors.torch import load_file

        src = Path(directory)
        if not (src / WEIGHTS_FILE).is_file():
            raise fail(self.candidate, f"no checkpoint at {str(src)!r} ({WEIGHTS_FILE} missing)",
                       "pass the directory that Built.save wrote")
        meta = json.loads((src / META_FILE).read_text()) if (src / META_FILE).is_file() else {}
        saved = Candidate.from_dict(meta["candidate"]) if "candidate" in meta else None
        if saved is not None and _modules_key(saved) != _modules_key(self.candidate):
            raise fail(self.candidate, f"the checkpoint at {str(src)!r} was saved for a different "
                       f"architecture: {saved.summary()}",
                       "build the same modules as the parent before loading its weights")
        tensors = load_file(str(src / WEIGHTS_FILE))
        params = self.trainable_parameters()
        missing = sorted(set(params) - set(tensors))
        extra = sorted(set(tensors) - set(params))
        if missing or extra:
            raise fail(self.candidate, f"checkpoint {str(src)!r} does not fit this model "
                       f"(missing {missing[:3]}, unexpected {extra[:3]})",
                       "build the same modules on the same base model as the parent")
        with torch.no_grad():
            for name, p in params.items():
                t = tensors[name]
                if t.shape != p.shape:
                    raise fail(self.candidate, f"checkpoint tensor {name} has shape "
                               f"{tuple(t.shape)}, the model expects {tuple(p.shape)}",
                               "build the same modules as the parent before loading its weights")
                p.copy_(t.to(p.dtype))


# Module parameters that change neither which weights exist nor their shapes, only how
# they are used in training (LoRA's alpha scales the update, dropout masks the input): a
# checkpoint is valid for any value of them. PBT explores exactly these (with the
# learning rate), so a child that copies its parent and perturbs them must load the
# parent's weights. Everything else (type, layers, targets, rank, size, init...) must match.
WEIGHT_NEUTRAL_PARAMS = frozenset({"alpha", "dropout"})


def _modules_key(c: Candidate) -> str:
    """Architecture identity: the modules, without the training hyperparameters (the
    candidate's or a module's own) and without the module parameters that leave the
    weights as they are."""
    from autopeft.candidate import ModuleConfig

    modules = tuple(
        ModuleConfig(m.type, {k: v for k, v in m.params.items()
                              if k not in WEIGHT_NEUTRAL_PARAMS}, m.layers)
        for m in c.modules)
    return Candidate(modules, {}, c.num_layers).architecture_key()
