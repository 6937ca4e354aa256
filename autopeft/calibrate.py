"""Calibration: does the proxy's ranking of a study hold at full training?

`calibrate_study(storage, name, k=6)` retrains k of the study's completed proxy trials
with the experiment's `full` schedule (what finalize trains), scores each on the
validation split and on the held-out test split, and measures how far the proxy's order
agrees with the full training's:

- which k: the proxy's top ceil(k/2) feasible trials, then the rest spread evenly over
  the remaining feasible ranked trials (the centre of k - ceil(k/2) equal slices of that
  tail): deterministic, and it covers both the decision that matters (the top) and
  enough spread to see whether the order holds at all.
- Kendall's tau-b between the proxy validation *reward* (the search's order) and the
  full-training *test reward* (the test score minus the same cost penalty: the cost is
  the candidate's, the same at both fidelities). Test, not full validation: the full
  validation set contains the proxy's own validation examples, so the two would share
  their evaluation noise and agree more than they should. tau on full validation is
  shown beside it.
- top-1 regret: the test reward of the best of the k minus that of the proxy's best, in
  points (x100). With lambda = 0 it is exactly the test accuracy lost by trusting the
  proxy; the accuracies are printed with it.
- warnings (tau < 0.6 or regret > 1 point) with suggestions read from the study's own
  numbers: curves still rising at the last evaluation, top candidates closer together
  than the noise of the proxy's validation subset, too few evaluations per trial.

Storage: calibration results are NOT trials. Each is a study attribute
`calibration/NNNNN` (NNNNN: the proxy trial it calibrates), so the search budget
(n_trials, exactly-N), the controller, the pruner and autopeft.ranking never see them.
Crash safety follows the study loop: the record is written ("running") before training
starts and finished after; a run killed at any moment re-runs the records it finds
unfinished and keeps the finished ones. Two calibrate processes on one study at the same
time are not coordinated (both would train an unfinished record; the last write wins).

finalize reuses a complete record whose schedule (the full experiment) matches.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from autopeft.exceptions import ConfigError, ExportError, FatalError, TrialFailedError
from autopeft.records import EvalRequest, Metrics, TrialRecord, TrialState

logger = logging.getLogger(__name__)

ATTR_PREFIX = "calibration/"
TAU_WARN = 0.6          # the target: below it the proxy's order is not trusted
REGRET_WARN = 1.0       # points of test reward
STATUSES = ("running", "complete", "failed", "interrupted")


@dataclasses.dataclass(frozen=True)
class CalibrationRecord:
    """One proxy trial retrained at full fidelity (stored as a study attribute)."""

    proxy_trial: int
    status: str
    seed: int
    candidate: Mapping[str, Any]
    schedule: str                       # schedule_key of the full experiment
    attempts: int = 1
    proxy_reward: float | None = None
    proxy_metric: float | None = None
    metrics: Metrics | None = None      # full training: metric = validation, test_metric
    reward: float | None = None         # full validation reward (finalize chooses on it)
    test_reward: float | None = None    # full test reward (calibrate ranks on it)
    feasible: bool | None = None
    error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    fidelity: str = "full"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["candidate"] = dict(self.candidate)
        d["metrics"] = None if self.metrics is None else self.metrics.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CalibrationRecord":
        d = dict(d)
        d["metrics"] = None if d.get("metrics") is None else Metrics.from_dict(d["metrics"])
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclasses.dataclass(frozen=True)
class Agreement:
    """How two scorings of the same items agree (calibrate and proxy_fidelity)."""

    tau: float
    regret_points: float     # full score of the full-best minus that of the proxy-best, x100
    top3_recall: bool        # is the full-training best in the proxy's top 3?
    proxy_best: int          # index into the inputs
    full_best: int
    n: int


def agreement(proxy: Sequence[float], full: Sequence[float]) -> Agreement:
    """Kendall tau-b, top-1 regret and top-3 recall of `proxy` as a predictor of `full`.

    Ties in the proxy go to the earlier item (the lower trial number in a study)."""
    from autopeft.metrics import kendall_tau

    if len(proxy) != len(full) or len(proxy) < 2:
        raise ValueError("agreement needs two scorings of the same >= 2 items")
    order = sorted(range(len(proxy)), key=lambda i: (-proxy[i], i))
    full_best = max(range(len(full)), key=lambda i: (full[i], -i))
    return Agreement(tau=float(kendall_tau(proxy, full)),
                     regret_points=100.0 * (full[full_best] - full[order[0]]),
                     top3_recall=full_best in order[:3], proxy_best=order[0],
                     full_best=full_best, n=len(proxy))


@dataclasses.dataclass(frozen=True)
class CalibrationResult:
    records: list[CalibrationRecord]       # the selected ones, in proxy order
    agreement: Agreement | None            # None when fewer than 2 completed
    tau_validation: float | None           # tau on full *validation* (shares noise)
    warnings: list[str]
    trained: list[int]                     # proxy trials trained by this run
    reused: list[int]                      # found complete and kept


# -- which trials -------------------------------------------------------------------------
def select(ranked: Sequence[TrialRecord], k: int) -> list[TrialRecord]:
    """The proxy's top ceil(k/2), then the rest at the centres of equal slices of the
    remaining ranked trials (deterministic); all of them when there are <= k."""
    if len(ranked) <= k:
        return list(ranked)
    top = math.ceil(k / 2)
    tail = list(ranked[top:])
    rest = k - top
    picks = [tail[int((i + 0.5) * len(tail) / rest)] for i in range(rest)]
    return list(ranked[:top]) + picks


def feasible_ranked(storage: Any, name: str) -> list[TrialRecord]:
    """The study's feasible COMPLETE proxy trials, best first (autopeft.ranking)."""
    from autopeft.ranking import rank

    return [t for t in rank(storage.get_trials(name, states=[TrialState.COMPLETE]))
            if t.feasible is not False]


