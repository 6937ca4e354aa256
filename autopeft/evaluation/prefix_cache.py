"""Frozen-prefix activation cache: train a candidate on the hidden states entering its
lowest adapted layer, computed once per worker instead of once per step.

A candidate whose modules all sit in layers >= L leaves the embeddings and layers 0..L-1
exactly as in the base model.  In eval mode those layers map an example to the same
hidden states in every trial, so a worker computes them once (per examples, L,
max_length and precision) and every trial with the same L reuses them: training and
validation run only layers L.. and the head (Embedding Recycling, Saad-Falcon et al.,
EACL 2023 Findings; AdapterDrop, Rücklé et al. 2021 for the same idea in training).

What changes, and what does not:
  - eval mode: the cached path's logits equal the uncached path's (tests check it);
  - training: the frozen layers run without dropout (the cache is computed in eval mode).
    That is the only difference; experiments/bench_trial.py measures its effect.

Which candidates qualify (decided per module type, then checked on the built model):
  lora, adapter, parallel_adapter, ia3, bitfit: act only inside their layers, so
      L = the lowest layer any of them names; the head-only candidate gets L = all layers;
  prompt (soft tokens at the input), prefix, unipelt, mam (prefix pools; peft's prefix
      covers every layer): no cache, the trial runs as before;
  and only on BERT-family encoders (embeddings + encoder.layer): decoders' heads find the
      last token from input_ids, which a cached input no longer carries.
After the build, every trainable parameter must live in a layer >= L or the head; if one
does not, the trial runs uncached.

Padding and the attention mask: states are stored unpadded, one [length, hidden] block per
example in one flat tensor, so any batching (length-grouped or not) re-pads a batch to its
own width with zeros and passes the same attention mask as the uncached path.  Pad
positions never reach a real token (they are masked keys, and everything else is per
token), so zeros there change nothing.

Memory: tokens x hidden x bytes (fp32: 4).  A worker holds at most `max_bytes` of states
over all L; a set that alone is over the bound is not built and the trial runs uncached.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterable

from autopeft._imports import require
from autopeft.candidate import Candidate
from autopeft.methods.targets import LAYER_PATTERNS

log = logging.getLogger(__name__)

CACHEABLE_TYPES = frozenset({"lora", "adapter", "parallel_adapter", "ia3", "bitfit"})
FAMILIES = frozenset({"bert"})


def frozen_below(candidate: Candidate, info: Any) -> int:
    """L: the candidate touches nothing below layer L (0 = no cache for it)."""
    if info.family not in FAMILIES:
        return 0
    lowest = int(info.num_layers)  # head only: every layer is frozen
    for m in candidate.modules:
        if m.type not in CACHEABLE_TYPES or m.layers is None:
            return 0
        if m.layers:
            lowest = min(lowest, min(m.layers))
    return lowest


def trainable_below(model: Any, L: int, family: str) -> list[str]:
    """Names of trainable parameters outside layers >= L and outside the head."""
    pattern = LAYER_PATTERNS[family]
    bad = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        m = pattern.match(name)
        if m is not None:
            if int(m.group(1)) < L:
                bad.append(name)
        elif "embeddings" in name or ".encoder." in name:
            bad.append(name)
    return bad


def backbone_of(model: Any) -> Any:
    """The encoder module with .embeddings and .encoder.layer (BertModel and kin)."""
    for _, module in model.named_modules():
        enc = getattr(module, "encoder", None)
        if hasattr(module, "embeddings") and hasattr(enc, "layer"):
            return module
    raise ValueError("no encoder with embeddings and encoder.layer in this model")


# ---------------------------------------------------------------- the states

@dataclass
class States:
    """Hidden states entering layer L for some examples, unpadded in one flat tensor."""

    layer: int
    flat: Any                 # [tokens, hidden]
    offsets: Any              # int64 [rows + 1]: example row r is flat[offsets[r]:offsets[r+1]]
    row: dict[int, int]       # example index -> row
    seconds: float = 0.0      # wall seconds the build took
    cpu_seconds: float = 0.0  # CPU seconds of this process during the build

    @property
    def nbytes(self) -> int:
        return int(self.flat.numel() * self.flat.element_size())

    def collate(self, idx: Any, labels: Any, device: Any) -> dict[str, Any]:
        """One batch re-padded to its own longest example, with its attention mask."""
        torch = require("torch")
        rows = [self.row[int(i)] for i in idx]
        starts = self.offsets[rows]
        lengths = self.offsets[[r + 1 for r in rows]] - starts
        width = int(lengths.max())
        pos = torch.arange(width)
        mask = pos[None, :] < lengths[:, None]
        # gather every real token's state into its slot; pads stay zero
        out = self.flat.new_zeros((len(rows), width, self.flat.shape[1]))
        out[mask] = self.flat[(starts[:, None] + pos[None, :])[mask]]
        batch = {"inputs_embeds": out, "attention_mask": mask.long(),
                 "labels": labels[torch.as_tensor(idx, dtype=torch.int64)]}
        return {k: v.to(device) for k, v in batch.items()}


class _Reached(Exception):
    """Raised by a hook on layer L to stop the forward with layer L's input."""

    def __init__(self, hidden: Any) -> None:
        super().__init__("reached")
        self.hidden = hidden


