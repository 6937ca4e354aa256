"""The training loop of one proxy trial (ProxyEvaluator builds the model, this trains it).

AdamW over the trainable parameters, linear warmup then linear decay, batches
(length-grouped with `length_window` > 1, autopeft.evaluation.batching) cut from a source, validation every
`eval_every` steps reported to the Reporter (which may prune), early stopping with
`patience`.

A batch source is the tokenised data (PlainSource) or a frozen-prefix activation cache
(CachedSource: the model then starts at layer L, see prefix_cache.py); the loop does not
care which.

Cheap rungs: with `rung_examples`, the intermediate evaluations (the ones a pruner reads)
score a fixed stratified subset of the validation examples; the last evaluation scores the
whole validation subset.  The subset shortlists the best state (the last evaluation's
subset score is a slice of its full predictions, so no extra pass); when an earlier state
wins there, it is scored on the full set once more and the higher of its and the last
state's full scores is the metric (with that state's weights kept).  Without `rung_examples` every evaluation is full, as
before.

Validation batches are cut once per trial and kept (tokenised or cached, on the device),
so each evaluation only runs the model.
"""
from __future__ import annotations

import math
import time
from typing import Any, Mapping

import numpy as np

from autopeft import metrics as metric_fns
from autopeft import taskdata
from autopeft.config import ExperimentConfig, TrainingConfig
from autopeft.evaluation import batching
from autopeft.evaluation.base import Reporter
from autopeft.exceptions import TrialFailedError
from autopeft.records import EvalRequest


def bf16_pays(torch: Any, device: Any, wanted: bool) -> bool:
    """bf16 autocast only where the hardware has bf16 units.

    A pre-Ampere GPU has none; neither has a CPU without AVX512-BF16/AMX (oneDNN then
    emulates bf16): measured on such a CPU (AVX2 only), one LoRA step of 16 x 23 tokens
    took 27-32 s under autocast against 1.9-3.1 s in fp32.  There the trial runs in fp32
    (logged once per worker by the evaluator).
    """
    if not wanted:
        return False
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # an older torch without the probe: trust the config
        return True


class PlainSource:
    """Batches cut from the tokenised examples (dynamic padding)."""

    def __init__(self, enc: Any) -> None:
        self.enc, self.lengths, self.labels = enc, enc.lengths, enc.labels

    def batch(self, idx: Any, device: Any) -> dict[str, Any]:
        return taskdata.collate(self.enc, idx, device)


class CachedSource(PlainSource):
    """Batches of cached layer-L inputs (prefix_cache.States), re-padded per batch."""

    def __init__(self, enc: Any, states: Any) -> None:
        super().__init__(enc)
        self.states = states

    def batch(self, idx: Any, device: Any) -> dict[str, Any]:
        return self.states.collate(idx, self.enc.labels, device)


