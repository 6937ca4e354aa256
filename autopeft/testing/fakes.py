"""Fakes for testing controllers and pruners without training anything (the fake
evaluators and the fake cost are in autopeft.testing.evaluators).

- `AnalyticObjective`: a deterministic, seeded function of an assignment -> (metric, Cost),
  with per-option effects, a few pairwise interactions and a capacity term, so that a
  learning controller has structure to find and random search has room to lose.
- `Driver`: plays the study loop for a controller (ask while capacity allows, tell the
  oldest trial first), with scripted failures and pruned trials; resumable across a
  controller swap, which is how the contract suite checks state round trips.
- `WeightEvaluator`: scripted PBT training; a trial starts from the "weight" its
  warm_start_from trial ended with, so inheritance can be checked exactly.
- `synthetic_table`: a measurement table in the format experiments/bench_controllers.py
  reads, made with AnalyticObjective. It is synthetic: never present it as results.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from autopeft.records import Cost, Metrics, Proposal, TrialRecord, TrialState
from autopeft.testing.evaluators import (  # noqa: F401 - the one fake cost
    BASE_FLOPS_PER_TOKEN,
    BASE_PARAMS,
    fake_cost,
    trainable_params,
)

# A space with a range of every kind (int log, float log, float stepped, float plain, int
# stepped) under a condition: the shipped spaces are mostly categorical.
MIXED_SPACE_YAML = """
space: mixed
version: 1
select: any
modules:
  lora:
    rank: {low: 2, high: 64, log: true}
    alpha: {low: 1.0, high: 64.0, log: true}
    dropout: {low: 0.0, high: 0.3, step: 0.05}
    targets: [[q, v], [q, k, v, o]]
    init: [default, gaussian]
    init_scale: {low: 0.1, high: 1.0}
hyperparameters:
  learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}
  batch_size: {low: 8, high: 64, step: 8}
  warmup_ratio: {low: 0.0, high: 0.2}