def _stop_at(module: Any, args: tuple, kwargs: dict) -> None:
    hidden = args[0] if args else kwargs["hidden_states"]
    raise _Reached(hidden)


def compute_states(base_model: Any, enc: Any, L: int, idx: Iterable[int], *,
                   autocast: Any, batch_size: int = 128, device: Any = "cpu") -> States:
    """Run the frozen part (embeddings + layers < L, eval mode) once over the examples."""
    import time

    from autopeft import taskdata

    torch = require("torch")
    t0, c0 = time.perf_counter(), time.process_time()
    backbone = backbone_of(base_model)
    layers = backbone.encoder.layer
    idx = torch.as_tensor(sorted(set(int(i) for i in idx)), dtype=torch.int64)
    by_length = idx[torch.argsort(enc.lengths[idx], stable=True)]
    was_training = base_model.training
    base_model.eval()
    hook = layers[L].register_forward_pre_hook(_stop_at, with_kwargs=True) \
        if L < len(layers) else None
    pieces, order = [], []
    try:
        with torch.no_grad():
            for start in range(0, by_length.numel(), batch_size):
                chunk = by_length[start:start + batch_size]
                batch = taskdata.collate(enc, chunk, device)
                kwargs = {"input_ids": batch["input_ids"],
                          "attention_mask": batch["attention_mask"]}
                if "token_type_ids" in batch:
                    kwargs["token_type_ids"] = batch["token_type_ids"]
                try:
                    with autocast():
                        hidden = backbone(**kwargs)[0]  # L == all layers: encoder output
                except _Reached as stop:
                    hidden = stop.hidden
                hidden = hidden.float().cpu()
                for j, i in enumerate(chunk.tolist()):
                    pieces.append(hidden[j, : int(enc.lengths[i])])
                    order.append(i)
    finally:
        if hook is not None:
            hook.remove()
        base_model.train(was_training)
    lengths = torch.tensor([p.shape[0] for p in pieces], dtype=torch.int64)
    offsets = torch.zeros(len(pieces) + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(lengths, 0)
    flat = torch.cat(pieces) if pieces else torch.zeros((0, 0))
    return States(L, flat, offsets, {i: r for r, i in enumerate(order)},
                  time.perf_counter() - t0, time.process_time() - c0)


def state_bytes(enc: Any, idx: Iterable[int], hidden: int, bytes_per_value: int = 4) -> int:
    """What States over idx would take: tokens x hidden x bytes."""
    torch = require("torch")
    idx = torch.as_tensor(sorted(set(int(i) for i in idx)), dtype=torch.int64)
    return int(enc.lengths[idx].sum()) * hidden * bytes_per_value


class ActivationCache:
    """A worker's cached states, keyed by (L, max_length, precision), within max_bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self.entries: OrderedDict[tuple, States] = OrderedDict()
        self.stats = {"builds": 0, "hits": 0, "over_bound": 0}

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self.entries.values())

    def get(self, key: tuple, base_model: Any, enc: Any, L: int, idx: Any, *,
            hidden: int, autocast: Any, batch_size: int, device: Any) -> States | None:
        """States covering idx at layer L, built if needed; None when over the bound."""
        wanted = set(int(i) for i in idx)
        have = self.entries.get(key)
        if have is not None and wanted <= have.row.keys():
            self.entries.move_to_end(key)
            self.stats["hits"] += 1
            return have
        if have is not None:
            wanted |= set(have.row)  # grow the entry to the union (e.g. the test split)
        need = state_bytes(enc, wanted, hidden)
        if need > self.max_bytes:
            self.stats["over_bound"] += 1
            log.info("activation cache for layer %d would take %.0f MB (bound %.0f MB): "
                     "training uncached", L, need / 2**20, self.max_bytes / 2**20)
            return None
        self.entries.pop(key, None)
        while self.entries and self.nbytes + need > self.max_bytes:
            self.entries.popitem(last=False)  # least recently used first
        states = compute_states(base_model, enc, L, wanted, autocast=autocast,
                                batch_size=batch_size, device=device)
        self.entries[key] = states
        self.stats["builds"] += 1
        log.info("activation cache: layer %d, %d examples, %.1f MB, built in %.1fs", L,
                 len(states.row), states.nbytes / 2**20, states.seconds)
        return states


# ---------------------------------------------------------------- the trial model

def skip_frozen(model: Any, L: int) -> None:
    """Make the trial model start at layer L: it takes inputs_embeds = layer L's input.

    The embeddings and layers < L are swapped for pass-throughs (their weights are frozen
    and no longer used); parameter names of layers >= L and the head do not change, so
    checkpoints and best-state copies are unaffected.
    """
    torch = require("torch")

    class Given(torch.nn.Module):
        """Stands in for the embeddings: the cached states come in as inputs_embeds."""

        def forward(self, input_ids: Any = None, inputs_embeds: Any = None,
                    **_: Any) -> Any:
            if inputs_embeds is None:
                raise ValueError("a cached-prefix model takes inputs_embeds, not input_ids")
            return inputs_embeds

    class PassThrough(torch.nn.Module):
        """Stands in for a frozen layer below L: its output is already in the input."""

        def forward(self, hidden_states: Any, *args: Any, **kwargs: Any) -> tuple:
            return (hidden_states,)

    backbone = backbone_of(model)
    backbone.embeddings = Given()
    for i in range(L):
        backbone.encoder.layer[i] = PassThrough()
