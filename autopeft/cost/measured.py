"""Measured cost of a built model: tensor counts, FlopCounterMode FLOPs, paired latency.

A CostMeter measures candidates against one base model and owns what that needs between
trials; the evaluator creates one at set-up and closes it with itself.
"""
from __future__ import annotations

import logging
import statistics
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

from autopeft.candidate import Candidate
from autopeft.cost.analytic import SEQ_LEN, _with_layers, is_mergeable, module_extra_flops
from autopeft.moduletypes import backend_for, get
from autopeft.records import Cost

if TYPE_CHECKING:  # pragma: no cover
    from autopeft.models import BaseModel

logger = logging.getLogger(__name__)

BATCH = 8
REPEATS = 3  # timed forwards per model (alternating candidate/base); medians compared
LATENCY_BUDGET_S = 0.6  # stop timing after this long (keeps measure() near 1 s on MiniLM)
# FLOP counts kept per architecture (a float each; the bound keeps a long study's worker flat)
FLOP_CACHE_SIZE = 512


@dataclass(frozen=True)
class _BaseStats:
    params: int          # base parameters, head excluded
    flops_per_seq: float  # forward FLOPs of one reference sequence


def split_params(model: Any, head_names: Iterable[str], *, trainable_only: bool) -> tuple[int, int]:
    """(non-head, head) parameter counts; a parameter is in the head when a component of its
    name is a head name (peft's copy is `classifier.modules_to_save.default.weight`)."""
    heads = set(head_names)
    body = head = 0
    for name, p in model.named_parameters():
        if trainable_only and not p.requires_grad:
            continue
        if heads.intersection(name.split(".")):
            head += p.numel()
        else:
            body += p.numel()
    return body, head


def _reference_batch(model: Any, vocab_size: int, batch: int, seq_len: int) -> dict[str, Any]:
    """A fixed batch of token ids (seeded, never the pad id) and a full attention mask."""
    import torch

    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1, max(vocab_size, 2), (batch, seq_len), generator=gen)
    pad = getattr(getattr(model, "config", None), "pad_token_id", None)
    if pad is not None:
        ids[ids == pad] = (pad + 1) % vocab_size
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device)}


def _flop_mapping() -> dict[Any, Any]:
    """FlopCounterMode knows the CUDA attention kernels but not the CPU one that SDPA picks
    here; count it with torch's own attention formula so prefixes and prompts show up."""
    import torch
    from torch.utils.flop_counter import flop_registry, sdpa_flop_count

    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is None or op in flop_registry:
        return {}

    def cpu_sdpa(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
        return sdpa_flop_count(query_shape, key_shape, value_shape)

    return {op: cpu_sdpa}


def _forward_flops(model: Any, inputs: dict[str, Any]) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False, custom_mapping=_flop_mapping())
    # FlopCounterMode's module tracker hooks every input that requires grad and fails on
    # AdapterHub's flat prefix (a view of a parameter made under no_grad); the count needs
    # no gradients, so switch them off for this forward and restore them afterwards
    trainable = [p for p in model.parameters() if p.requires_grad]
    try:
        for p in trainable:
            p.requires_grad_(False)
        with torch.no_grad(), counter:
            model(**inputs)
    finally:
        for p in trainable:
            p.requires_grad_(True)
    return float(counter.get_total_flops())


def _paired_seconds(model: Any, base_model: Any, inputs: dict[str, Any], repeats: int,
                    budget_s: float) -> tuple[float, float]:
    """Median forward time of the candidate and of the base, timed in alternation so that a
    change in the machine's load hits both alike. Stops after `repeats` pairs, or earlier
    once `budget_s` seconds are spent (at least one pair): a loaded machine costs precision,
    not time."""
    import torch

    cuda = inputs["input_ids"].device.type == "cuda"

    def timed(m: Any) -> float:
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        m(**inputs)
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    cand, base = [], []
    start = time.perf_counter()
    with torch.no_grad():
        for _ in range(max(1, repeats)):
            cand.append(timed(model))
            base.append(timed(base_model))
            if time.perf_counter() - start > budget_s:
                break
    return statistics.median(cand), statistics.median(base)