"""


def mixed_space(num_layers: int = 6) -> Any:
    from autopeft.space import parse_space

    return parse_space(MIXED_SPACE_YAML, "<mixed>").bind(num_layers=num_layers,
                                                         hidden_size=384)


class AnalyticObjective:
    """metric(assignment) in (0, 1), higher is better; cost from `fake_cost`.

    raw = sum of per-decision option effects + interactions of a few decision pairs + a
    saturating capacity bonus - a penalty for very large modules; metric = 0.5 + 0.45 *
    tanh(raw): smooth, no ties at a clip.
    """

    def __init__(self, space: Any, seed: int = 0, scale: float = 0.6) -> None:
        self.space = space
        rng = np.random.default_rng([seed, 12345])
        self.sizes = [len(d.options()) for d in space.decisions]
        n = max(1, len(self.sizes))
        self.effects = [rng.normal(0, scale / math.sqrt(n), k) for k in self.sizes]
        pairs = min(4, n * (n - 1) // 2)
        self.pairs = [tuple(sorted(rng.choice(n, 2, replace=False).tolist()))
                      for _ in range(pairs)] if n > 1 else []
        self.inter = [rng.normal(0, scale / 2, (self.sizes[i], self.sizes[j]))
                      for i, j in self.pairs]

    def candidate(self, assignment: Mapping[str, Any]) -> dict[str, Any]:
        return self.space.to_candidate(dict(assignment)).to_dict()

    def cost(self, assignment: Mapping[str, Any]) -> Cost:
        return fake_cost(self.candidate(assignment))

    def metric(self, assignment: Mapping[str, Any]) -> float:
        codes = self.space.encode(dict(assignment))
        m = 0.0
        for i, c in enumerate(codes):
            if c >= 0:
                m += float(self.effects[i][c])
        for (i, j), table in zip(self.pairs, self.inter):
            if codes[i] >= 0 and codes[j] >= 0:
                m += float(table[codes[i], codes[j]])
        ratio = self.cost(assignment).params_ratio
        m += 0.2 * (1 - math.exp(-ratio * 500)) - 2.0 * max(0.0, ratio - 0.05)
        return float(0.5 + 0.45 * math.tanh(m))

    def __call__(self, assignment: Mapping[str, Any]) -> tuple[float, Cost]:
        return self.metric(assignment), self.cost(assignment)


def make_record(number: int, proposal: Proposal, metric: float | None, cost: Cost | None, *,
                state: TrialState = TrialState.COMPLETE, steps: int = 100,
                candidate: Mapping[str, Any] | None = None) -> TrialRecord:
    """A finished TrialRecord as the study would store it; reward = metric."""
    metrics = None
    if state is not TrialState.FAILED and metric is not None and cost is not None:
        metrics = Metrics(metric=metric, metric_name="accuracy", cost=cost,
                          intermediate=((steps, metric),), steps=steps,
                          pruned=state is TrialState.PRUNED)
    return TrialRecord(number=number, state=state, assignment=dict(proposal.assignment),
                       candidate=dict(candidate or {}), metrics=metrics,
                       reward=None if metrics is None else metric,
                       error="scripted failure" if state is TrialState.FAILED else None,
                       warm_start_from=proposal.warm_start_from, meta=dict(proposal.meta))


@dataclass
class Driver:
    """The study loop in miniature. `evaluate(number, proposal) -> (metric, cost)`; a
    metric of None makes the trial FAILED.

    Keeps up to `parallel` trials in flight; tells the oldest when full, when the
    controller says "wait", or at the end. Trial numbers with `number % fail_every ==
    fail_every - 1` fail, and `% prune_every == prune_every - 1` are pruned (0 = never).
    """

    evaluate: Callable[[int, Proposal], tuple[float, Cost]]
    parallel: int = 1
    fail_every: int = 0
    prune_every: int = 0
    proposals: list[Proposal] = field(default_factory=list)
    records: list[TrialRecord] = field(default_factory=list)
    in_flight: list[tuple[int, Proposal]] = field(default_factory=list)

    def _finish(self, controller: Any) -> None:
        number, proposal = self.in_flight.pop(0)
        state = TrialState.COMPLETE
        if self.fail_every and number % self.fail_every == self.fail_every - 1:
            state = TrialState.FAILED
        elif self.prune_every and number % self.prune_every == self.prune_every - 1:
            state = TrialState.PRUNED
        metric, cost = (None, None) if state is TrialState.FAILED else \
            self.evaluate(number, proposal)
        if metric is None:  # the evaluation itself failed
            state = TrialState.FAILED
        if state is TrialState.PRUNED:
            metric = metric * 0.9  # its last report, before the end of training
        record = make_record(number, proposal, metric, cost, state=state)
        self.records.append(record)
        controller.tell(record)

    def run(self, controller: Any, n_trials: int) -> list[Proposal]:
        """Ask until `n_trials` proposals in total were made (or the controller is done);
        leaves trials in flight so a state can be saved mid-flight."""
        while len(self.proposals) < n_trials:
            if len(self.in_flight) >= self.parallel:
                self._finish(controller)
                continue
            p = controller.ask()
            if p is None:
                break
            if p == "wait":
                if not self.in_flight:
                    raise RuntimeError(f"{type(controller).__name__} says 'wait' with "
                                       "nothing in flight: it would wait forever")
                self._finish(controller)
                continue
            self.in_flight.append((len(self.proposals), p))
            self.proposals.append(p)
        return self.proposals

    def drain(self, controller: Any) -> None:
        while self.in_flight:
            self._finish(controller)


def objective_driver(objective: AnalyticObjective, **kw: Any) -> Driver:
    return Driver(lambda number, p: objective(p.assignment), **kw)


class WeightEvaluator:
    """Scripted PBT training: each trial starts from the weight its warm_start_from trial
    ended with (0.0 for a fresh start) and adds `gain(assignment)`; the metric is the weight
    it ends with. `first[n]`/`last[n]` are trial n's starting and final weight."""

    def __init__(self, gain: Callable[[Mapping[str, Any]], float], cost: Cost) -> None:
        self.gain, self.cost = gain, cost
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}

    def __call__(self, number: int, proposal: Proposal) -> tuple[float, Cost]:
        start = 0.0 if proposal.warm_start_from is None else self.last[proposal.warm_start_from]
        self.first[number] = start
        self.last[number] = start + float(self.gain(proposal.assignment))
        return self.last[number], self.cost


def synthetic_table(space: Any, n: int = 400, seed: int = 0) -> list[dict[str, Any]]:
    """n distinct measured rows {key, assignment (JSON), reward, metric, params_ratio,
    flops_ratio, source="synthetic"}: the bench harness's input format, made up."""
    objective = AnalyticObjective(space, seed=seed)
    rng = np.random.default_rng([seed, 777])
    rows: dict[str, dict[str, Any]] = {}
    for _ in range(n * 20):
        if len(rows) >= n:
            break
        a = space.sample(rng)
        key = space.to_candidate(a).key()
        if key in rows:
            continue
        metric, cost = objective(a)
        rows[key] = {"key": key, "assignment": json.dumps(a, sort_keys=True),
                     "reward": metric, "metric": metric, "params_ratio": cost.params_ratio,
                     "flops_ratio": cost.flops_ratio, "source": "synthetic"}
    return list(rows.values())