# -- storage ------------------------------------------------------------------------------
def full_experiment(experiment: Mapping[str, Any]) -> dict[str, Any]:
    """The study's experiment at full fidelity (what finalize trains with)."""
    from autopeft.config import ExperimentConfig

    return ExperimentConfig.from_dict(dict(experiment)).for_final().to_dict()


def schedule_key(experiment: Mapping[str, Any]) -> str:
    """A fingerprint of the full experiment: a record is reused only under the same one."""
    text = json.dumps(dict(experiment), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def attr_key(number: int) -> str:
    return f"{ATTR_PREFIX}{int(number):05d}"


def load_records(storage: Any, name: str) -> dict[int, CalibrationRecord]:
    """Every stored calibration record of a study, by proxy trial number."""
    out = {}
    for key, value in storage.get_study_attrs(name).items():
        if key.startswith(ATTR_PREFIX) and isinstance(value, Mapping):
            rec = CalibrationRecord.from_dict(value)
            out[rec.proxy_trial] = rec
    return dict(sorted(out.items()))


def _save(storage: Any, name: str, rec: CalibrationRecord) -> None:
    storage.set_study_attr(name, attr_key(rec.proxy_trial), rec.to_dict())


def reusable(storage: Any, name: str, number: int,
             experiment: Mapping[str, Any]) -> CalibrationRecord | None:
    """A complete record of trial `number` trained under exactly `experiment` (the full
    one) whose checkpoint is still on disk, or None (finalize then trains it)."""
    rec = load_records(storage, name).get(int(number))
    if rec is None or rec.status != "complete" or rec.metrics is None \
            or rec.schedule != schedule_key(experiment):
        return None
    ckpt = rec.metrics.checkpoint
    if ckpt and not Path(ckpt).exists():
        return None
    return rec


# -- the run ------------------------------------------------------------------------------
def calibrate_study(storage: Any, name: str, *, k: int = 6, evaluator: Any = None,
                    evaluator_factory: Any = None,
                    log: Callable[[str], None] = logger.info) -> CalibrationResult:
    """Retrain k proxy trials at full fidelity, store them, measure the agreement.

    Run again after a stop or a kill: finished records are kept, unfinished ones re-run.
    `evaluator`: an Evaluator to use instead of the experiment's (tests); or
    `evaluator_factory` (experiment -> Evaluator), as `autopeft.cli.main` passes it."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ConfigError("calibrate needs at least 2 trials to compare two rankings",
                          value=k, fix="pass --k N with N >= 2 (default 6)")
    info = storage.get_study(name)
    ranked = feasible_ranked(storage, name)
    if len(ranked) < 2:
        raise ExportError(
            f"study {name!r} has {len(ranked)} feasible completed trial(s); calibrate "
            f"compares at least 2.\n  fix: run more trials with `autopeft resume {name} "
            f"--trials N`, or relax the experiment's constraints")
    chosen = select(ranked, k)
    stored, trained, reused = train_trials(storage, name, chosen, evaluator=evaluator,
                                           evaluator_factory=evaluator_factory, log=log)
    records = [stored[t.number] for t in chosen]
    return summarize(records, chosen, info.experiment, trained=trained, reused=reused)


def train_trials(storage: Any, name: str, trials: Sequence[TrialRecord], *,
                 evaluator: Any = None, evaluator_factory: Any = None,
                 log: Callable[[str], None] = logger.info
                 ) -> tuple[dict[int, CalibrationRecord], list[int], list[int]]:
    """Train the given trials of a study at full fidelity, each stored as its calibration
    record as soon as it ends (so finalize reuses it, and a rerun after a kill keeps it).

    Any trial may be given (pruned ones too: the candidate is trained from scratch).
    A record already finished under the same full schedule is kept, not trained again.
    Returns (every stored record by trial number, the trials trained now, those kept)."""
    from autopeft.evaluation.base import NullReporter, make_evaluator
    from autopeft.names import study_dir
    from autopeft.study import DEFAULT_RUNS_DIR, trial_seed

    info = storage.get_study(name)
    experiment = full_experiment(info.experiment)
    key = schedule_key(experiment)
    runs = study_dir(storage.get_study_attrs(name).get("runs_dir", DEFAULT_RUNS_DIR), name)
    stored = load_records(storage, name)
    trained, reused = [], []
    for trial in trials:
        old = stored.get(trial.number)
        if old is not None and old.schedule == key and old.status in ("complete", "failed"):
            reused.append(trial.number)
            continue
        if evaluator is None:
            evaluator = make_evaluator(experiment, evaluator_factory)
        proxy = "pruned" if trial.reward is None else f"proxy reward {trial.reward:.4f}"
        log(f"calibrate: training trial {trial.number} at full fidelity ({proxy})")
        stored[trial.number] = _train(storage, name, trial, old, evaluator, experiment,
                                      key, seed=trial_seed(info.seed, trial.number),
                                      checkpoint_dir=runs / "calibrate"
                                      / f"trial_{trial.number:05d}",
                                      reporter=NullReporter())
        trained.append(trial.number)
    return stored, trained, reused


def _train(storage: Any, name: str, trial: TrialRecord, old: CalibrationRecord | None,
           evaluator: Any, experiment: dict, key: str, *, seed: int, checkpoint_dir: Path,
           reporter: Any) -> CalibrationRecord:
    from autopeft.reward import score

    rec = CalibrationRecord(
        proxy_trial=trial.number, status="running", seed=seed,
        candidate=dict(trial.candidate), schedule=key,
        attempts=(old.attempts + 1) if old is not None and old.schedule == key else 1,
        proxy_reward=trial.reward,
        proxy_metric=None if trial.metrics is None else trial.metrics.metric,
        started_at=time.time())
    _save(storage, name, rec)  # written before training: a kill leaves it "running"
    request = EvalRequest(study=name, trial_number=trial.number, candidate=trial.candidate,
                          experiment=experiment, seed=seed, checkpoint_dir=str(checkpoint_dir))
    try:
        m = evaluator.evaluate(request, reporter)
    except TrialFailedError as exc:  # the candidate itself: kept as failed, not retried
        rec = dataclasses.replace(rec, status="failed", error=str(exc),
                                  finished_at=time.time())
        _save(storage, name, rec)
        return rec
    except BaseException as exc:  # fatal, Ctrl-C, a bug: re-run next time
        _save(storage, name, dataclasses.replace(rec, status="interrupted",
                                                 error=f"{type(exc).__name__}: {exc}"))
        if isinstance(exc, Exception) and not isinstance(exc, FatalError):
            raise FatalError(f"calibrating trial {trial.number} failed: {exc}") from exc
        raise
    val = score(m, experiment)
    test = None
    if m.test_metric is not None:
        test = score(dataclasses.replace(m, metric=float(m.test_metric)), experiment).reward
    rec = dataclasses.replace(rec, status="complete", metrics=m, reward=float(val.reward),
                              test_reward=None if test is None else float(test),
                              feasible=bool(val.feasible), finished_at=time.time())
    _save(storage, name, rec)
    return rec


# -- the figures and the advice -----------------------------------------------------------
def summarize(records: Sequence[CalibrationRecord], proxies: Sequence[TrialRecord],
              experiment: Mapping[str, Any], *, trained: Sequence[int] = (),
              reused: Sequence[int] = ()) -> CalibrationResult:
    """Agreement and warnings over the complete records (pure: no storage)."""
    by_number = {t.number: t for t in proxies}
    done = [r for r in records if r.status == "complete" and r.test_reward is not None
            and r.proxy_reward is not None]
    agree, tau_val, warnings = None, None, []
    if len(done) >= 2:
        from autopeft.metrics import kendall_tau

        agree = agreement([r.proxy_reward for r in done], [r.test_reward for r in done])
        tau_val = float(kendall_tau([r.proxy_reward for r in done],
                                    [r.reward for r in done]))
        if agree.tau < TAU_WARN or agree.regret_points > REGRET_WARN:
            warnings = advice(done, [by_number[r.proxy_trial] for r in done
                                     if r.proxy_trial in by_number], experiment, agree)
    return CalibrationResult(list(records), agree, tau_val, warnings, list(trained),
                             list(reused))


def advice(done: Sequence[CalibrationRecord], proxies: Sequence[TrialRecord],
           experiment: Mapping[str, Any], agree: Agreement) -> list[str]:
    """What to change in the proxy, read from this study's curves and sizes."""
    from autopeft.config import ExperimentConfig

    proxy = ExperimentConfig.from_dict(dict(experiment)).proxy
    head = (f"the proxy's ranking is not reliable here: Kendall tau {agree.tau:.2f} "
            f"(want >= {TAU_WARN}), top-1 regret {agree.regret_points:.2f} points "
            f"(want <= {REGRET_WARN:.0f})")
    out = [head]
    curves = [t.metrics.intermediate for t in proxies
              if t.metrics is not None and len(t.metrics.intermediate) >= 2]
    if curves:
        gains = [100 * (c[-1][1] - c[-2][1]) for c in curves]
        at_last = sum(c[-1][1] > max(v for _, v in c[:-1]) for c in curves)
        gain = statistics.median(gains)
        if gain > 0.5 or at_last * 2 > len(curves):
            steps = proxy.max_steps or "the proxy's"
            out.append(
                f"the proxy curves were still rising at the last evaluation (median "
                f"{gain:+.1f} points over the last {proxy.eval_every} steps; best score at "
                f"the last evaluation in {at_last} of {len(curves)} trials): train longer, "
                f"e.g. proxy.max_steps {steps} -> "
                f"{2 * proxy.max_steps if proxy.max_steps else 'x2'}")
    full_best = [r.metrics.extra.get("best_step") for r in done if r.metrics is not None]
    full_best = [int(s) for s in full_best if isinstance(s, (int, float))]
    if full_best and proxy.max_steps and statistics.median(full_best) >= 3 * proxy.max_steps:
        out.append(f"full training peaked at step {statistics.median(full_best):.0f} "
                   f"(median), {statistics.median(full_best) / proxy.max_steps:.0f}x the "
                   f"proxy's {proxy.max_steps} steps: the proxy sees only the start of "
                   f"the curve; raise proxy.max_steps")
    metrics = [t.metrics.metric for t in proxies if t.metrics is not None]
    n_val = [t.metrics.extra.get("n_validation") for t in proxies if t.metrics is not None]
    n_val = [int(n) for n in n_val if isinstance(n, (int, float)) and n > 0] or \
        ([proxy.validation_examples] if proxy.validation_examples else [])
    if len(metrics) >= 2 and n_val:
        n = min(n_val)
        p = min(max(statistics.median(metrics), 0.01), 0.99)
        se = 100 * math.sqrt(p * (1 - p) / n)
        top = sorted(metrics, reverse=True)[: max(2, math.ceil(len(metrics) / 2))]
        spread = 100 * (top[0] - top[-1])
        if spread < 2 * se:
            out.append(f"the proxy's top candidates lie within {spread:.1f} points, under "
                       f"twice the +-{se:.1f}-point standard error of a score on {n} "
                       f"validation examples: raise proxy.validation_examples {n} -> {4 * n} "
                       f"(halves the error)")
    reports = [len(c) for c in curves]
    if reports and statistics.median(reports) < 3:
        out.append(f"the proxy evaluates only {statistics.median(reports):.0f} time(s) per "
                   f"trial (eval_every {proxy.eval_every}): its best-checkpoint score rests "
                   f"on few points; try proxy.eval_every {max(1, proxy.eval_every // 2)}")
    if len(out) == 1:
        out.append(f"no single cause shows in this study's curves: calibrate more trials "
                   f"(--k {2 * len(done)}) before trusting the proxy's order, or raise "
                   f"proxy.max_steps and proxy.validation_examples")
    return out
