"""Measured cost of a built model: tensor counts, FlopCounterMode FLOPs, paired latency
(the latency method and its statistics: autopeft.cost.latency).

A CostMeter measures candidates against one base model and owns what that needs between
trials; the evaluator creates one at set-up and closes it with itself.
"""
from __future__ import annotations

import gc
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

from autopeft.candidate import Candidate, ModuleConfig
from autopeft.cost.analytic import SEQ_LEN, _with_layers, is_mergeable, module_extra_flops
from autopeft.moduletypes import backend_for, get
from autopeft.cost.latency import LatencyEstimate, paired_ratio
from autopeft.records import Cost

if TYPE_CHECKING:  # pragma: no cover
    from autopeft.models import BaseModel

logger = logging.getLogger(__name__)

# Latency is timed on one request: a single sequence of SEQ_LEN tokens (what a served
# classifier answers), the same input every time (autopeft.cost.latency has the method)
BATCH = 1
LATENCY_THREADS = 1  # CPU threads while timing: the steadiest figure on a shared machine
# FLOP counts and latency estimates kept per architecture (the bound keeps a long study's
# worker flat)
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


def _time_pairs(model: Any, base_model: Any, inputs: dict[str, Any], *, limit: float | None,
                threads: int | None, settings: dict[str, Any]) -> LatencyEstimate:
    """autopeft.cost.latency.paired_ratio over forwards of the candidate and the base on one
    fixed input, with the thread count pinned (CPU) and the garbage collector paused (its
    pauses would land on one forward of a pair)."""
    import torch

    cuda = inputs["input_ids"].device.type == "cuda"

    def forward(m: Any) -> Any:
        def run() -> None:
            m(**inputs)
            if cuda:
                torch.cuda.synchronize()  # the clock must see the kernels finish
        return run

    before = torch.get_num_threads()
    gc_was = gc.isenabled()
    # one CPU thread runs the whole forward in this thread, so its CPU time is the forward's
    # time without the time other processes held the core; otherwise wall time
    one_thread = not cuda and (threads or before) == 1
    clocks = {"clock": time.thread_time if one_thread else time.perf_counter,
              "wall": time.perf_counter}
    try:
        if threads and not cuda:
            torch.set_num_threads(threads)
        gc.collect()
        gc.disable()
        with torch.no_grad():
            return paired_ratio(forward(model), forward(base_model), limit=limit,
                                **{**clocks, **settings})
    finally:
        if gc_was:
            gc.enable()
        torch.set_num_threads(before)


