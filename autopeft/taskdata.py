"""Task data: read a labeled text dataset, split it, tokenise it once, serve batches.

    raw = load_examples(cfg.data, file=cfg.source)        # texts + integer labels
    splits = make_splits(raw.labels, cfg.data)             # stratified train / val / test
    enc = encode(raw, tokenizer, max_length)               # cached on disk by fingerprint
    for batch in iter_batches(enc, idx, 32, generator=g):  # dynamic padding
        ...

Splits are drawn from data.split_seed, never from a trial's seed: every trial of a study
trains on the same examples and is scored on the same validation examples, and the test
split is never seen during a search (finalize reports on it).  The three splits are
disjoint by construction, and each keeps the class proportions of the whole.

Tokenisation happens once per (dataset content, tokenizer, max length): the result is
saved under $AUTOPEFT_CACHE (default ~/.cache/autopeft)/tokenized/<fingerprint>.pt and a
worker keeps it in memory for all its trials.  Heavy imports (torch, pandas, datasets)
stay inside the functions.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from autopeft._imports import require
from autopeft.config import DataConfig
from autopeft.exceptions import ExperimentError, FatalError

log = logging.getLogger(__name__)

_FORMAT = 1  # bump when the cached tensor layout changes


@dataclass(frozen=True)
class RawData:
    texts: tuple[Any, ...]          # str, or (str, str) for sentence pairs
    labels: np.ndarray              # int64 class ids 0..k-1
    label_names: tuple[str, ...]
    fingerprint: str                # sha256 of the examples' content

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def is_pair(self) -> bool:
        return bool(self.texts) and isinstance(self.texts[0], tuple)


@dataclass(frozen=True)
class Encoded:
    """Tokenised examples kept as one right-padded tensor; batches cut it to their length."""

    input_ids: Any                  # torch.int32 [N, max_length], pad_id after `lengths`
    lengths: Any                    # torch.int64 [N]
    token_type_ids: Any | None      # torch.int8 [N, max_length] for pair-aware tokenizers
    labels: Any                     # torch.int64 [N]
    pad_id: int
    fingerprint: str


def cache_dir() -> Path:
    return Path(os.environ.get("AUTOPEFT_CACHE") or Path.home() / ".cache" / "autopeft")


# ---------------------------------------------------------------- reading



def _read_table(data: DataConfig, file: str | None, where: str = "data") -> Any:
    """A pandas DataFrame from a local file or a hub dataset."""
    src = data.source
    suffix = Path(src).suffix.lower()
    if suffix in (".csv", ".tsv", ".json", ".jsonl", ".parquet"):
        if not Path(src).is_file():
            raise ExperimentError("data file not found", file=file, path=f"{where}.source",
                                  value=src, fix="give an existing file (relative paths "
                                  "are resolved against the experiment file's folder)")
        pd = require("pandas")
        try:
            if suffix == ".csv":
                return pd.read_csv(src)
            if suffix == ".tsv":
                return pd.read_csv(src, sep="\t")
            if suffix == ".parquet":
                return pd.read_parquet(src)
            lines = suffix == ".jsonl" or _looks_like_jsonl(src)
            return pd.read_json(src, lines=lines)
        except (ValueError, OSError) as exc:
            raise ExperimentError(f"cannot read the data file: {exc}", file=file,
                                  path=f"{where}.source", value=src,
                                  fix="check the file's format matches its suffix") from exc
    datasets = require("datasets")
    try:
        ds = datasets.load_dataset(src, data.hf_config, split=data.hf_split)
    except Exception as exc:  # noqa: BLE001 - offline / unknown name / bad split
        raise FatalError(
            f"{where}.source {src!r}: loading it from the Hugging Face hub failed: "
            f"{type(exc).__name__}: {exc}\n"
            f"  fix: check the name, {where}.hf_config and {where}.hf_split, and that this "
            "machine reaches the hub (or set HF_DATASETS_OFFLINE=1 with a filled cache); "
            "offline, use a built-in dataset (builtin:trec6, builtin:vader_tweets, ...: "
            "docs/EXPERIMENT.md) or a local csv/json/parquet file") from exc
    return ds.to_pandas()


def _looks_like_jsonl(path: str) -> bool:
    with open(path, encoding="utf-8") as fh:
        return fh.read(1).strip() == "{"


def load_examples(data: DataConfig, *, file: str | None = None,
                  where: str = "data") -> RawData:
    """Read the dataset named by `data` into texts and integer labels.

    `where` is the section's YAML path, named by every error (`tasks.NAME.data` for one
    task of a multi-task experiment)."""
    cols = data.text if isinstance(data.text, (list, tuple)) else [data.text]
    if data.source.startswith("builtin:"):
        name = data.source.split(":", 1)[1]
        from autopeft.builtin_data import READERS

        if name not in READERS:
            raise ExperimentError(f"unknown built-in dataset {data.source!r}", file=file,
                                  path=f"{where}.source", value=data.source,
                                  fix="use builtin:" + " or builtin:".join(READERS))
        if len(cols) != 1 or cols[0] != "text" or data.label != "label":
            raise ExperimentError("built-in datasets have the columns text and label",
                                  file=file, path=f"{where}.text", value=data.text,
                                  fix="write `text: text` and `label: label` (the defaults)")
        texts, labels = READERS[name]()
        rows: list[Any] = texts
    else:
        df = _read_table(data, file, where)
        for col, path in ([(c, f"{where}.text") for c in cols]
                          + [(data.label, f"{where}.label")]):
            if col not in df.columns:
                raise ExperimentError(f"column {col!r} is not in the data", file=file,
                                      path=path, value=col,
                                      fix=f"use one of: {', '.join(map(str, df.columns))}")
        df = _drop_empty(df, cols, data, file, where)
        labels = df[data.label].tolist()
        parts = [[str(x) for x in df[c].tolist()] for c in cols]
        rows = parts[0] if len(cols) == 1 else list(zip(*parts))
    names, ids = _label_ids(labels, file)
    if data.max_examples is not None and len(rows) > data.max_examples:
        keep = stratified_subset(ids, np.arange(len(ids)), data.max_examples,
                                 seed=data.split_seed)
        keep.sort()
        rows = [rows[i] for i in keep]
        ids = ids[keep]
    if len(names) < 2:
        raise ExperimentError(f"the labels have {len(names)} distinct value(s)", file=file,
                              path=f"{where}.label", value=names,
                              fix="a classification task needs at least two classes")
    h = hashlib.sha256()
    h.update(json.dumps(names).encode())
    for row, y in zip(rows, ids.tolist()):
        h.update(json.dumps([row, y], ensure_ascii=False).encode())
    log.info("read %d examples, %d classes from %s", len(rows), len(names), data.source)
    return RawData(tuple(rows), ids, tuple(names), h.hexdigest())


def _drop_empty(df: Any, cols: list[str], data: DataConfig, file: str | None,
                where: str = "data") -> Any:
    """The rows with every text and the label present; says what it drops, and why.

    A text that is missing or only whitespace cannot be classified, and a missing label
    cannot be learned. When nothing is left, the column to blame is named.
    """
    n = len(df)
    empty_text = np.zeros(n, dtype=bool)
    for c in cols:
        column = df[c]
        empty_text |= (column.isna() | column.astype(str).str.strip().eq("")).to_numpy()
    no_label = df[data.label].isna().to_numpy()
    if n and empty_text.all():
        raise ExperimentError(f"every one of the {n} rows has an empty text in "
                              f"{_columns(cols)}", file=file, path=f"{where}.text",
                              value=data.text, fix="point data.text at the column that "
                              "holds the texts")
    if n and no_label.all():
        raise ExperimentError(f"every one of the {n} rows has no label in column "
                              f"{data.label!r}", file=file, path=f"{where}.label",
                              value=data.label, fix="point data.label at the column that "
                              "holds the labels")
    drop = empty_text | no_label
    if drop.any():
        why = []
        if empty_text.any():
            why.append(f"{int(empty_text.sum())} with an empty text in {_columns(cols)}")
        if no_label.any():
            why.append(f"{int(no_label.sum())} without a label in column {data.label!r}")
        log.warning("dropped %d of %d rows of %s: %s", int(drop.sum()), n, data.source,
                    "; ".join(why))
    return df[~drop]


def _columns(cols: list[str]) -> str:
    return f"column {cols[0]!r}" if len(cols) == 1 else f"columns {cols!r}"


def check_data(data: DataConfig, *, file: str | None = None, where: str = "data") -> RawData:
    """Read the data and make the splits as a worker will, so that every data error
    (a missing column, one class, empty texts, too few examples of a class) is found in
    the driver before a study is created (autopeft.study.plan_study calls it)."""
    raw = load_examples(data, file=file, where=where)
    make_splits(raw.labels, data, file=file, label_names=raw.label_names, where=where)
    return raw


def _label_ids(labels: Sequence[Any], file: str | None) -> tuple[list[str], np.ndarray]:
    """Class ids in sorted order of the label values (ints sort numerically)."""
    values = [v.item() if hasattr(v, "item") else v for v in labels]
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        uniq = sorted(set(values))
    elif all(isinstance(v, float) and v.is_integer() for v in values):
        values = [int(v) for v in values]
        uniq = sorted(set(values))
    else:
        values = [str(v) for v in values]
        uniq = sorted(set(values))
    index = {v: i for i, v in enumerate(uniq)}
    return [str(u) for u in uniq], np.array([index[v] for v in values], dtype=np.int64)


# ---------------------------------------------------------------- splitting

def _allocate(counts: np.ndarray, n: int) -> np.ndarray:
    """Split n over classes in proportion to counts (largest remainder, capped by counts)."""
    total = counts.sum()
    if n >= total:
        return counts.copy()
    exact = counts * (n / total)
    take = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - take), kind="stable")
    for k in order[: n - take.sum()]:
        take[k] += 1
    return np.minimum(take, counts)


def stratified_subset(labels: np.ndarray, idx: np.ndarray, n: int, *,
                      seed: int) -> np.ndarray:
    """n indices from idx with the class proportions of labels[idx] (sorted)."""
    idx = np.asarray(idx)
    if n >= idx.size:
        return np.sort(idx)
    rng = np.random.default_rng(seed)
    y = labels[idx]
    classes, counts = np.unique(y, return_counts=True)
    take = _allocate(counts, n)
    out = [rng.permutation(idx[y == c])[:t] for c, t in zip(classes, take)]
    return np.sort(np.concatenate(out))


def _count(spec: float, n: int) -> int:
    return int(round(spec * n)) if spec < 1 else int(spec)


def make_splits(labels: np.ndarray, data: DataConfig, *, file: str | None = None,
                label_names: Sequence[str] | None = None,
                where: str = "data") -> dict[str, np.ndarray]:
    """Disjoint stratified train / validation / test indices (each sorted)."""
    n = labels.size
    n_val, n_test = _count(data.validation, n), _count(data.test, n)
    if n_val < 1 or n_test < 1 or n_val + n_test >= n:
        raise ExperimentError(f"{n} examples cannot give {n_val} validation and {n_test} "
                              "test examples and still leave some to train on", file=file,
                              path=where, value={"validation": data.validation,
                                                  "test": data.test},
                              fix="use smaller validation/test sizes or more data")
    rng = np.random.default_rng(data.split_seed)
    classes, counts = np.unique(labels, return_counts=True)
    take_test = _allocate(counts, n_test)
    take_val = _allocate(counts - take_test, n_val)
    short = [(int(c), int(k)) for c, k, t, v in zip(classes, counts, take_test, take_val)
             if t + v >= k]
    if short:
        c, k = short[0]
        label = repr(label_names[c]) if label_names is not None else f"with id {c}"
        raise ExperimentError(
            f"class {label} has {k} example(s): none is left to train on after the validation "
            f"and test splits ({len(short)} class(es) like this)", file=file, path=where,
            value={"validation": data.validation, "test": data.test},
            fix="add examples of the rare classes, or use smaller validation/test sizes")
    parts: dict[str, list[np.ndarray]] = {"train": [], "validation": [], "test": []}
    for c, t, v in zip(classes, take_test, take_val):
        members = rng.permutation(np.flatnonzero(labels == c))
        parts["test"].append(members[:t])
        parts["validation"].append(members[t:t + v])
        parts["train"].append(members[t + v:])
    return {k: np.sort(np.concatenate(v)) for k, v in parts.items()}


def trial_subsets(labels: np.ndarray, splits: dict[str, np.ndarray], data: DataConfig,
                  train_cfg: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(train, validation, rung) indices of one trial under a training section
    (autopeft.config.TrainingConfig): stratified subsets of the train and validation
    splits, and the fixed subset of validation that intermediate evaluations score (None:
    they score all of it).  Seeded from data.split_seed only, so every trial of a study,
    and each task of a multi-task experiment as its own experiment would, sees the same."""
    seed = data.split_seed
    train = stratified_subset(labels, splits["train"], train_cfg.train_examples or 10**12,
                              seed=seed)
    val = stratified_subset(labels, splits["validation"],
                            train_cfg.validation_examples or 10**12, seed=seed + 1)
    rung = None
    if train_cfg.rung_examples is not None and train_cfg.rung_examples < len(val):
        rung = stratified_subset(labels, val, train_cfg.rung_examples, seed=seed + 2)
    return train, val, rung