class _EvalMode:
    """Eval mode for the duration, then every submodule's own mode back."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.modes: list[tuple[Any, bool]] = []

    def __enter__(self) -> Any:
        self.modes = [(m, m.training) for m in self.model.modules()]
        self.model.eval()
        return self.model

    def __exit__(self, *exc: object) -> None:
        for m, training in self.modes:
            m.training = training


class CostMeter:
    """Measures built candidates against one base model (an autopeft.models.BaseModel).

    Owns, between calls: the base model's parameter and FLOP counts (per seq_len and
    device), a copy of the base moved to the candidates' device when that is not the base's
    own, and an LRU of at most `flop_cache_size` FLOP counts per architecture (FLOPs depend
    on the architecture only, not on weights, init or hyperparameters, so a candidate seen
    before, by PBT or a re-proposal, is not counted again). `close()` frees all of it.
    """

    def __init__(self, base: "BaseModel", *, flop_cache_size: int = FLOP_CACHE_SIZE) -> None:
        self.base = base
        self.flop_cache_size = max(0, int(flop_cache_size))
        self._moved: dict[str, Any] = {}
        self._stats: dict[tuple, _BaseStats] = {}
        self._flops: OrderedDict[tuple, float] = OrderedDict()

    def __enter__(self) -> "CostMeter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Free the base copy and every cached count (the meter can be used again)."""
        self._moved.clear()
        self._stats.clear()
        self._flops.clear()

    def _base_model_on(self, device: Any) -> Any:
        model = self.base.model
        if next(model.parameters()).device != device:
            if str(device) not in self._moved:
                self._moved[str(device)] = self.base.fresh().to(device).eval()
            model = self._moved[str(device)]
        return model

    def _base_stats(self, base_model: Any, seq_len: int) -> _BaseStats:
        base = self.base
        key = (seq_len, str(next(base_model.parameters()).device))
        cached = self._stats.get(key)
        if cached is None:
            with _EvalMode(base_model):
                one = _reference_batch(base_model, base.info.vocab_size, 1, seq_len)
                flops = _forward_flops(base_model, one)
            params, _ = split_params(base_model, base.info.head_names, trainable_only=False)
            cached = self._stats[key] = _BaseStats(params, flops)
            logger.debug("base %s: %d params, %.4g FLOPs per %d-token sequence", base.info.ref,
                         params, flops, seq_len)
        return cached

    def _architecture_flops(self, key: tuple, model: Any, vocab_size: int, seq_len: int) -> float:
        if key in self._flops:
            self._flops.move_to_end(key)
            return self._flops[key]
        flops = _forward_flops(model, _reference_batch(model, vocab_size, 1, seq_len))
        if self.flop_cache_size:
            self._flops[key] = flops
            while len(self._flops) > self.flop_cache_size:
                self._flops.popitem(last=False)
        return flops

    def measure(self, built: Any, *, seq_len: int = SEQ_LEN, batch: int = BATCH,
                latency: bool = True, repeats: int = REPEATS,
                latency_budget_s: float = LATENCY_BUDGET_S) -> Cost:
        """Measure a built candidate against the base model on a fixed reference batch.

        Parameters are counted from the model's tensors. FLOPs are counted with
        FlopCounterMode on one reference sequence (every op here is per sequence, so a batch
        costs exactly `batch` times as much). Latency: `repeats` forwards of the
        (batch x seq_len) reference batch through the candidate and the base, alternating,
        medians compared, within `latency_budget_s` (at least one pair). The base is timed
        again each call on purpose: on a shared machine a cached base time drifts with the
        load (we saw ratios of -75% against a base timed a minute earlier). Merged FLOPs
        subtract the analytic unmerged FLOPs of the modules that merge (exact for LoRA: its
        two matmuls are all it adds).
        """
        base = self.base
        model = built.model
        device = next(model.parameters()).device
        info = base.info
        head_names = tuple(getattr(built, "head_names", ()) or info.head_names)
        base_model = self._base_model_on(device)
        stats = self._base_stats(base_model, seq_len)
        trainable, head = split_params(model, head_names, trainable_only=True)
        candidate = _with_layers(built.candidate, info)
        arch = (Candidate(candidate.modules, {}, candidate.num_layers).key(), built.backend,
                seq_len, str(device))
        lat = None
        with _EvalMode(model):
            flops = self._architecture_flops(arch, model, info.vocab_size, seq_len)
            if latency:
                inputs = _reference_batch(model, info.vocab_size, batch, seq_len)
                with _EvalMode(base_model):
                    t_cand, t_base = _paired_seconds(model, base_model, inputs, repeats,
                                                     latency_budget_s)
                lat = (t_cand - t_base) / t_base
        base_fpt = stats.flops_per_seq / seq_len
        extra = (flops - stats.flops_per_seq) / seq_len
        if is_mergeable(candidate):
            merged = 0.0
        else:
            backend = backend_for(candidate)
            mergeable = sum(module_extra_flops(m, info, seq_len, backend, base.num_labels)
                            for m in candidate.modules if get(m.type).mergeable)
            merged = max(0.0, extra - mergeable)
        return Cost(trainable_params=trainable, base_params=stats.params,
                    params_ratio=trainable / stats.params, base_flops_per_token=base_fpt,
                    extra_flops_per_token=extra, flops_ratio=extra / base_fpt,
                    flops_ratio_merged=merged / base_fpt, latency_ratio=lat,
                    mergeable=is_mergeable(candidate), head_params=head)


def measure(built: Any, base: "BaseModel", *, seq_len: int = SEQ_LEN, batch: int = BATCH,
            latency: bool = True, repeats: int = REPEATS,
            latency_budget_s: float = LATENCY_BUDGET_S) -> Cost:
    """One measurement with a CostMeter of its own, freed afterwards (nothing is kept between
    calls; a caller measuring many candidates keeps a CostMeter instead)."""
    with CostMeter(base, flop_cache_size=0) as meter:
        return meter.measure(built, seq_len=seq_len, batch=batch, latency=latency,
                             repeats=repeats, latency_budget_s=latency_budget_s)
