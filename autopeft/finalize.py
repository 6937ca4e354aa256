"""After the search: re-rank stored trials, re-train the best on the full task, train exports.

`finalize_study` is the AutoPEFT workflow's last step: the top-k candidates by proxy reward
are re-trained with the experiment's `full` schedule (whole train split, longer), then
scored on the held-out test split, which no controller has ever seen. A trial that
`autopeft calibrate` already trained under the same full experiment and seed is reused
(its stored metrics and checkpoint), not trained again. The winner is the
best full-training *validation* reward among those that meet the efficiency constraints;
its test score is reported, never used to choose (choosing on test would leak it).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

from autopeft.exceptions import ExportError
from autopeft.names import study_dir
from autopeft.records import EvalRequest, TrialRecord, TrialState

logger = logging.getLogger(__name__)


def check_out_dir(path: str | Path) -> Path:
    """An export target must be new or empty: refuse before anything is written."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ExportError(f"--out {path} is an existing file, not a directory; nothing was "
                          f"written.\n  fix: pass --out with a new or empty directory")
    if path.exists() and any(path.iterdir()):
        raise ExportError(f"the output directory {path} exists and is not empty; nothing "
                          f"was written.\n  fix: pass --out with a new or empty directory")
    return path


def rank_trials(storage: Any, name: str, *, lam: float | None = None,
                max_params: float | None = None) -> tuple[Any, list[tuple]]:
    """Completed trials re-scored (optionally with a new λ / params limit), best first.

    Returns (study info, [(trial, reward, feasible, reasons), ...]) in the order of
    autopeft.ranking (feasible first, reward down, trial number up). Nothing is
    retrained: the reward is recomputed from the stored metrics (ranking.rescore).
    """
    from autopeft.ranking import rescore

    info = storage.get_study(name)
    rescored = rescore(storage.get_trials(name, states=[TrialState.COMPLETE]),
                       info.experiment, lam=lam, max_params_ratio=max_params)
    return info, [(r.trial, r.reward, r.feasible, list(r.reasons)) for r in rescored]


def provenance(info: Any, trial: TrialRecord | None, reward: float | None,
               metrics: Any = None) -> dict[str, Any]:
    from autopeft.version import library_versions

    m = metrics if metrics is not None else (trial.metrics if trial else None)
    target = info.experiment.get("target") if info else None
    return {
        # a multi-task study: the candidate was searched on several tasks; finalize and
        # train use this one (the exported head is this task's)
        **({"target_task": target} if target else {}),
        "study": info.name if info else None,
        "trial": trial.number if trial else None,
        "seed": info.seed if info else None,
        "space_fingerprint": info.space_fingerprint if info else None,
        "space_source": info.space_source if info else None,
        "model": (info.experiment.get("model") if info else None),
        "experiment": dict(info.experiment) if info else None,
        "metrics": m.to_dict() if m is not None else None,
        "reward": reward,
        "library_versions": library_versions(),
    }


def _train_full(evaluator: Any, candidate: dict, experiment: dict, *, name: str,
                number: int, seed: int, checkpoint_dir: Path):
    from autopeft.evaluation.base import NullReporter

    request = EvalRequest(study=name, trial_number=number, candidate=candidate,
                          experiment=experiment, seed=seed,
                          checkpoint_dir=str(checkpoint_dir))
    return evaluator.evaluate(request, NullReporter())


def _export_trained(evaluator: Any, candidate_dict: dict, checkpoint: str, out: Path, *,
                    model_ref: str, prov: dict, seed: int) -> None:
    """Rebuild the candidate on the worker's in-memory base, load the trained weights,
    and export configs plus weights."""
    from autopeft import methods
    from autopeft.candidate import Candidate
    from autopeft.export import export_candidate

    candidate = Candidate.from_dict(candidate_dict)
    base = evaluator.setup().base
    built = methods.build(base, candidate, seed=seed)
    built.load_adapter_weights(checkpoint)
    export_candidate(candidate, out, model_ref=model_ref, provenance=prov, built=built)