# ---------------------------------------------------------------- tokenising

def tokenizer_fingerprint(tokenizer: Any) -> str:
    h = hashlib.sha256()
    h.update(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        # to_str() also holds the last call's truncation/padding settings: leave those out
        state = json.loads(backend.to_str())
        state.pop("truncation", None)
        state.pop("padding", None)
        h.update(json.dumps(state, sort_keys=True).encode())
    else:
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    h.update(json.dumps([str(tokenizer.all_special_tokens), tokenizer.padding_side,
                         tokenizer.truncation_side,
                         getattr(tokenizer, "model_input_names", None)]).encode())
    return h.hexdigest()


def encode(raw: RawData, tokenizer: Any, max_length: int, *,
           cache: Path | None = None) -> Encoded:
    """Tokenise every example once; reuse the on-disk result when the inputs match."""
    torch = require("torch")
    key = hashlib.sha256(json.dumps([_FORMAT, raw.fingerprint,
                                     tokenizer_fingerprint(tokenizer),
                                     max_length]).encode()).hexdigest()[:32]
    path = (cache or cache_dir()) / "tokenized" / f"{key}.pt"
    if path.is_file():
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            log.info("tokenised data from cache %s", path)
            return _from_blob(blob, key)
        except Exception as exc:  # noqa: BLE001 - a torn or stale file: rebuild it
            log.warning("ignoring unreadable cache file %s (%s)", path, exc)
    blob = _tokenise(raw, tokenizer, max_length)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(blob, tmp)
        os.replace(tmp, path)  # atomic: concurrent workers never read half a file
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    log.info("tokenised %d examples (max_length=%d) into %s", len(raw.texts), max_length,
             path)
    return _from_blob(blob, key)


def _tokenise(raw: RawData, tokenizer: Any, max_length: int) -> dict[str, Any]:
    torch = require("torch")
    if raw.is_pair:
        first, second = [list(c) for c in zip(*raw.texts)]
        out = tokenizer(first, second, truncation=True, max_length=max_length)
    else:
        out = tokenizer(list(raw.texts), truncation=True, max_length=max_length)
    ids = out["input_ids"]
    pad = tokenizer.pad_token_id
    if pad is None:
        pad = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    n = len(ids)
    input_ids = torch.full((n, max_length), int(pad), dtype=torch.int32)
    lengths = torch.zeros(n, dtype=torch.int64)
    tt = out.get("token_type_ids")
    token_types = torch.zeros((n, max_length), dtype=torch.int8) if tt is not None else None
    for i, row in enumerate(ids):
        input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.int32)
        lengths[i] = len(row)
        if token_types is not None:
            token_types[i, : len(row)] = torch.tensor(tt[i], dtype=torch.int8)
    return {"input_ids": input_ids, "lengths": lengths, "token_type_ids": token_types,
            "labels": torch.as_tensor(raw.labels, dtype=torch.int64), "pad_id": int(pad)}