class TrainLoop:
    """One trial's training (state kept on the object for error messages)."""

    def __init__(self, torch: Any, model: Any, enc: Any, device: Any, cfg: ExperimentConfig,
                 train_cfg: TrainingConfig, settings: Mapping[str, Any], *,
                 use_token_types: bool, start_step: int = 0, source: Any = None) -> None:
        self.torch, self.model, self.enc, self.device = torch, model, enc, device
        self.cfg, self.t, self.settings = cfg, train_cfg, settings
        self.use_token_types = use_token_types
        self.start_step = start_step
        self.source = source if source is not None else PlainSource(enc)
        self.step = 0
        self.reports: list[tuple[int, float]] = []
        self.train_seconds = 0.0
        self.eval_seconds = 0.0
        self._eval_batches: dict[bytes, tuple[Any, list[dict[str, Any]]]] = {}
        # AdamW parameter groups with an "lr_scale" each (autopeft.methods.groups: one per
        # module with its own learning rate); None: the two usual decay/no-decay groups
        self.groups: list[dict[str, Any]] | None = None

    def _autocast(self) -> Any:
        import contextlib

        if not bf16_pays(self.torch, self.device, self.t.bf16):
            return contextlib.nullcontext()
        return self.torch.autocast(self.device.type, dtype=self.torch.bfloat16)

    def _forward(self, batch: Mapping[str, Any]) -> Any:
        if "inputs_embeds" in batch:  # a cached prefix: the model starts at layer L
            kwargs = {"inputs_embeds": batch["inputs_embeds"],
                      "attention_mask": batch["attention_mask"]}
        else:
            kwargs = {"input_ids": batch["input_ids"],
                      "attention_mask": batch["attention_mask"]}
            if self.use_token_types and "token_type_ids" in batch:
                kwargs["token_type_ids"] = batch["token_type_ids"]
        with self._autocast():
            return self.model(**kwargs).logits.float()

    def _prepared(self, idx: Any) -> tuple[Any, list[dict[str, Any]]]:
        """Length-sorted validation batches for idx, cut once per trial and kept."""
        torch = self.torch
        idx = torch.as_tensor(np.asarray(idx), dtype=torch.int64)
        key = idx.numpy().tobytes()
        if key not in self._eval_batches:
            # scoring order does not matter: similar lengths together pad least
            by_length = torch.argsort(self.source.lengths[idx], stable=True)
            batches = [self.source.batch(chunk, self.device)
                       for chunk in idx[by_length].split(self.t.eval_batch_size)]
            self._eval_batches[key] = (by_length, batches)
        return self._eval_batches[key]

    def score(self, idx: Any) -> tuple[float, Any]:
        """(metric, predictions) on the examples idx, in order (no dropout, no grad)."""
        t0 = time.perf_counter()
        torch = self.torch
        by_length, batches = self._prepared(idx)
        self.model.eval()
        preds = []
        with torch.no_grad():
            for batch in batches:
                preds.append(self._forward(batch).argmax(-1).cpu())
        self.model.train()
        y_pred = torch.empty(len(by_length), dtype=torch.int64)
        y_pred[by_length] = torch.cat(preds)
        y_pred = y_pred.numpy()
        value = self.metric_of(idx, y_pred)
        self.eval_seconds += time.perf_counter() - t0
        return value, y_pred

    def metric_of(self, idx: Any, y_pred: Any) -> float:
        """The validation metric of predictions y_pred of the examples idx (a multi-task
        loop overrides it: the weighted mean of the tasks' metrics)."""
        y_true = self.source.labels[self.torch.as_tensor(np.asarray(idx))].numpy()
        return metric_fns.compute(self.cfg.metric, y_true, y_pred)

    def total_steps(self, n_train: int) -> int:
        if self.t.max_steps is not None:
            return self.t.max_steps
        per_epoch = math.ceil(n_train / self.settings["batch_size"])
        return max(1, math.ceil(self.t.epochs * per_epoch))

    def _optimizer(self, params: list[Any]) -> Any:
        torch = self.torch
        groups = self.groups
        if groups is None:
            decay = [p for p in params if p.ndim >= 2]
            no_decay = [p for p in params if p.ndim < 2]
            groups = [{"params": decay, "weight_decay": self.settings["weight_decay"],
                       "lr_scale": 1.0},
                      {"params": no_decay, "weight_decay": 0.0, "lr_scale": 1.0}]
        # fused AdamW: one kernel over all tensors instead of a Python loop over dozens of
        # small LoRA/adapter tensors.  Measured on the default candidate's 52 tensors, one
        # thread: 2.8 ms per step fused, 10.8 foreach, 14.2 for-loop (the old default).
        try:
            return torch.optim.AdamW(groups, lr=self.settings["learning_rate"], fused=True)
        except (RuntimeError, TypeError):  # a device or dtype the fused kernel lacks
            return torch.optim.AdamW(groups, lr=self.settings["learning_rate"])

    def run(self, train_idx: Any, val_idx: Any, request: EvalRequest, reporter: Reporter,
            rung_idx: Any = None) -> dict[str, Any]:
        torch = self.torch
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        params = [p for _, p in named]
        if not params:
            raise TrialFailedError("the built model has no trainable parameters")
        opt = self._optimizer(params)
        lr = self.settings["learning_rate"]
        total = self.total_steps(len(train_idx))
        warmup = int(round(self.settings["warmup_ratio"] * total))

        def lr_at(step: int) -> float:  # step counts from 0; linear warmup, linear decay
            if step < warmup:
                return lr * (step + 1) / warmup
            return lr * max(0.0, (total - step) / max(1, total - warmup))

        if rung_idx is not None and len(rung_idx) >= len(val_idx):
            rung_idx = None
        # where the rung subset sits inside val_idx (both sorted): the last, full
        # evaluation's subset score is a slice of its predictions
        rung_pos = None if rung_idx is None else np.searchsorted(val_idx, rung_idx)
        order = torch.Generator().manual_seed(int(request.seed))
        best, best_step, best_state, bad_evals = -math.inf, 0, None, 0
        pruned = early_stopped = False
        final_full = None                       # (full score, at) of the last evaluation
        loss_sum, loss_n, last_loss = 0.0, 0, None
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        clip = self.cfg.optimizer.max_grad_norm
        t0 = time.perf_counter()
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(int(request.seed))  # dropout masks, inside the fork only
            self.model.train()
            while self.step < total and not (pruned or early_stopped):
                for idx in batching.grouped_order(self.source.lengths, train_idx,
                                                  self.settings["batch_size"],
                                                  generator=order,
                                                  window=self.t.length_window):
                    batch = self.source.batch(idx, self.device)
                    for group in opt.param_groups:
                        group["lr"] = lr_at(self.step) * group["lr_scale"]
                    logits = self._forward(batch)
                    loss = torch.nn.functional.cross_entropy(logits, batch["labels"])
                    value = float(loss.detach())
                    if not math.isfinite(value):
                        raise TrialFailedError(f"non-finite loss at step "
                                               f"{self.start_step + self.step + 1} ({value})")
                    loss.backward()
                    if clip > 0:
                        torch.nn.utils.clip_grad_norm_(params, clip)
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                    self.step += 1
                    loss_sum, loss_n = loss_sum + value, loss_n + 1
                    if self.step % self.t.eval_every == 0 or self.step == total:
                        last_loss = loss_sum / loss_n
                        loss_sum, loss_n = 0.0, 0
                        self.train_seconds += time.perf_counter() - t0
                        at = self.start_step + self.step
                        if rung_idx is None or self.step == total:
                            value, y_pred = self.score(val_idx)
                            final_full = (value, at)
                            chosen = value if rung_idx is None else self.metric_of(
                                rung_idx, y_pred[rung_pos])
                        else:
                            value, _ = self.score(rung_idx)
                            chosen, final_full = value, None
                        self.reports.append((at, value))
                        if chosen > best:
                            best, best_step, bad_evals = chosen, at, 0
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
        last_state = None
        if rung_idx is not None and final_full is not None and final_full[1] != best_step:
            last_state = {n: p.detach().clone() for n, p in named}
        if best_state is not None and not pruned:
            with torch.no_grad():
                for n, p in named:
                    p.copy_(best_state[n])
        if pruned:
            metric = self.reports[-1][1]
        elif rung_idx is None:
            metric = best
        elif final_full is not None and final_full[1] == best_step:
            metric = final_full[0]             # the last state won: its full score
        else:
            # an earlier state won on the subset: score it on all, and keep whichever of
            # it and the last state scores higher there (the subset only shortlists)
            metric = self.score(val_idx)[0]
            if final_full is not None and final_full[0] > metric:
                metric, best_step = final_full
                with torch.no_grad():
                    for n, p in named:
                        p.copy_(last_state[n])
        if last_loss is None and loss_n:
            last_loss = loss_sum / loss_n
        return {"metric": float(metric), "best_step": best_step, "pruned": pruned,
                "early_stopped": early_stopped, "train_loss": last_loss}