def _latency_key(candidate: Candidate) -> str:
    """The architecture as latency sees it: initialisations change weights, not shapes."""
    modules = tuple(ModuleConfig(m.type, {k: v for k, v in m.params.items()
                                          if k not in ("init", "init_scale")}, m.layers)
                    for m in candidate.modules)
    return Candidate(modules, {}, candidate.num_layers).key()


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
    own, and two LRUs of at most `flop_cache_size` entries per architecture: FLOP counts and
    latency estimates. Both depend on the architecture only, not on weights, init or
    hyperparameters, so a candidate seen before (by PBT, a re-proposal, a second
    initialisation) is neither counted nor timed again. `close()` frees all of it.

    Latency (autopeft.cost.latency): `latency_threads` CPU threads while timing (None keeps
    the caller's), and `latency_settings` passed on to paired_ratio (min_pairs, max_pairs,
    budget_s, confidence, warmup, and `clock`, which tests replace).
    """

    def __init__(self, base: "BaseModel", *, flop_cache_size: int = FLOP_CACHE_SIZE,
                 latency_threads: int | None = LATENCY_THREADS,
                 latency_settings: dict[str, Any] | None = None) -> None:
        self.base = base
        self.flop_cache_size = max(0, int(flop_cache_size))
        self.latency_threads = latency_threads
        self.latency_settings = dict(latency_settings or {})
        self._moved: dict[str, Any] = {}
        self._stats: dict[tuple, _BaseStats] = {}
        self._flops: OrderedDict[tuple, float] = OrderedDict()
        self._latency: OrderedDict[tuple, LatencyEstimate] = OrderedDict()

    def __enter__(self) -> "CostMeter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Free the base copy and every cached count (the meter can be used again)."""
        self._moved.clear()
        self._stats.clear()
        self._flops.clear()
        self._latency.clear()

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

    def _cached(self, cache: OrderedDict, key: tuple, compute: Any) -> Any:
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        value = compute()
        if self.flop_cache_size:
            cache[key] = value
            while len(cache) > self.flop_cache_size:
                cache.popitem(last=False)
        return value

    def measure(self, built: Any, *, seq_len: int = SEQ_LEN, batch: int = BATCH,
                latency: bool = True, latency_limit: float | None = None) -> Cost:
        """Measure a built candidate against the base model on a fixed reference batch.

        Parameters are counted from the model's tensors. FLOPs are counted with
        FlopCounterMode on one reference sequence (every op here is per sequence, so a batch
        costs exactly `batch` times as much). Merged FLOPs subtract the analytic unmerged
        FLOPs of the modules that merge (exact for LoRA: its two matmuls are all it adds).

        Latency (`latency=False` skips it: every latency field None): a candidate whose
        modules all merge deploys merged, with the base's architecture, so its increase is
        0 and nothing is timed (latency_basis "merged"). Otherwise pairs of forwards of the
        candidate and the base on one fixed (batch x seq_len) request, alternating, until
        the 99 % interval of the median pair ratio lies on one side of `latency_limit` (the
        experiment's max_latency_ratio; None: the first look) or the cap is reached
        (autopeft.cost.latency). The base is timed inside every pair on purpose: a base time
        cached from earlier drifts with the machine's load (we saw ratios of -75 %); the
        *ratio* of an architecture is cached instead.
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
        mergeable = is_mergeable(candidate)
        arch = (Candidate(candidate.modules, {}, candidate.num_layers).key(), built.backend,
                seq_len, str(device))
        lat: LatencyEstimate | None = None
        with _EvalMode(model):
            flops = self._cached(self._flops, arch, lambda: _forward_flops(
                model, _reference_batch(model, info.vocab_size, 1, seq_len)))
            if latency and mergeable:
                lat = MERGED
            elif latency:
                def timing() -> LatencyEstimate:
                    inputs = _reference_batch(model, info.vocab_size, batch, seq_len)
                    with _EvalMode(base_model):
                        return _time_pairs(model, base_model, inputs, limit=latency_limit,
                                           threads=self.latency_threads,
                                           settings=self.latency_settings)
                key = (_latency_key(candidate), built.backend, seq_len, batch, str(device),
                       latency_limit)
                lat = self._cached(self._latency, key, timing)
                logger.debug("latency %s: %+.3f [%+.3f, %+.3f] over %d pairs in %.1fs",
                             candidate.summary(), lat.ratio, lat.low, lat.high, lat.pairs,
                             lat.seconds)
        base_fpt = stats.flops_per_seq / seq_len
        extra = (flops - stats.flops_per_seq) / seq_len
        if mergeable:
            merged = 0.0
        else:
            backend = backend_for(candidate)
            mergeable_flops = sum(module_extra_flops(m, info, seq_len, backend, base.num_labels)
                                  for m in candidate.modules if get(m.type).mergeable)
            merged = max(0.0, extra - mergeable_flops)
        return Cost(trainable_params=trainable, base_params=stats.params,
                    params_ratio=trainable / stats.params, base_flops_per_token=base_fpt,
                    extra_flops_per_token=extra, flops_ratio=extra / base_fpt,
                    flops_ratio_merged=merged / base_fpt, mergeable=mergeable,
                    head_params=head, **latency_fields(lat, merged=lat is MERGED))


# the latency of a candidate that deploys merged: the base's own, exactly
MERGED = LatencyEstimate(ratio=0.0, low=0.0, high=0.0, pairs=0, confidence=1.0, seconds=0.0)


def latency_fields(lat: LatencyEstimate | None, *, merged: bool = False) -> dict[str, Any]:
    """The Cost fields of a latency estimate (all None when it was not measured)."""
    if lat is None:
        return {}
    return {"latency_ratio": lat.ratio, "latency_low": lat.low, "latency_high": lat.high,
            "latency_pairs": lat.pairs, "latency_confidence": lat.confidence,
            "latency_basis": "merged" if merged else "measured"}


def measure(built: Any, base: "BaseModel", *, seq_len: int = SEQ_LEN, batch: int = BATCH,
            latency: bool = True, latency_limit: float | None = None,
            latency_settings: dict[str, Any] | None = None) -> Cost:
    """One measurement with a CostMeter of its own, freed afterwards (nothing is kept between
    calls; a caller measuring many candidates keeps a CostMeter instead)."""
    with CostMeter(base, flop_cache_size=0, latency_settings=latency_settings) as meter:
        return meter.measure(built, seq_len=seq_len, batch=batch, latency=latency,
                             latency_limit=latency_limit)