def finalize_study(storage: Any, name: str, *, top_k: int = 3, out_dir: str | None = None,
                   log: Callable[[str], None] = logger.info) -> dict[str, Any]:
    from autopeft.calibrate import reusable
    from autopeft.config import ExperimentConfig
    from autopeft.evaluation.proxy import ProxyEvaluator
    from autopeft.reward import score
    from autopeft.study import DEFAULT_RUNS_DIR, trial_seed

    info, ranked = rank_trials(storage, name)
    chosen = [r for r in ranked if r[2]][: max(1, top_k)]
    if not chosen:
        raise ExportError(
            f"study {name!r} has no completed trial that meets the constraints "
            f"({len(ranked)} completed).\n  fix: run more trials with `autopeft resume "
            f"{name} --trials N`, or relax the experiment's constraints")
    study_cfg = ExperimentConfig.from_dict(info.experiment)
    final_cfg = study_cfg.for_final()  # a multi-task study: its target task alone
    if study_cfg.tasks:
        log(f"finalize: the search's proxy trained {len(study_cfg.tasks)} tasks "
            f"({', '.join(study_cfg.task_names)}); the full training uses the target task "
            f"{study_cfg.target!r} alone, with its own head")
    experiment = final_cfg.to_dict()
    runs = study_dir(storage.get_study_attrs(name).get("runs_dir", DEFAULT_RUNS_DIR),
                     name) / "final"  # never outside --runs-dir, whatever the stored name
    # checked before hours of training, not after
    export_dir = check_out_dir(Path(out_dir) if out_dir else runs / "export")
    evaluator = ProxyEvaluator(experiment)
    rows = []
    for trial, proxy_reward, _, _ in chosen:
        seed = trial_seed(info.seed, trial.number)
        done = reusable(storage, name, trial.number, experiment)
        if done is not None and done.seed == seed:  # `calibrate` trained it already
            log(f"finalize: trial {trial.number} was calibrated at full fidelity; reusing it")
            m = done.metrics
        else:
            log(f"finalize: training trial {trial.number} on the full task "
                f"({_summary(trial)})")
            m = _train_full(evaluator, dict(trial.candidate), experiment, name=name,
                            number=trial.number, seed=seed,
                            checkpoint_dir=runs / f"trial_{trial.number:05d}")
        s = score(m, final_cfg)
        rows.append({"trial": trial.number, "proxy_reward": proxy_reward,
                     "val_metric": m.metric, "test_metric": m.test_metric,
                     "reward": s.reward, "feasible": s.feasible, "reasons": list(s.reasons),
                     "params_ratio": m.cost.params_ratio,
                     "latency_ratio": m.cost.latency_ratio, "checkpoint": m.checkpoint,
                     "metrics": m.to_dict(), "seed": seed})
    # the order of autopeft.ranking: feasible first, reward down, trial number up
    winner = min(rows, key=lambda r: (not r["feasible"], -r["reward"], r["trial"]))
    trial = storage.get_trial(name, winner["trial"])
    from autopeft.records import Metrics

    prov = provenance(info, trial, winner["reward"], Metrics.from_dict(winner["metrics"]))
    prov["finalize"] = {k: v for k, v in winner.items() if k != "metrics"}
    _export_trained(evaluator, dict(trial.candidate), winner["checkpoint"], export_dir,
                    model_ref=final_cfg.model, prov=prov, seed=winner["seed"])
    result = {"candidates": rows, "winner": winner["trial"], "export_dir": str(export_dir)}
    storage.set_study_attr(name, "finalize", result)
    return result


def _summary(trial: TrialRecord) -> str:
    from autopeft.candidate import Candidate

    return Candidate.from_dict(trial.candidate).summary()


def train_exported(config: str, out: str, *, experiment_path: str | None = None,
                   seed: int | None = None,
                   log: Callable[[str], None] = logger.info) -> dict[str, Any]:
    """Fully train an exported candidate (a directory or its autopeft_candidate.yaml)."""
    import tempfile

    from autopeft.config import ExperimentConfig, load_experiment
    from autopeft.evaluation.proxy import ProxyEvaluator
    from autopeft.export import load_exported

    path = Path(config)
    if path.is_file():
        path = path.parent
    candidate, prov = load_exported(path)
    if experiment_path:
        cfg = load_experiment(experiment_path)
    elif prov.get("experiment"):
        cfg = ExperimentConfig.from_dict(prov["experiment"])
    else:
        cfg = load_experiment("default.yaml")
    target = cfg.target
    cfg = cfg.for_final()  # a multi-task experiment: its target task alone
    seed = cfg.seed if seed is None else seed
    if target:
        log(f"train: multi-task experiment; training its target task {target!r}")
    evaluator = ProxyEvaluator(cfg.to_dict())
    log(f"train: {candidate.summary()} on {cfg.model} ({cfg.data.source}), full schedule")
    with tempfile.TemporaryDirectory(prefix="autopeft-train-") as tmp:
        m = _train_full(evaluator, candidate.to_dict(), cfg.to_dict(), name="train",
                        number=0, seed=seed, checkpoint_dir=Path(tmp) / "ckpt")
        new_prov = dict(prov)
        new_prov.update({"trained_from": str(path), "metrics": m.to_dict(), "seed": seed,
                         "experiment": cfg.to_dict()})
        _export_trained(evaluator, candidate.to_dict(), m.checkpoint, Path(out),
                        model_ref=cfg.model, prov=new_prov, seed=seed)
    return {"val_metric": m.metric, "test_metric": m.test_metric, "metrics": m.to_dict()}