def _from_blob(blob: dict[str, Any], key: str) -> Encoded:
    return Encoded(blob["input_ids"], blob["lengths"], blob["token_type_ids"],
                   blob["labels"], int(blob["pad_id"]), key)


# ---------------------------------------------------------------- batching

def collate(enc: Encoded, idx: Any, device: Any = "cpu") -> dict[str, Any]:
    """One batch padded to its own longest example (dynamic padding, no sorting)."""
    torch = require("torch")
    idx = torch.as_tensor(idx, dtype=torch.int64)
    lengths = enc.lengths[idx]
    width = int(lengths.max())
    batch = {
        "input_ids": enc.input_ids[idx, :width].long(),
        "attention_mask": (torch.arange(width)[None, :] < lengths[:, None]).long(),
    }
    if enc.token_type_ids is not None:
        batch["token_type_ids"] = enc.token_type_ids[idx, :width].long()
    batch["labels"] = enc.labels[idx]
    return {k: v.to(device) for k, v in batch.items()}


def iter_batches(enc: Encoded, idx: np.ndarray, batch_size: int, *, generator: Any = None,
                 device: Any = "cpu") -> Iterator[dict[str, Any]]:
    """Batches over idx: shuffled with the torch.Generator when one is given, else in order."""
    torch = require("torch")
    order = torch.as_tensor(idx if torch.is_tensor(idx) else np.asarray(idx),
                            dtype=torch.int64)
    if generator is not None:
        order = order[torch.randperm(order.numel(), generator=generator)]
    for start in range(0, order.numel(), batch_size):
        yield collate(enc, order[start:start + batch_size], device)
