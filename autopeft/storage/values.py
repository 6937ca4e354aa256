"""Converting between Python values and stored rows, and checking values before a write.

Everything that goes into a JSON column passes through plain_json, so what is stored is
plain JSON on every backend (see the Storage docstring for the non-finite float rule).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

from autopeft.exceptions import StorageError
from autopeft.names import RULE, study_name_problem
from autopeft.records import Cost, Metrics, TrialRecord, TrialState
from autopeft.storage.models import StudyRow, TrialRow
from autopeft.storage.snapshots import StudyInfo, StudySpec

MAX_NAME_LENGTH = 255


def trial_record(row: TrialRow) -> TrialRecord:
    return TrialRecord(
        number=row.number,
        state=TrialState(row.state),
        assignment=row.assignment,
        candidate=row.candidate,
        metrics=None if row.metrics is None else metrics_from_json(row.metrics),
        reward=row.reward,
        feasible=row.feasible,
        error=row.error,
        warm_start_from=row.warm_start_from,
        meta=row.meta,
        attempts=row.attempts,
        worker=row.worker,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


def metrics_from_json(stored: dict[str, Any]) -> Metrics:
    """Metrics from its stored JSON. A number it requires that was stored as null (it was
    NaN or inf) reads back as NaN; optional numbers (train_loss...) stay None."""
    d = _nan_for_required_floats(Metrics, stored)
    d["cost"] = _nan_for_required_floats(Cost, d["cost"])
    d["intermediate"] = [(s, math.nan if v is None else v) for s, v in d.get("intermediate", ())]
    return Metrics.from_dict(d)


def _nan_for_required_floats(cls: type, stored: Mapping[str, Any]) -> dict[str, Any]:
    required = {f.name for f in dataclasses.fields(cls) if f.type in ("float", float)}
    return {k: (math.nan if v is None and k in required else v) for k, v in stored.items()}


def study_info(row: StudyRow, counts: dict[str, int], best: float | None) -> StudyInfo:
    return StudyInfo(
        study_id=row.id, name=row.name, status=row.status, space_text=row.space_text,
        space_fingerprint=row.space_fingerprint, space_source=row.space_source,
        experiment=row.experiment, controller=row.controller,
        controller_settings=row.controller_settings, seed=row.seed, n_trials=row.n_trials,
        autopeft_version=row.autopeft_version, versions=row.versions,
        created_at=row.created_at, updated_at=row.updated_at, counts=counts,
        best_reward=best)


def spec_values(spec: Any, fields: dict[str, Any]) -> dict[str, Any]:
    names = StudySpec.field_names()
    if spec is not None and fields:
        raise TypeError("create_study takes a StudySpec or keyword fields, not both")
    if spec is not None:
        source = spec if isinstance(spec, Mapping) else {n: getattr(spec, n) for n in names
                                                         if hasattr(spec, n)}
        fields = dict(source)
    unknown = sorted(set(fields) - set(names))
    if unknown:
        raise TypeError(f"create_study got unknown field(s) {unknown}; known: {list(names)}")
    defaults = {"space_source": None, "controller_settings": {}, "n_trials": None,
                "versions": {}, "created_at": None}
    missing = [n for n in names if n not in fields and n not in defaults]
    if missing:
        raise TypeError(f"create_study is missing {missing}")
    return {**defaults, **fields}


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise StorageError(f"a study name must be a non-empty string without surrounding "
                           f"spaces, got {name!r}")
    problem = study_name_problem(name)  # it becomes a folder under --runs-dir
    if problem:
        raise StorageError(f"{problem}\n  fix: use {RULE}")
    return name


def to_state(value: TrialState | str) -> TrialState:
    try:
        return TrialState(value)
    except ValueError:
        raise StorageError(f"unknown trial state {value!r}; known: "
                           f"{', '.join(s.value for s in TrialState)}") from None


def to_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        item = getattr(value, "item", None)  # numpy integers
        value = item() if callable(item) else value
    if isinstance(value, bool) or not isinstance(value, int):
        raise StorageError(f"{what} must be an integer, got {value!r}")
    return value


def to_n_trials(value: Any) -> int:
    n = to_int(value, "n_trials")
    if n < 1:
        raise StorageError(f"n_trials must be at least 1, got {n}")
    return n


def finite_or_none(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def plain_json(value: Any, what: str, path: str = "") -> Any:
    """A copy of value as plain JSON (dict/list/str/int/float/bool/None); non-finite floats
    become None, tuples lists, numpy scalars Python ones. StorageError names what and
    where if something cannot be stored."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise StorageError(f"cannot store {what}: key {k!r} at {path or 'top level'} "
                                   f"is not a string (JSON keys must be)")
            out[k] = plain_json(v, what, f"{path}.{k}" if path else k)
        return out
    if isinstance(value, (list, tuple)):
        return [plain_json(v, what, f"{path}[{i}]") for i, v in enumerate(value)]
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item) and not isinstance(value, type):
        try:
            return plain_json(item(), what, path)
        except (TypeError, ValueError):
            pass
    raise StorageError(f"cannot store {what}: the value at {path or 'top level'} is a "
                       f"{type(value).__name__} ({value!r:.80}), which is not plain JSON")
