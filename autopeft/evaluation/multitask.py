"""Multi-task proxies: a trial trains the candidate on several tasks, one head per task.

The AutoPEFT workflow's fast proxy is "a small subset of downstream tasks, e.g. MRPC +
SST-2": a candidate that does well on several tasks is more likely to do well on the
task you care about than one tuned to a single proxy task.  An experiment with `tasks:`
(docs/EXPERIMENT.md) gets, in every proxy trial:

- **Shared PEFT modules, one head per task.**  The base model is loaded with one
  output per class of every task (K = k_1 + ... + k_T); task t owns the rows
  [offset_t, offset_t + k_t) of the classifier.  Each example's logits outside its own
  task's rows are masked to -inf before the softmax, so its loss and its prediction are
  exactly those of a separate k_t-way head on the shared body: the other rows get no
  gradient from it.  (The task is read from the example's label, which only says which
  task the example belongs to: the mask is the task's whole span, never its class.)
- **Mixed batches (interleaved, not in turn).**  The tasks' train subsets are joined and
  shuffled together, so each batch holds examples of every task in proportion to their
  subsets, and one epoch sees every example of every task once.  Why not in turn (task
  A's steps, then task B's): the shared modules would forget A while training on B, so
  the trial would score the order of the tasks as much as the candidate, and the
  intermediate evaluations that pruning reads would see an untrained task for half the
  trial.  Why not alternating one-task batches: with one optimizer, a head whose task is
  not in the batch still moves on its AdamW momentum, and mixed batches need no special
  batching (length-grouped windows and the frozen-prefix cache work unchanged).
  Measured (experiments/multitask_mixing.py, TREC-6 + SMS spam, 3 recipes, one seed):
  one-task batches trained 23 % faster (they pad less) but scored TREC-6 lower for all
  three candidates (0.60 / 0.25 / 0.66 against 0.72 / 0.74 / 0.75), the mean by 3.5-24
  points; results in experiments/results/multitask_mixing.txt.
- **The same budget as a single-task trial.**  `proxy.max_steps` and the batch size are
  the trial's, shared by the tasks; `train_examples`, `validation_examples` and
  `rung_examples` are per task, drawn exactly as each task's own single-task experiment
  would draw them (autopeft.taskdata.trial_subsets).  Each task is tokenised and cached
  by its own fingerprint, so a single-task study of the same data reuses the cache.
- **The metric** is the weighted mean of the tasks' validation metrics (each task's own
  `metric`, weights from `weight`), at every evaluation: the intermediate reports that a
  pruner reads are means too.  Each task's score at the kept state goes into
  `Metrics.extra["tasks"]`; `show`, its `--json`, the report and the dashboard show them.
- **Cost** counts what a user deploys for the target task: the shared modules plus the
  target's head (`head_params`); `params_ratio` never included a head.

`finalize`, `train`, `export` and `calibrate` work on the target task alone
(ExperimentConfig.for_target): a single head, trained on the target only, at full
fidelity.  This module is imported only for an experiment with `tasks:`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from autopeft import metrics as metric_fns
from autopeft import taskdata
from autopeft.config import ExperimentConfig
from autopeft.evaluation.trainloop import TrainLoop
from autopeft.records import Cost, Metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Task:
    """One loaded task: its data, and where it sits in the joint examples and classes."""

    name: str
    weight: float
    metric: str
    data: Any                      # autopeft.config.DataConfig
    raw: taskdata.RawData
    splits: dict[str, np.ndarray]  # the task's own indices
    start: int                     # its first example's index in the joint data
    offset: int                    # its first class's id in the joint classes

    @property
    def num_labels(self) -> int:
        return self.raw.num_labels


class TaskSet:
    """The tasks of a multi-task experiment, joined into one dataset for one model."""

    def __init__(self, tasks: list[Task], target: str) -> None:
        self.tasks = tuple(tasks)
        self.target = target
        self.names = tuple(t.name for t in tasks)
        labels = np.concatenate([t.raw.labels + t.offset for t in tasks])
        texts = tuple(x for t in tasks for x in t.raw.texts)
        names = tuple(f"{t.name}:{n}" for t in tasks for n in t.raw.label_names)
        fingerprint = _digest([(t.name, t.raw.fingerprint) for t in tasks])
        self.raw = taskdata.RawData(texts, labels, names, fingerprint)
        self.splits = {k: np.concatenate([t.splits[k] + t.start for t in tasks])
                       for k in ("train", "validation", "test")}
        # the task of each joint class id
        self.task_of_label = np.concatenate([np.full(t.num_labels, i)
                                             for i, t in enumerate(tasks)])
        metrics = {t.metric for t in tasks}
        self.metric_name = f"mean {metrics.pop()}" if len(metrics) == 1 else "mean"

    # -------------------------------------------------------------- data
    def encode(self, tokenizer: Any, max_length: int) -> taskdata.Encoded:
        """Every task tokenised (from its own cache file) and joined in task order."""
        torch = _torch()
        parts = [taskdata.encode(t.raw, tokenizer, max_length) for t in self.tasks]
        types = None
        if any(p.token_type_ids is not None for p in parts):
            types = torch.cat([p.token_type_ids if p.token_type_ids is not None
                               else torch.zeros_like(p.input_ids, dtype=torch.int8)
                               for p in parts])
        return taskdata.Encoded(
            input_ids=torch.cat([p.input_ids for p in parts]),
            lengths=torch.cat([p.lengths for p in parts]), token_type_ids=types,
            labels=torch.cat([p.labels + t.offset for p, t in zip(parts, self.tasks)]),
            pad_id=parts[0].pad_id, fingerprint=_digest([p.fingerprint for p in parts])[:32])

    def subsets(self, train_cfg: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Each task's (train, validation, rung) subsets as its own experiment draws them,
        in joint indices (sorted, since the tasks follow each other)."""
        train, val, rung, full = [], [], [], True
        for t in self.tasks:
            tr, va, ru = taskdata.trial_subsets(t.raw.labels, t.splits, t.data, train_cfg)
            full = full and ru is None
            train.append(tr + t.start)
            val.append(va + t.start)
            rung.append((va if ru is None else ru) + t.start)
        return (np.concatenate(train), np.concatenate(val),
                None if full else np.concatenate(rung))

    # -------------------------------------------------------------- scoring
    def scores(self, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
        """Each task's metric on its own examples among y_true (joint class ids)."""
        task = self.task_of_label[y_true]
        out = {}
        for i, t in enumerate(self.tasks):
            sel = task == i
            if sel.any():
                out[t.name] = float(metric_fns.compute(t.metric, y_true[sel] - t.offset,
                                                       y_pred[sel] - t.offset))
        return out

    def mean(self, scores: Mapping[str, float]) -> float:
        """The weighted mean over the tasks present in `scores`."""
        w = {t.name: t.weight for t in self.tasks if t.name in scores}
        return sum(w[n] * scores[n] for n in w) / sum(w.values())

    def allowed(self, torch: Any) -> Any:
        """[K, K] bool: row j marks the classes of the task that class j belongs to."""
        task = torch.as_tensor(self.task_of_label)
        return task[:, None] == task[None, :]

    def loop(self, *args: Any, **kwargs: Any) -> "MultiTaskLoop":
        """A training loop for these tasks (TrainLoop's arguments)."""
        return MultiTaskLoop(*args, tasks=self, **kwargs)

    # -------------------------------------------------------------- results
    def target_cost(self, cost: Cost) -> Cost:
        """The cost as deployed for the target task: its head, not every task's.  A head's
        parameters are one row (weight and bias) per class, so they scale with k."""
        total = sum(t.num_labels for t in self.tasks)
        k = next(t.num_labels for t in self.tasks if t.name == self.target)
        return dataclasses.replace(cost, head_params=cost.head_params * k // total)

    def finish(self, metrics: Metrics, loop: "MultiTaskLoop") -> Metrics:
        """Metrics with each task's score of the kept state and the mean's name."""
        per_task = {
            t.name: {"metric": loop.breakdown.get(t.name), "metric_name": t.metric,
                     "weight": t.weight, "num_labels": t.num_labels}
            for t in self.tasks}
        extra = {**metrics.extra, "tasks": per_task, "target": self.target}
        return dataclasses.replace(metrics, metric_name=self.metric_name, extra=extra)


class MultiTaskLoop(TrainLoop):
    """TrainLoop with one head per task: logits masked to the example's task, and the
    weighted mean of the tasks' metrics as the metric."""

    def __init__(self, *args: Any, tasks: TaskSet, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tasks = tasks
        self._allowed = tasks.allowed(self.torch).to(self.device)
        # every metric computed: (step, examples, per-task scores, weights signature)
        self.evaluations: list[tuple[int, int, dict[str, float], tuple]] = []
        self.breakdown: dict[str, float] = {}

    def _forward(self, batch: Mapping[str, Any]) -> Any:
        logits = super()._forward(batch)
        return logits.masked_fill(~self._allowed[batch["labels"]], float("-inf"))

    def metric_of(self, idx: Any, y_pred: Any) -> float:
        y_true = self.source.labels[self.torch.as_tensor(np.asarray(idx))].numpy()
        scores = self.tasks.scores(y_true, y_pred)
        self.evaluations.append((self.step, len(idx), scores, self._signature()))
        return self.tasks.mean(scores)

    def _signature(self) -> tuple:
        """Tells the trainable weights of two states apart (sums and squared sums)."""
        with self.torch.no_grad():
            return tuple((float(p.double().sum()), float(p.double().square().sum()))
                         for p in self.model.parameters() if p.requires_grad)

    def run(self, train_idx: Any, val_idx: Any, request: Any, reporter: Any,
            rung_idx: Any = None) -> dict[str, Any]:
        result = super().run(train_idx, val_idx, request, reporter, rung_idx=rung_idx)
        self.breakdown = self._kept_breakdown(result, len(val_idx), val_idx)
        return result

    def _kept_breakdown(self, result: Mapping[str, Any], n_val: int,
                        val_idx: Any) -> dict[str, float]:
        """Each task's score behind the trial's metric.  Pruned: the last report's (the
        first metric computed at the last step).  Otherwise: the full-validation scores
        of the weights the loop kept, read from the evaluation that scored exactly these
        weights, or computed once more when none did (an earlier state won)."""
        if result["pruned"]:
            at = self.evaluations[-1][0]
            return next(e[2] for e in self.evaluations if e[0] == at)
        now = self._signature()
        for step, n, scores, sig in reversed(self.evaluations):
            if n == n_val and sig == now:
                return scores
        self.score(val_idx)
        return self.evaluations[-1][2]


def load_tasks(cfg: ExperimentConfig) -> TaskSet:
    """Read and split every task of a multi-task experiment (errors name the task's YAML
    path, e.g. tasks.sms.data.label)."""
    tasks, start, offset = [], 0, 0
    for t in cfg.tasks:
        where = f"tasks.{t.name}.data"
        raw = taskdata.load_examples(t.data, file=cfg.source, where=where)
        splits = taskdata.make_splits(raw.labels, t.data, file=cfg.source,
                                      label_names=raw.label_names, where=where)
        tasks.append(Task(t.name, t.weight, cfg.task_metric(t), t.data, raw, splits,
                          start, offset))
        start += len(raw.texts)
        offset += raw.num_labels
    log.info("%d tasks: %s (target %s), %d classes in all", len(tasks),
             ", ".join(f"{t.name} ({len(t.raw.texts)} examples, {t.num_labels} classes)"
                       for t in tasks), cfg.target, offset)
    return TaskSet(tasks, cfg.target)


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj).encode()).hexdigest()


def _torch() -> Any:
    from autopeft._imports import require

    return require("torch")
