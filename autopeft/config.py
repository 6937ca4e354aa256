"""ExperimentConfig: which model, which data, how each trial is trained and how it is scored.

An experiment file (experiments/*.yaml) is read as strictly as a search space: an unknown
key, a wrong type or a value out of range is an ExperimentError that names the file, the
YAML path, the value and the fix.  docs/EXPERIMENT.md documents every key; the
dataclasses below are the schema (each field's `meta` carries its type, range and doc).

Pure Python + PyYAML: no torch here (importing this module must stay light).
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from autopeft.exceptions import ExperimentError

METRIC_NAMES = ("accuracy", "macro_f1", "mcc")
FIDELITIES = ("proxy", "full")


def _f(default: Any, kind: str, doc: str = "", *, low: float | None = None,
       high: float | None = None, choices: tuple = (), key: str | None = None,
       nullable: bool = False, low_open: bool = False) -> Any:
    """A schema field: kind is int, float, bool, str, text (str or [str, str]) or a section."""
    meta = {"kind": kind, "doc": doc, "low": low, "high": high, "choices": choices,
            "key": key, "nullable": nullable, "low_open": low_open}
    if kind == "section":
        return field(default_factory=default, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class DataConfig:
    source: str = _f("builtin:trec6", "str",
                     "builtin:NAME (trec6, sms_spam, vader_*, rotten_tomatoes) | a local "
                     ".csv/.json/.jsonl/.parquet "
                     "file | a Hugging Face hub dataset name")
    text: Any = _f("text", "text", "text column, or [first, second] for sentence pairs")
    label: str = _f("label", "str", "label column (ints or strings)")
    hf_config: str | None = _f(None, "str", "hub dataset configuration name", nullable=True)
    hf_split: str = _f("train", "str", "hub dataset split that is split into train/val/test")
    validation: float = _f(0.1, "float", "validation split: a fraction (<1) or a count",
                           low=0.0, low_open=True)
    test: float = _f(0.1, "float", "test split: a fraction (<1) or a count",
                     low=0.0, low_open=True)
    split_seed: int = _f(0, "int", "seed of the stratified split and subsets", low=0)
    max_examples: int | None = _f(None, "int", "cap on the examples read", low=2,
                                  nullable=True)


@dataclass(frozen=True)
class TaskConfig:
    """One task of a multi-task experiment (`tasks:`); its name is its key under `tasks`."""

    data: DataConfig = _f(DataConfig, "section")
    weight: float = _f(1.0, "float", "weight of this task's validation metric in the "
                       "trial's weighted mean", low=0.0, low_open=True)
    metric: str | None = _f(None, "str", "this task's validation metric; null = the "
                            "experiment's `metric`", choices=METRIC_NAMES, nullable=True)
    name: str = field(default="", metadata={"kind": "internal"})


@dataclass(frozen=True)
class TrainingConfig:
    train_examples: int | None = _f(2000, "int", "stratified train subset; null = all",
                                    low=1, nullable=True)
    max_steps: int | None = _f(150, "int", "optimiser steps (exclusive with epochs)",
                               low=1, nullable=True)
    epochs: float | None = _f(None, "float", "passes over the train subset", low=0.0,
                              low_open=True, nullable=True)
    max_length: int = _f(64, "int", "tokens per example (truncation)", low=4, high=8192)
    validation_examples: int | None = _f(500, "int", "stratified validation subset; "
                                         "null = all", low=1, nullable=True)
    eval_every: int = _f(50, "int", "validate every N optimiser steps", low=1)
    patience: int = _f(0, "int", "stop after N evaluations without improvement; 0 = off",
                       low=0)
    eval_batch_size: int = _f(128, "int", "batch size for validation", low=1)
    bf16: bool = _f(False, "bool", "bf16 autocast (CPU with AMX, or GPU)")
    # trial-cost knobs (autopeft/evaluation/batching.py, prefix_cache.py; docs/EXPERIMENT.md)
    # windows of 16 batches: measured on TREC-6 at the default proxy (8 sampled candidates x
    # 2 seeds, experiments/results/window_ablation.txt): padded tokens per batch 366 -> 230,
    # accuracy -0.3 +- 1.6 points against a seed-to-seed sd of 2.6; `full` keeps 1
    length_window: int = _f(16, "int", "training batches grouped by length within shuffled "
                            "windows of N batches; 1 = plain random batches", low=1)
    rung_examples: int | None = _f(200, "int", "intermediate evaluations (what pruning "
                                   "reads) on a fixed stratified subset of this many "
                                   "validation examples; the last one uses all; null = all",
                                   low=1, nullable=True)
    frozen_cache_mb: int = _f(1024, "int", "memory bound (MB per worker) of the frozen-prefix "
                              "activation cache; 0 = off", low=0)
    lean_model: bool = _f(True, "bool", "exact shortcuts in the trial model: frozen linear "
                          "weights stored in bf16 under bf16 autocast, and the last encoder "
                          "layer computed at [CLS] only (BERT family)")


def _full_defaults() -> TrainingConfig:
    return TrainingConfig(train_examples=None, max_steps=None, epochs=3.0,
                          validation_examples=None, eval_every=100, patience=3,
                          rung_examples=None, frozen_cache_mb=0, length_window=1)


@dataclass(frozen=True)
class OptimizerConfig:
    learning_rate: float = _f(3e-3, "float", "AdamW learning rate (a candidate's "
                              "hyper.learning_rate overrides it)", low=0.0, high=1.0,
                              low_open=True)
    batch_size: int = _f(16, "int", "training batch size", low=1, high=65536)
    weight_decay: float = _f(0.0, "float", "AdamW weight decay (matrices only)", low=0.0,
                             high=1.0)
    warmup_ratio: float = _f(0.06, "float", "linear warmup share of the steps, then "
                             "linear decay to 0", low=0.0, high=0.5)
    max_grad_norm: float = _f(1.0, "float", "gradient clipping; 0 = off", low=0.0)


@dataclass(frozen=True)
class RewardConfig:
    lam: float = _f(1.0, "float", "λ: weight of the cost penalty", low=0.0, key="lambda")
    w_params: float = _f(1.0, "float", "weight of params_ratio in the penalty", low=0.0)
    # 1.0: the AutoPEFT workflow's R = metric − λ·(params_ratio + flops_ratio) by default
    w_flops: float = _f(1.0, "float", "weight of flops_ratio in the penalty", low=0.0)


@dataclass(frozen=True)
class ConstraintsConfig:
    max_params_ratio: float | None = _f(0.05, "float", "trainable/base params above this "
                                        "is infeasible", low=0.0, nullable=True)
    max_latency_ratio: float | None = _f(0.15, "float", "added inference latency above this "
                                         "is infeasible (decided from its 99% interval)",
                                         low=0.0, nullable=True)
    max_flops_ratio: float | None = _f(None, "float", "added FLOPs/token above this is "
                                       "infeasible", low=0.0, nullable=True)


@dataclass(frozen=True)
class ResourcesConfig:
    cpus: int = _f(1, "int", "CPU threads per trial (torch.set_num_threads)", low=1)
    gpus: float = _f(0.0, "float", "GPUs per trial (a fraction shares one)", low=0.0)


@dataclass(frozen=True)
class ExperimentConfig:
    name: str = _f("experiment", "str", "a label for logs and reports")
    model: str = _f("minilm", "str", "model reference (see autopeft.models)")
    trust_remote_code: bool = _f(False, "bool", "allow the model's own code to run")
    data: DataConfig = _f(DataConfig, "section")
    proxy: TrainingConfig = _f(TrainingConfig, "section")
    full: TrainingConfig = _f(_full_defaults, "section")
    optimizer: OptimizerConfig = _f(OptimizerConfig, "section")
    metric: str = _f("accuracy", "str", "validation metric to maximise",
                     choices=METRIC_NAMES)
    seed: int = _f(0, "int", "base seed; a trial's seed is derived from it", low=0)
    reward: RewardConfig = _f(RewardConfig, "section")
    constraints: ConstraintsConfig = _f(ConstraintsConfig, "section")
    resources: ResourcesConfig = _f(ResourcesConfig, "section")
    fidelity: str = _f("proxy", "str", "which training section a trial uses: proxy "
                       "(search) or full (finalize)", choices=FIDELITIES)
    # several tasks (autopeft/evaluation/multitask.py): a proxy trial trains the candidate
    # on all of them with one head each; finalize/train/export/calibrate use `target` only.
    # Given, `data` is the target's data; empty, the experiment is today's single task and
    # neither key appears in to_dict() (stored experiments keep their exact form)
    tasks: tuple[TaskConfig, ...] = field(default=(), metadata={"kind": "tasks", "doc":
                                          "several tasks, each with its own data"})
    target: str | None = _f(None, "str", "the task (a name under tasks) that finalize, "
                            "train, export and calibrate work on", nullable=True)
    source: str | None = field(default=None, compare=False, metadata={"kind": "internal"})

    @property
    def training(self) -> TrainingConfig:
        """The training section this config's fidelity selects."""
        return self.full if self.fidelity == "full" else self.proxy

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks)

    def task_metric(self, task: TaskConfig) -> str:
        return task.metric or self.metric

    def data_sections(self) -> list[tuple[str, DataConfig]]:
        """(YAML path, data section) of every task: [("data", data)] for one task."""
        if not self.tasks:
            return [("data", self.data)]
        return [(f"tasks.{t.name}.data", t.data) for t in self.tasks]

    def for_target(self) -> "ExperimentConfig":
        """The single-task experiment of the target task (itself when it has one task):
        what finalize, train, export and calibrate train, with the target's metric."""
        if not self.tasks:
            return self
        task = next(t for t in self.tasks if t.name == self.target)
        return dataclasses.replace(self, data=task.data, metric=self.task_metric(task),
                                   tasks=(), target=None)

    def for_final(self) -> "ExperimentConfig":
        """The target task at full fidelity (finalize's long training)."""
        return dataclasses.replace(self.for_target(), fidelity="full")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe dict with YAML keys; from_dict(to_dict()) == self."""
        d = _to_dict(self)
        if not self.tasks:
            del d["tasks"], d["target"]
            return d
        del d["data"]  # the target's, restored from `tasks` by from_dict
        d["tasks"] = {t.name: {k: v for k, v in _to_dict(t).items() if k != "name"}
                      for t in self.tasks}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, file: str | None = None) -> "ExperimentConfig":
        base = Path(file).resolve().parent if file else None
        cfg = _build(cls, d, file, "", base)
        _check(cfg, file)
        return cfg


def _yaml_key(f: dataclasses.Field) -> str:
    return f.metadata.get("key") or f.name


def _to_dict(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(obj):
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v):
            v = _to_dict(v)
        elif isinstance(v, tuple):
            v = list(v)
        out[_yaml_key(f)] = v
    return out


# Keys older autopeft versions accepted and stored with every study (as null unless set).
# `evaluator: module:factory` made autopeft import and call whatever module a file or a
# database row named; evaluators now come from Python only (an evaluator_factory).
_REMOVED_HOOKS = ("evaluator", "fake")


def _without_removed_hooks(data: Mapping[str, Any], file: str | None) -> Mapping[str, Any]:
    for key in _REMOVED_HOOKS:
        if data.get(key) is not None:
            raise ExperimentError(
                f"`{key}` is no longer an experiment setting: autopeft does not import code "
                f"that an experiment file or a stored study names", file=file, path=key,
                value=data[key],
                fix="remove it; to use your own evaluator, pass it from Python "
                    "(autopeft.cli.main(argv, evaluator_factory=...), or evaluator_factory= "
                    "of SerialExecutor / RayExecutor)")
    if any(key in data for key in _REMOVED_HOOKS):  # stored as null by older versions
        data = {k: v for k, v in data.items() if k not in _REMOVED_HOOKS}
    return data


def check_no_code_hooks(experiment: Mapping[str, Any], where: str | None = None) -> None:
    """Refuse an experiment (e.g. a stored study's) that names code to import."""
    _without_removed_hooks(experiment, where)


def _where(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _build(cls: type, data: Any, file: str | None, path: str, base: Path | None) -> Any:
    if not isinstance(data, Mapping):
        raise ExperimentError(f"expected a mapping, got {type(data).__name__}", file=file,
                              path=path or "<top>", value=data,
                              fix="write this section as `key: value` lines")
    by_key = {_yaml_key(f): f for f in fields(cls) if f.metadata.get("kind") != "internal"}
    if cls is ExperimentConfig:
        data = _without_removed_hooks(data, file)
    if cls is ExperimentConfig:
        _check_task_keys(data, file)
    unknown = [k for k in data if k not in by_key]
    if unknown and not (cls is ExperimentConfig and set(unknown) <= {"source"}):
        k = unknown[0]
        raise ExperimentError(f"unknown key {k!r}", file=file, path=_where(path, str(k)),
                              value=data[k], fix=f"use one of: {', '.join(by_key)}")
    kwargs: dict[str, Any] = {}
    for key, f in by_key.items():
        where = _where(path, key)
        if f.metadata["kind"] == "tasks":
            if data.get(key) is not None:
                kwargs[f.name] = _tasks(data[key], file, where, base)
        elif f.metadata["kind"] == "section":
            default = f.default_factory()  # type: ignore[misc]
            if key in data and data[key] is not None:
                merged = _to_dict(default)
                if not isinstance(data[key], Mapping):
                    _build(type(default), data[key], file, where, base)  # raises
                merged.update(data[key])
                if isinstance(default, TrainingConfig):
                    # giving one of the two step budgets clears the default of the other
                    for a, b in (("epochs", "max_steps"), ("max_steps", "epochs")):
                        if data[key].get(a) is not None and b not in data[key]:
                            merged[b] = None
                kwargs[f.name] = _build(type(default), merged, file, where, base)
            else:
                kwargs[f.name] = default
        elif key in data:
            kwargs[f.name] = _value(f, data[key], file, where)
    if cls is DataConfig and "source" in kwargs:
        kwargs["source"] = _resolve_source(kwargs["source"], base)
    if cls is ExperimentConfig and data.get("source"):
        kwargs["source"] = str(data["source"])
    if cls is ExperimentConfig and kwargs.get("tasks"):
        kwargs["data"] = _target(kwargs["tasks"], kwargs.get("target"), file).data
    return cls(**kwargs)


# A task's name is shown in tables and stored in metrics: the study names' alphabet
_TASK_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}")


def _check_task_keys(data: Mapping[str, Any], file: str | None) -> None:
    """`data` (one task) and `tasks` (several) exclude each other; `target` needs tasks."""
    has_tasks = data.get("tasks") is not None
    if has_tasks and data.get("data") is not None:
        raise ExperimentError("`data` and `tasks` are both given", file=file, path="data",
                              value=data["data"],
                              fix="with several tasks each task has its own data section "
                                  "under tasks.NAME.data: move it there, or remove `tasks` "
                                  "for a single-task experiment")
    if not has_tasks and data.get("target") is not None:
        raise ExperimentError("`target` names a task, but the experiment has no `tasks`",
                              file=file, path="target", value=data["target"],
                              fix="remove `target` (a single-task experiment is its own "
                                  "target), or list the tasks under `tasks:`")


def _tasks(v: Any, file: str | None, where: str, base: Path | None) -> tuple[TaskConfig, ...]:
    if not isinstance(v, Mapping):
        raise ExperimentError(f"expected a mapping of task names to task sections, got "
                              f"{v!r}", file=file, path=where, value=v,
                              fix="write `tasks:` then one `NAME: {data: {...}}` per task")
    if len(v) < 2:
        raise ExperimentError(f"`tasks` lists {len(v)} task(s); a multi-task experiment "
                              "needs at least two", file=file, path=where, value=_plain(v),
                              fix="add a task, or write one task's data under `data:` "
                                  "(a single-task experiment)")
    out = []
    for name, spec in v.items():
        at = f"{where}.{name}"
        if not isinstance(name, str) or not _TASK_NAME.fullmatch(name):
            raise ExperimentError(f"task name {name!r} cannot be used", file=file, path=at,
                                  value=name, fix="name a task with letters, digits, '_', "
                                                  "'.' and '-' (at most 64 characters)")
        if not isinstance(spec, Mapping) or spec.get("data") is None:
            raise ExperimentError(f"task {name!r} has no data section", file=file, path=at,
                                  value=_plain(spec) if isinstance(spec, Mapping) else spec,
                                  fix="give it one, e.g. `data: {source: builtin:sms_spam}`")
        task = _build(TaskConfig, spec, file, at, base)
        out.append(dataclasses.replace(task, name=name))
    return tuple(out)


def _target(tasks: tuple[TaskConfig, ...], target: str | None, file: str | None) -> TaskConfig:
    names = [t.name for t in tasks]
    if target is None:
        raise ExperimentError("a multi-task experiment needs a `target`", file=file,
                              path="tasks", value=names,
                              fix="add `target: NAME`, the task that finalize, train, export "
                                  "and calibrate work on (one of: " + ", ".join(names) + ")")
    for t in tasks:
        if t.name == target:
            return t
    raise ExperimentError(f"`target` {target!r} is not one of the tasks", file=file,
                          path="target", value=target, fix="use one of: " + ", ".join(names))


def _plain(v: Any) -> Any:
    """A JSON-safe deep copy (mappings -> dicts, sequences -> lists)."""
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def _value(f: dataclasses.Field, v: Any, file: str | None, where: str) -> Any:
    m = f.metadata
    kind = m["kind"]

    def bad(msg: str, fix: str) -> ExperimentError:
        return ExperimentError(msg, file=file, path=where, value=v, fix=fix)

    if v is None:
        if m["nullable"]:
            return None
        raise bad("value is missing (null)", f"give a {kind}: {m['doc']}")
    if kind == "mapping":
        if not isinstance(v, Mapping):
            raise bad(f"expected a mapping, got {v!r}", "write `key: value` lines")
        return _plain(v)
    if kind == "bool":
        if not isinstance(v, bool):
            raise bad(f"expected true or false, got {v!r}", "write true or false")
        return v
    if kind == "str":
        if not isinstance(v, str) or not v.strip():
            raise bad(f"expected a non-empty string, got {v!r}", m["doc"])
        if m["choices"] and v not in m["choices"]:
            raise bad(f"{v!r} is not allowed", f"use one of: {', '.join(m['choices'])}")
        return v
    if kind == "text":
        if isinstance(v, str) and v.strip():
            return v
        if (isinstance(v, (list, tuple)) and len(v) == 2
                and all(isinstance(x, str) and x.strip() for x in v)):
            return list(v)
        raise bad(f"expected a column name or a list of two, got {v!r}",
                  "write `text: sentence` or `text: [sentence1, sentence2]`")
    if kind == "int":
        if isinstance(v, bool) or not isinstance(v, int):
            if isinstance(v, float) and v.is_integer() and abs(v) < 2**53:
                v = int(v)
            else:
                raise bad(f"expected an integer, got {v!r}", m["doc"])
    elif kind == "float":
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise bad(f"expected a number, got {v!r}",
                      f"{m['doc']} (YAML reads 1e-3 as a string: write 1.0e-3)")
        v = float(v)
        if v != v or v in (float("inf"), float("-inf")):
            raise bad(f"expected a finite number, got {v!r}", m["doc"])
    lo, hi = m["low"], m["high"]
    if lo is not None and (v < lo or (m["low_open"] and v == lo)):
        op = ">" if m["low_open"] else ">="
        raise bad(f"{v!r} is out of range", f"use a value {op} {lo}: {m['doc']}")
    if hi is not None and v > hi:
        raise bad(f"{v!r} is out of range", f"use a value <= {hi}: {m['doc']}")
    return v


_FILE_SUFFIXES = (".csv", ".json", ".jsonl", ".parquet", ".tsv")


def _resolve_source(src: str, base: Path | None) -> str:
    """Relative data files are resolved against the experiment file's folder."""
    if src.startswith("builtin:") or not src.lower().endswith(_FILE_SUFFIXES):
        return src
    p = Path(os.path.expanduser(src))
    if not p.is_absolute() and base is not None:
        p = base / p
    return str(p)


def _check(cfg: ExperimentConfig, file: str | None) -> None:
    """Cross-field rules that no single field can check."""
    for sec in ("proxy", "full"):
        t: TrainingConfig = getattr(cfg, sec)
        if (t.max_steps is None) == (t.epochs is None):
            raise ExperimentError(
                "exactly one of max_steps and epochs must be set",
                file=file, path=sec, value={"max_steps": t.max_steps, "epochs": t.epochs},
                fix=f"set one and write the other as null (e.g. {sec}.epochs: null)")
    for where, d in cfg.data_sections():
        _check_data(d, file, where)


def _check_data(d: DataConfig, file: str | None, where: str) -> None:
    for key in ("validation", "test"):
        v = getattr(d, key)
        if v >= 1 and not float(v).is_integer():
            raise ExperimentError(f"{v!r} is neither a fraction below 1 nor a count",
                                  file=file, path=f"{where}.{key}", value=v,
                                  fix="write a fraction like 0.1 or a count like 500")
    fracs = [getattr(d, k) for k in ("validation", "test") if getattr(d, k) < 1]
    if sum(fracs) >= 0.9:
        raise ExperimentError("validation and test leave too little to train on",
                              file=file, path=where, value={"validation": d.validation,
                                                            "test": d.test},
                              fix="keep validation + test below 0.9 of the data")
    if d.source.startswith("builtin:") and d.source[8:] not in BUILTIN_DATASETS:
        raise ExperimentError(f"unknown built-in dataset {d.source!r}", file=file,
                              path=f"{where}.source", value=d.source,
                              fix="use one of: " + ", ".join(
                                  "builtin:" + n for n in BUILTIN_DATASETS))


# Built-in datasets: name -> (columns they provide).  autopeft.builtin_data reads them.
BUILTIN_DATASETS = {
    name: {"text": "text", "label": "label"}
    for name in ("trec6", "sms_spam", "vader_movies", "vader_tweets", "vader_amazon",
                 "vader_nyt", "rotten_tomatoes")
}


def load_experiment(path_or_name: str | os.PathLike) -> ExperimentConfig:
    """Read an experiment file (a path, or the name of a shipped one such as 'default')."""
    path = _locate(str(path_or_name))
    from autopeft import yamlio

    data, lines = yamlio.read_yaml_file(path, ExperimentError)
    try:
        if data is None:
            data = {}
        if isinstance(data, Mapping) and "source" in data:
            raise ExperimentError("unknown key 'source'", file=str(path), path="source",
                                  value=data["source"], fix="remove it (autopeft sets it)")
        cfg = ExperimentConfig.from_dict(data, file=str(path))
    except ExperimentError as exc:  # the schema's errors, given the line of their path
        raise yamlio.add_line(exc, str(path), lines) from None
    return dataclasses.replace(cfg, source=str(path))


def _locate(ref: str) -> Path:
    """A path, or the name of a shipped experiment (autopeft/data/experiments)."""
    from autopeft.resources import resolve

    return Path(resolve(ref, "experiments", error=ExperimentError)).resolve()
