"""ProxyEvaluator: train one candidate on the proxy task and return its validation metric.

One evaluator lives in a worker and serves many trials.  Its first trial (or `setup()`)
reads the data, loads the base model and tokenises once (from the on-disk cache when it
exists); every later trial only builds the candidate on a fresh copy of the in-memory base
weights (BaseModel.fresh(), inside autopeft.methods.build) and trains it:

    validate → build → (warm start) → cost → train with periodic validation → Metrics

The training loop is deliberately lean (no HF Trainer, autopeft/evaluation/trainloop.py):
AdamW over the trainable parameters, linear warmup then linear decay, length-grouped
batches with dynamic padding, validation every `eval_every` steps reported to the Reporter
(which may prune; intermediate ones on a stratified `rung_examples` subset), early stopping
with `patience`.  The metric returned is the best state's full-validation score, and the
weights at that point are the ones checkpointed and, at full fidelity, scored on the test
split.

A candidate that adapts only layers >= L trains on cached layer-L inputs
(autopeft/evaluation/prefix_cache.py): computed once per worker, reused by every trial with
the same L, bounded by `frozen_cache_mb`.

Randomness: the data order comes from a torch.Generator seeded with the trial seed; the
dropout masks come from torch's global RNG, seeded with the trial seed inside
torch.random.fork_rng so the caller's RNG state is left untouched.  Same seed, same
metrics.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Any, Mapping

from autopeft import taskdata
from autopeft._imports import require
from autopeft.candidate import Candidate
from autopeft.config import ExperimentConfig
from autopeft.evaluation import prefix_cache
from autopeft.evaluation.base import Evaluator, Reporter
from autopeft.evaluation.trainloop import CachedSource, TrainLoop, bf16_pays
from autopeft.exceptions import (CandidateError, ConfigError, FatalError,
                                 MissingDependencyError, TrialFailedError)
from autopeft.methods.groups import param_groups
from autopeft.records import Cost, EvalRequest, Metrics

log = logging.getLogger(__name__)


@dataclass
class _Setup:
    """What a worker keeps in memory between trials."""

    key: tuple
    raw: taskdata.RawData
    splits: dict[str, Any]
    base: Any                      # autopeft.models.BaseModel
    encoded: dict[int, Any]        # max_length -> taskdata.Encoded
    device: Any
    seconds: float
    meter: Any = None              # autopeft.cost.CostMeter of `base`, freed by close()
    tasks: Any = None              # multitask.TaskSet of a multi-task experiment, else None


class ProxyEvaluator(Evaluator):
    """The default evaluator: real training of the candidate on the configured task."""

    def __init__(self, experiment: Mapping[str, Any]) -> None:
        self.config = ExperimentConfig.from_dict(experiment)
        self._setup: _Setup | None = None
        # how often the expensive steps ran in this worker (tests and benchmarks read them)
        self.stats = {"setups": 0, "tokenisations": 0, "trials": 0}
        self._activations: prefix_cache.ActivationCache | None = None

    # ------------------------------------------------------------------ set-up
    def setup(self, config: ExperimentConfig | None = None) -> _Setup:
        """Load data and model once per worker (idempotent for the same model and data)."""
        cfg = config or self.config
        key = (cfg.model, cfg.trust_remote_code, repr(cfg.data), repr(cfg.tasks),
               cfg.resources.gpus > 0)
        if self._setup is not None and self._setup.key == key:
            return self._setup
        if self._setup is not None:
            log.warning("model or data changed between trials; setting up again")
            self.close()
        t0 = time.perf_counter()
        try:
            torch = require("torch")
            from autopeft import models

            tasks = None
            if cfg.tasks:  # one joint dataset, one head per task (multitask.py)
                from autopeft.evaluation.multitask import load_tasks

                tasks = load_tasks(cfg)
                raw, splits = tasks.raw, tasks.splits
            else:
                raw = taskdata.load_examples(cfg.data, file=cfg.source)
                splits = taskdata.make_splits(raw.labels, cfg.data, file=cfg.source)
            base = models.load_base(cfg.model, num_labels=raw.num_labels,
                                    trust_remote_code=cfg.trust_remote_code, seed=cfg.seed)
        except (ConfigError, MissingDependencyError) as exc:
            raise FatalError(f"the experiment cannot be set up: {exc}") from exc
        device = _device(torch, cfg)
        if (cfg.proxy.bf16 or cfg.full.bf16) and not bf16_pays(torch, device, True):
            log.warning("this %s has no bf16 units: bf16 is ignored, training in fp32",
                        "GPU" if device.type == "cuda" else "CPU")
        from autopeft.cost import CostMeter

        self._setup = _Setup(key, raw, splits, base, {}, device, time.perf_counter() - t0,
                             CostMeter(base), tasks)
        self.stats["setups"] += 1
        log.info("worker set up in %.1fs: %d examples, %d classes, model %s on %s",
                 self._setup.seconds, len(raw.texts), raw.num_labels, cfg.model, device)
        return self._setup

    def _encoded(self, s: _Setup, max_length: int) -> Any:
        if max_length not in s.encoded:
            s.encoded[max_length] = (
                taskdata.encode(s.raw, s.base.tokenizer, max_length) if s.tasks is None
                else s.tasks.encode(s.base.tokenizer, max_length))  # each task's own cache
            self.stats["tokenisations"] += 1
        return s.encoded[max_length]

    def close(self) -> None:
        if self._setup is not None:
            self._setup.meter.close()
        self._setup = None
        self._activations = None

    # ------------------------------------------------------------------ one trial
    def evaluate(self, request: EvalRequest, reporter: Reporter) -> Metrics:
        cfg = self.config
        if request.experiment and dict(request.experiment) != cfg.to_dict():
            cfg = ExperimentConfig.from_dict(request.experiment)
        s = self.setup(cfg)
        torch = require("torch")
        # the config's cpus for this trial; the caller's setting is restored afterwards
        # (a serial executor runs trials in the driver's own process)
        threads = torch.get_num_threads()
        torch.set_num_threads(cfg.resources.cpus)
        cpu0 = time.process_time()  # the trial's CPU seconds, what a CPU budget counts
        try:
            m = self._trial(request, reporter, cfg, s, torch)
            return replace(m, extra={**m.extra, "cpu_seconds": time.process_time() - cpu0})
        except (torch.OutOfMemoryError, MemoryError) as exc:  # building or measuring
            raise TrialFailedError(f"out of memory before training: {exc}") from exc
        finally:
            torch.set_num_threads(threads)
            if s.device.type == "cuda":
                torch.cuda.empty_cache()  # a failed or finished trial leaves nothing behind

    def _trial(self, request: EvalRequest, reporter: Reporter, cfg: ExperimentConfig,
               s: _Setup, torch: Any) -> Metrics:
        train_cfg = cfg.training
        enc = self._encoded(s, train_cfg.max_length)
        self.stats["trials"] += 1
        from autopeft import methods

        candidate = Candidate.from_dict(request.candidate)
        t_build = time.perf_counter()
        try:
            methods.validate(candidate, s.base.info)
            built = methods.build(s.base, candidate, seed=request.seed)
            if request.warm_start_path:
                built.load_adapter_weights(request.warm_start_path)
        except CandidateError as exc:
            raise TrialFailedError(f"the candidate cannot be built: {exc}") from exc
        model = built.model.to(s.device)
        build_seconds = time.perf_counter() - t_build
        cost = self._cost(built, s, cfg)
        note = getattr(reporter, "note_cost", None)
        if note is not None:
            note(request.trial_number, cost)

        hyper = dict(candidate.hyper)
        opt_cfg = cfg.optimizer
        settings = {
            "learning_rate": float(hyper.get("learning_rate", opt_cfg.learning_rate)),
            "batch_size": int(hyper.get("batch_size", opt_cfg.batch_size)),
            "weight_decay": float(hyper.get("weight_decay", opt_cfg.weight_decay)),
            "warmup_ratio": float(hyper.get("warmup_ratio", opt_cfg.warmup_ratio)),
        }
        if s.tasks is None:
            train_idx, val_idx, rung_idx = taskdata.trial_subsets(s.raw.labels, s.splits,
                                                                  cfg.data, train_cfg)
        else:  # each task's own subsets; one head per task (multitask.py)
            train_idx, val_idx, rung_idx = s.tasks.subsets(train_cfg)
        make_loop = TrainLoop if s.tasks is None else s.tasks.loop
        loop = make_loop(torch, model, enc, s.device, cfg, train_cfg, settings,
                         use_token_types=_takes_token_types(s.base.model),
                         start_step=request.start_step)
        loop.groups = param_groups(built, settings)  # one per module with its own learning rate
        needed = [train_idx, val_idx] + ([s.splits["test"]] if cfg.fidelity == "full" else [])
        frozen = self._frozen_prefix(candidate, built, s, enc, loop, needed)
        if frozen is not None:
            loop.source = frozen
        lean = _lean(candidate, model, s, train_cfg, torch) if train_cfg.lean_model else {}
        try:
            result = loop.run(train_idx, val_idx, request, reporter, rung_idx=rung_idx)
            test_metric = None
            if cfg.fidelity == "full":
                test_metric = loop.score(s.splits["test"])[0]
        except (torch.OutOfMemoryError, MemoryError) as exc:
            raise TrialFailedError(f"out of memory at step {loop.step}: {exc}") from exc
        checkpoint = None
        if request.checkpoint_dir:
            checkpoint = str(built.save(request.checkpoint_dir))
        log.info("trial %d: %s=%.4f after %d steps (%.1fs train, %.1fs eval)%s",
                 request.trial_number, cfg.metric, result["metric"], loop.step,
                 loop.train_seconds, loop.eval_seconds, " [pruned]" if result["pruned"] else "")
        metrics = Metrics(
            metric=result["metric"], metric_name=cfg.metric, cost=cost,
            intermediate=tuple(loop.reports), train_loss=result["train_loss"],
            steps=loop.step, train_seconds=loop.train_seconds,
            eval_seconds=loop.eval_seconds, test_metric=test_metric, checkpoint=checkpoint,
            pruned=result["pruned"],
            extra={**settings, "n_train": int(len(train_idx)),
                   "n_validation": int(len(val_idx)), "best_step": result["best_step"],
                   "early_stopped": result["early_stopped"], "device": str(s.device),
                   "bf16": bf16_pays(torch, s.device, train_cfg.bf16),
                   "fidelity": cfg.fidelity,
                   "build_seconds": build_seconds, "setup_seconds": s.seconds,
                   "backend": built.backend,
                   "frozen_below": frozen.states.layer if frozen is not None else 0,
                   **lean,
                   "n_rung": int(len(rung_idx)) if rung_idx is not None else None},
        )
        # several tasks: each task's score, and the mean's name
        return metrics if s.tasks is None else s.tasks.finish(metrics, loop)

    def _frozen_prefix(self, candidate: Candidate, built: Any, s: _Setup, enc: Any,
                       loop: TrainLoop, needed: list[Any]) -> CachedSource | None:
        """The cached layer-L inputs for this trial, with the model cut to start at L;
        None when the candidate touches layers below 1, the bound is 0 or too small."""
        import numpy as np

        t = loop.t
        L = prefix_cache.frozen_below(candidate, s.base.info) if t.frozen_cache_mb else 0
        if L <= 0:
            return None
        bad = prefix_cache.trainable_below(built.model, L, s.base.info.family)
        if bad:  # the type table said frozen, the built model disagrees: stay exact
            log.warning("trainable parameters below layer %d (%s): training uncached",
                        L, ", ".join(bad[:3]))
            return None
        if self._activations is None or self._activations.max_bytes != t.frozen_cache_mb * 2**20:
            self._activations = prefix_cache.ActivationCache(t.frozen_cache_mb * 2**20)
        # the pristine base model (where the states are computed) stays on the CPU; its
        # autocast matches the trial's precision so the states are what the trial's own
        # frozen layers would compute in eval mode
        torch = loop.torch

        def autocast() -> Any:
            import contextlib

            return (torch.autocast("cpu", dtype=torch.bfloat16) if bf16
                    else contextlib.nullcontext())

        bf16 = bf16_pays(torch, torch.device("cpu"), t.bf16)
        key = (s.key, enc.fingerprint, L, bf16)
        states = self._activations.get(
            key, s.base.model, enc, L, np.concatenate([np.asarray(i) for i in needed]),
            hidden=s.base.info.hidden_size, autocast=autocast,
            batch_size=t.eval_batch_size, device="cpu")
        if states is None:
            return None
        prefix_cache.skip_frozen(built.model, L)
        return CachedSource(enc, states)

    def _cost(self, built: Any, s: _Setup, cfg: ExperimentConfig) -> Cost:
        """Exact trainable parameters, FLOPs per token and latency (autopeft.cost); the
        latency is timed until its interval decides against the experiment's limit."""
        cost = s.meter.measure(built, latency_limit=cfg.constraints.max_latency_ratio)
        # several tasks: what a user deploys for the target task (its head only)
        return cost if s.tasks is None else s.tasks.target_cost(cost)


def _lean(candidate: Candidate, model: Any, s: _Setup, t: Any, torch: Any) -> dict[str, Any]:
    """The exact shortcuts of `lean_model` (after cost measurement: the meter times the
    model as a user deploys it); returns what was applied, for Metrics.extra."""
    from autopeft.evaluation import cls_only, dropout, precision

    out = {"bf16_frozen": 0, "cls_only": False, "fast_dropout": dropout.fast_dropout(model)}
    if bf16_pays(torch, s.device, t.bf16) and precision.convertible(candidate):
        out["bf16_frozen"] = precision.frozen_linears_to_bf16(model)
    if cls_only.applies(candidate, s.base.info):
        out["cls_only"] = cls_only.cls_only_last_layer(model)
    return out


def _device(torch: Any, cfg: ExperimentConfig) -> Any:
    if cfg.resources.gpus > 0 and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def _takes_token_types(model: Any) -> bool:
    """BERT-style encoders have segment embeddings; decoders must not get token_type_ids."""
    return getattr(model.config, "type_vocab_size", None) is not None
