"""ProxyEvaluator: train one candidate on the proxy task and return its validation metric.

One evaluator lives in a worker and serves many trials.  Its first trial (or `setup()`)
reads the data, loads the base model and tokenises once (from the on-disk cache when it
exists); every later trial only builds the candidate on a fresh copy of the in-memory base
weights (BaseModel.fresh(), inside autopeft.methods.build) and trains it:

    validate → build → (warm start) → cost → train with periodic validation → Metrics

The training loop is deliberately lean (no HF Trainer): AdamW over the trainable
parameters, linear warmup then linear decay, batches cut from the cached tensors with
dynamic padding, validation every `eval_every` steps reported to the Reporter (which may
prune), early stopping with `patience`.  The metric returned is the best validation
score seen, and the weights at that point are the ones checkpointed and, at full
fidelity, scored on the test split.

Randomness: the data order comes from a torch.Generator seeded with the trial seed; the
dropout masks come from torch's global RNG, seeded with the trial seed inside
torch.random.fork_rng so the caller's RNG state is left untouched.  Same seed, same
metrics.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Mapping

from autopeft import metrics as metric_fns
from autopeft import taskdata
from autopeft._imports import require
from autopeft.candidate import Candidate
from autopeft.config import ExperimentConfig, TrainingConfig
from autopeft.evaluation.base import Evaluator, Reporter
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


class ProxyEvaluator(Evaluator):
    """The default evaluator: real training of the candidate on the configured task."""

    def __init__(self, experiment: Mapping[str, Any]) -> None:
        self.config = ExperimentConfig.from_dict(experiment)
        self._setup: _Setup | None = None
        # how often the expensive steps ran in this worker (tests and benchmarks read them)
        self.stats = {"setups": 0, "tokenisations": 0, "trials": 0}

    # ------------------------------------------------------------------ set-up
    def setup(self, config: ExperimentConfig | None = None) -> _Setup:
        """Load data and model once per worker (idempotent for the same model and data)."""
        cfg = config or self.config
        key = (cfg.model, cfg.trust_remote_code, repr(cfg.data), cfg.resources.gpus > 0)
        if self._setup is not None and self._setup.key == key:
            return self._setup
        if self._setup is not None:
            log.warning("model or data changed between trials; setting up again")
            self.close()
        t0 = time.perf_counter()
        try:
            torch = require("torch")
            from autopeft import models

            raw = taskdata.load_examples(cfg.data, file=cfg.source)
            splits = taskdata.make_splits(raw.labels, cfg.data, file=cfg.source)
            base = models.load_base(cfg.model, num_labels=raw.num_labels,
                                    trust_remote_code=cfg.trust_remote_code, seed=cfg.seed)
        except (ConfigError, MissingDependencyError) as exc:
            raise FatalError(f"the experiment cannot be set up: {exc}") from exc
        device = _device(torch, cfg)
        if device.type == "cuda" and not torch.cuda.is_bf16_supported() and (
                cfg.proxy.bf16 or cfg.full.bf16):
            log.warning("this GPU has no bf16 support: bf16 is ignored, training in fp32")
        from autopeft.cost import CostMeter

        self._setup = _Setup(key, raw, splits, base, {}, device, time.perf_counter() - t0,
                             CostMeter(base))
        self.stats["setups"] += 1
        log.info("worker set up in %.1fs: %d examples, %d classes, model %s on %s",
                 self._setup.seconds, len(raw.texts), raw.num_labels, cfg.model, device)
        return self._setup

    def _encoded(self, s: _Setup, max_length: int) -> Any:
        if max_length not in s.encoded:
            s.encoded[max_length] = taskdata.encode(s.raw, s.base.tokenizer, max_length)
            self.stats["tokenisations"] += 1
        return s.encoded[max_length]

    def close(self) -> None:
        if self._setup is not None:
            self._setup.meter.close()
        self._setup = None

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
        try:
            return self._trial(request, reporter, cfg, s, torch)
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
        cost = self._cost(built, s)
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
        train_idx = taskdata.stratified_subset(s.raw.labels, s.splits["train"],
                                               train_cfg.train_examples or 10**12,
                                               seed=cfg.data.split_seed)
        val_idx = taskdata.stratified_subset(s.raw.labels, s.splits["validation"],
                                             train_cfg.validation_examples or 10**12,
                                             seed=cfg.data.split_seed + 1)
        loop = _Loop(torch, model, enc, s.device, cfg, train_cfg, settings,
                     use_token_types=_takes_token_types(s.base.model),
                     start_step=request.start_step)
        loop.groups = param_groups(built, settings)  # one per module with its own learning rate
        try:
            result = loop.run(train_idx, val_idx, request, reporter)
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
        return Metrics(
            metric=result["metric"], metric_name=cfg.metric, cost=cost,
            intermediate=tuple(loop.reports), train_loss=result["train_loss"],
            steps=loop.step, train_seconds=loop.train_seconds,
            eval_seconds=loop.eval_seconds, test_metric=test_metric, checkpoint=checkpoint,
            pruned=result["pruned"],
            extra={**settings, "n_train": int(len(train_idx)),
                   "n_validation": int(len(val_idx)), "best_step": result["best_step"],
                   "early_stopped": result["early_stopped"], "device": str(s.device),
                   "bf16": train_cfg.bf16, "fidelity": cfg.fidelity,
                   "build_seconds": build_seconds, "setup_seconds": s.seconds,
                   "backend": built.backend},
        )

    def _cost(self, built: Any, s: _Setup) -> Cost:
        """Exact trainable parameters, FLOPs per token and latency (autopeft.cost)."""
        return s.meter.measure(built)


def _device(torch: Any, cfg: ExperimentConfig) -> Any:
    if cfg.resources.gpus > 0 and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def _takes_token_types(model: Any) -> bool:
    """BERT-style encoders have segment embeddings; decoders must not get token_type_ids."""
    return getattr(model.config, "type_vocab_size", None) is not None


class _Loop:
    """The training loop of one trial (state kept on the object for error messages)."""

    def __init__(self, torch: Any, model: Any, enc: Any, device: Any, cfg: ExperimentConfig,
                 train_cfg: TrainingConfig, settings: Mapping[str, Any], *,
                 use_token_types: bool, start_step: int = 0) -> None:
        self.torch, self.model, self.enc, self.device = torch, model, enc, device
        self.cfg, self.t, self.settings = cfg, train_cfg, settings
        self.use_token_types = use_token_types
        self.start_step = start_step
        self.step = 0
        self.reports: list[tuple[int, float]] = []
        self.train_seconds = 0.0
        self.eval_seconds = 0.0

    def _autocast(self) -> Any:
        import contextlib

        if not self.t.bf16:
            return contextlib.nullcontext()
        if self.device.type == "cuda" and not self.torch.cuda.is_bf16_supported():
            return contextlib.nullcontext()  # pre-Ampere GPU: stay in fp32 (logged at start)
        return self.torch.autocast(self.device.type, dtype=self.torch.bfloat16)

    def _forward(self, batch: Mapping[str, Any]) -> Any:
        kwargs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        if self.use_token_types and "token_type_ids" in batch:
            kwargs["token_type_ids"] = batch["token_type_ids"]
        with self._autocast():
            return self.model(**kwargs).logits.float()

    def score(self, idx: Any) -> tuple[float, Any]:
        """(metric, predictions) on the examples idx, in order (no dropout, no grad)."""
        t0 = time.perf_counter()
        torch = self.torch
        idx = torch.as_tensor(idx, dtype=torch.int64)
        # Scoring order does not matter, so batch similar lengths together: each batch then
        # pads to little more than its own examples (training batches stay unsorted).
        by_length = torch.argsort(self.enc.lengths[idx], stable=True)
        self.model.eval()
        preds = []
        with torch.no_grad():
            for batch in taskdata.iter_batches(self.enc, idx[by_length],
                                               self.t.eval_batch_size, device=self.device):
                preds.append(self._forward(batch).argmax(-1).cpu())
        self.model.train()
        y_pred = torch.empty(len(idx), dtype=torch.int64)
        y_pred[by_length] = torch.cat(preds)
        y_pred = y_pred.numpy()
        y_true = self.enc.labels[idx].numpy()
        self.eval_seconds += time.perf_counter() - t0
        return metric_fns.compute(self.cfg.metric, y_true, y_pred), y_pred

    def total_steps(self, n_train: int) -> int:
        if self.t.max_steps is not None:
            return self.t.max_steps
        per_epoch = math.ceil(n_train / self.settings["batch_size"])
        return max(1, math.ceil(self.t.epochs * per_epoch))

    def run(self, train_idx: Any, val_idx: Any, request: EvalRequest,
            reporter: Reporter) -> dict[str, Any]:
        torch = self.torch
        params = [p for p in self.model.parameters() if p.requires_grad]
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        if not params:
            raise TrialFailedError("the built model has no trainable parameters")
        lr = self.settings["learning_rate"]
        opt = torch.optim.AdamW(self.groups, lr=lr)  # autopeft.methods.groups
        total = self.total_steps(len(train_idx))
        warmup = int(round(self.settings["warmup_ratio"] * total))

        def lr_at(step: int) -> float:  # step counts from 0; linear warmup, linear decay
            if step < warmup:
                return lr * (step + 1) / warmup
            return lr * max(0.0, (total - step) / max(1, total - warmup))

        order = torch.Generator().manual_seed(int(request.seed))
        best, best_step, best_state, bad_evals = -math.inf, 0, None, 0
        pruned = early_stopped = False
        loss_sum, loss_n, last_loss = 0.0, 0, None
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        t0 = time.perf_counter()
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(int(request.seed))  # dropout masks, inside the fork only
            self.model.train()
            while self.step < total and not (pruned or early_stopped):
                for batch in taskdata.iter_batches(self.enc, train_idx,
                                                   self.settings["batch_size"],
                                                   generator=order, device=self.device):
                    for group in opt.param_groups:
                        group["lr"] = lr_at(self.step) * group["lr_scale"]
                    logits = self._forward(batch)
                    loss = torch.nn.functional.cross_entropy(logits, batch["labels"])
                    value = float(loss.detach())
                    if not math.isfinite(value):
                        raise TrialFailedError(f"non-finite loss at step "
                                               f"{self.start_step + self.step + 1} ({value})")
                    loss.backward()
                    if self.cfg.optimizer.max_grad_norm > 0:
                        torch.nn.utils.clip_grad_norm_(params, self.cfg.optimizer.max_grad_norm)
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                    self.step += 1
                    loss_sum, loss_n = loss_sum + value, loss_n + 1
                    if self.step % self.t.eval_every == 0 or self.step == total:
                        last_loss = loss_sum / loss_n
                        loss_sum, loss_n = 0.0, 0
                        self.train_seconds += time.perf_counter() - t0
                        value, _ = self.score(val_idx)
                        at = self.start_step + self.step
                        self.reports.append((at, value))
                        if value > best:
                            best, best_step, bad_evals = value, at, 0
                            best_state = {n: p.detach().clone() for n, p in named}
                        else:
                            bad_evals += 1
                        if not reporter.report(request.trial_number, at, value):
                            pruned = True
                        elif self.t.patience and bad_evals >= self.t.patience:
                            early_stopped = True
                        t0 = time.perf_counter()
                    if self.step >= total or pruned or early_stopped:
                        break
        self.train_seconds += time.perf_counter() - t0
        if best_state is not None and not pruned:
            with torch.no_grad():
                for n, p in named:
                    p.copy_(best_state[n])
        metric = self.reports[-1][1] if pruned else best
        if last_loss is None and loss_n:
            last_loss = loss_sum / loss_n
        return {"metric": float(metric), "best_step": best_step, "pruned": pruned,
                "early_stopped": early_stopped, "train_loss": last_loss}
