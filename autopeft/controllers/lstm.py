"""An autoregressive LSTM policy over the space's decisions, trained by policy gradient.

The policy (Zoph & Le 2017, ENAS-style) walks the decisions in the space's order. At each
active decision it feeds the embedding of the previous choice plus an embedding of the
decision being made, and samples one of `decision.options()` (ranges are offered as their
grid of levels). Inactive decisions are skipped: no step, no log-prob, no entropy.

Batches: `ask` hands out `batch_size` rollouts, then says "wait" until all are told; the
next `ask` first updates the policy. Trials told without being asked (the standard
recipes, told before the first ask) count toward the batch, so with at least
`batch_size` of them the first proposal already comes from a policy that learnt them.

How it learns (`learner`):

- `model` (default): model-based policy optimisation. Each update fits a Gaussian-process
  reward model (autopeft.controllers.surrogate.CodeGP) to EVERY trial told so far, then
  takes `model_steps` Adam steps, each on `rollouts` rollouts sampled from the current
  policy and scored by the model's optimistic value U = mean + exploration * sd:
      -mean((U_i - mean(U)) * log p(x_i)) - temperature * mean(entropy_i)
  Why: plain REINFORCE gets one noisy number per training run; at 20-100 trials that is a
  few dozen gradient samples, and measured on 300 real proxy trials it moved the policy no
  further than its own untrained control (README, "Controllers on 300 real
  measurements"). The model pools the trials (a configuration's neighbours inform it),
  and the policy then gets thousands of cheap, low-variance gradient samples per update.
  This objective's optimum is p(x) proportional to exp(U(x) / temperature): the
  temperature keeps the policy spread (no early collapse onto the model's argmax), the sd
  term sends it where the model knows little. The rollouts of an update come from a
  generator seeded by (seed, update number), not from the proposal stream, so learning
  never shifts which proposals a seed makes.
- `direct`: policy gradient on the told trials themselves (the rule this controller had
  before; kept so the change can be measured). `epochs` Adam steps on
      -mean(A_i * log p(x_i)) - entropy_weight * mean(entropy_i)
  with A_i the centred rank of R_i (`advantage: rank`) or R_i minus a moving average of
  batch means (`advantage: baseline`), over every trial told so far (`replay: true`) or
  the last batch only. `learner: direct, advantage: baseline, replay: false, epochs: 1`
  is the plain REINFORCE of Zoph & Le.

A failed trial gets `failed_reward`, or when that is null the lowest reward seen. With
`learning_rate: 0` the policy is never updated (the benchmark's untrained control): the
update is skipped, which gives exactly the proposals of running it with a zero step.

Everything stochastic uses the controller's own torch.Generator (module weights are built
without torch's global-RNG initialisation), so a seed fixes the stream, and state_dict
carries weights, Adam state, baseline, told trials and generator state (tensors as base64).
"""
from __future__ import annotations

import base64
import math
import warnings
from typing import Any, Mapping

import numpy as np

from autopeft._imports import require
from autopeft.controllers.base import _MAX_TRIALS, Ask, Controller, Setting, reward_of
from autopeft.controllers.surrogate import CodeGP
from autopeft.records import Proposal, TrialRecord

torch = require("torch")
LOG_EI_RANGE = 10.0


def _encode(obj: Any) -> Any:
    """Tensors (nested in dicts/lists) -> JSON-safe {"__tensor__": base64, dtype, shape}."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        return {"__tensor__": base64.b64encode(t.numpy().tobytes()).decode("ascii"),
                "dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape)}
    if isinstance(obj, Mapping):
        return {str(k): _encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_encode(v) for v in obj]
    return obj


def _decode(obj: Any) -> Any:
    if isinstance(obj, Mapping) and "__tensor__" in obj:
        arr = np.frombuffer(base64.b64decode(obj["__tensor__"]), dtype=np.dtype(obj["dtype"]))
        return torch.from_numpy(arr.copy()).reshape(obj["shape"])
    if isinstance(obj, Mapping):
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v) for v in obj]
    return obj


class Policy(torch.nn.Module):
    """`parents[i]` is the index of decision i's parent (-1: none) and `accepts[i]` the
    parent's options that make it active (a bool tensor), so rollouts can be sampled as a
    batch without walking the space one assignment at a time."""

    def __init__(self, sizes: list[int], hidden: int, generator: Any,
                 parents: list[int], accepts: list[Any]) -> None:
        super().__init__()
        skip = torch.nn.utils.skip_init  # no global-RNG init; we initialise below
        self.offsets = [0, *np.cumsum(sizes)[:-1].tolist()]
        self.sizes = sizes
        self.parents, self.accepts = parents, accepts
        with warnings.catch_warnings():  # a space without decisions has empty tables
            warnings.filterwarnings("ignore", "Initializing zero-element tensors")
            self.tokens = skip(torch.nn.Embedding, 1 + sum(sizes), hidden)  # 0 = start
            self.positions = skip(torch.nn.Embedding, len(sizes), hidden)
            self.cell = skip(torch.nn.LSTMCell, hidden, hidden)
            self.head = skip(torch.nn.Linear, hidden, sum(sizes))
        with torch.no_grad():
            for p in self.parameters():
                p.uniform_(-0.1, 0.1, generator=generator)
        self.hidden = hidden

    def start(self, n: int = 1) -> tuple[Any, Any, Any]:
        z = torch.zeros(n, self.hidden)
        return z, z, torch.zeros(n, dtype=torch.long)  # (h, c, previous token)

    def step(self, carry: tuple[Any, Any, Any], i: int) -> tuple[Any, Any, Any]:
        """Log-probs (n x options) over decision i's options, and (h, c) after the step."""
        h, c, prev = carry
        x = self.tokens(prev) + self.positions.weight[i]
        h, c = self.cell(x, (h, c))
        off = self.offsets[i]
        return torch.log_softmax(self.head(h)[:, off:off + self.sizes[i]], -1), h, c

    def token(self, i: int, k: Any) -> Any:
        return 1 + self.offsets[i] + k

    def _active(self, codes: Any, i: int) -> Any:
        p = self.parents[i]
        if p < 0:
            return torch.ones(codes.shape[0], dtype=torch.bool)
        parent = codes[:, p]
        return (parent >= 0) & self.accepts[i][parent.clamp(min=0)]

    def score(self, codes: Any) -> tuple[Any, Any]:
        """(log p, entropy), one each per rollout, of rollouts given as an (n x decisions)
        tensor of option codes, -1 for inactive."""
        return self._run(codes.shape[0], codes, None)[1:]

    def sample(self, n: int, generator: Any) -> tuple[Any, Any, Any]:
        """n rollouts drawn with `generator`: (codes, log p, entropy), differentiable."""
        return self._run(n, None, generator)

    def _run(self, n: int, given: Any, generator: Any) -> tuple[Any, Any, Any]:
        # All rollouts step together; an inactive decision leaves its rollout's state as
        # it was and adds nothing (no gradient).
        codes = given if given is not None else torch.full((n, len(self.sizes)), -1)
        h, c, prev = self.start(n)
        logp, ent = torch.zeros(n), torch.zeros(n)
        for i in range(len(self.sizes)):
            on = codes[:, i] >= 0 if given is not None else self._active(codes, i)
            if not bool(on.any()):
                continue
            logps, h2, c2 = self.step((h, c, prev), i)
            if given is None:
                k = torch.multinomial(logps.detach().exp(), 1, generator=generator)[:, 0]
                codes[:, i] = torch.where(on, k, -1)
            else:
                k = codes[:, i].clamp(min=0)
            logp = logp + torch.where(on, logps.gather(1, k[:, None])[:, 0], 0.0)
            ent = ent + torch.where(on, -(logps.exp() * logps).sum(-1), 0.0)
            h = torch.where(on[:, None], h2, h)
            c = torch.where(on[:, None], c2, c)
            prev = torch.where(on, self.token(i, k), prev)
        return codes, logp, ent


class LSTMController(Controller):
    name = "lstm"
    SETTINGS = {
        "max_trials": _MAX_TRIALS,
        "learner": Setting("model", "str", "model (policy trained against a reward model "
                           "of every trial) or direct (policy gradient on the trials)",
                           choices=("model", "direct")),
        "batch_size": Setting(4, "int", "rollouts per policy update", low=1),
        "hidden_size": Setting(64, "int", "LSTM width", low=4),
        "learning_rate": Setting(0.03, "float", "Adam step size (0: never updated)", low=0),
        "rollouts": Setting(128, "int", "learner model: imagined rollouts per step", low=2),
        "model_steps": Setting(30, "int", "learner model: Adam steps per update", low=1),
        "temperature": Setting(1.0, "float", "learner model: entropy weight; the policy "
                               "tends to p(x) ~ EI(x)^(1/temperature)", low=0),
        "revisit": Setting(False, "bool", "learner model: value configurations already "
                           "measured like new ones (false: as the worst rollout)"),
        "epochs": Setting(4, "int", "learner direct: Adam steps per update", low=1),
        "advantage": Setting("rank", "str", "learner direct: rank (centred ranks) or "
                             "baseline (R - moving average)", choices=("rank", "baseline")),
        "replay": Setting(True, "bool", "learner direct: learn from every trial told so "
                          "far, not only the last batch"),
        "entropy_weight": Setting(0.01, "float", "learner direct: entropy bonus", low=0),
        "baseline_decay": Setting(0.9, "float", "learner direct: moving-average baseline "
                                  "decay (advantage: baseline)", low=0, high=1),
        "failed_reward": Setting(None, "float", "reward of a failed trial (null: the "
                                 "lowest reward seen)", nullable=True),
    }

    def __init__(self, space: Any, *, seed: int, **settings: Any) -> None:
        super().__init__(space, seed=seed, **settings)
        self._decisions = list(space.decisions)
        self._index = {d.name: i for i, d in enumerate(self._decisions)}
        self._gen = torch.Generator().manual_seed(seed)
        sizes = [len(d.options()) for d in self._decisions]
        parents = [self._index[d.parent] if d.parent is not None else -1
                   for d in self._decisions]
        accepts = [None if p < 0 else torch.tensor(
            [d.parent_accepts(o) for o in self._decisions[p].options()], dtype=torch.bool)
            for d, p in zip(self._decisions, parents)]
        self.policy = Policy(sizes, self.settings["hidden_size"], self._gen, parents, accepts)
        self.optimizer = torch.optim.Adam(self.policy.parameters(),
                                          lr=self.settings["learning_rate"])
        self._model = CodeGP(sizes, [d.is_range for d in self._decisions])
        self.baseline: float | None = None
        self.min_reward: float | None = None
        self.updates = 0
        self._pending: set[int] = set()                       # asked, not told (ask index)
        self._batch: list[tuple[list[int], float | None]] = []  # told since the last update
        self._told: list[tuple[list[int], float | None]] = []   # every trial told

    def _ask(self) -> Ask:
        size = self.settings["batch_size"]
        if len(self._batch) >= size and not self._pending:
            self._update()
        if len(self._pending) + len(self._batch) >= size:
            return "wait"
        carry = [self.policy.start()]

        def suggest(decision: Any) -> Any:  # one policy step per active decision
            i = self._index[decision.name]
            with torch.no_grad():
                logps, h, c = self.policy.step(carry[0], i)
                k = int(torch.multinomial(logps[0].exp(), 1, generator=self._gen).item())
            carry[0] = (h, c, torch.tensor([self.policy.token(i, k)]))
            return decision.options()[k]

        assignment = self.space.walk(suggest)
        self._pending.add(self.asked)
        return Proposal(assignment, meta={"ask": self.asked})

    def _tell(self, record: TrialRecord) -> None:
        ask = record.meta.get("ask") if record.meta else None
        self._pending.discard(ask)
        reward = reward_of(record)
        if reward is not None:
            self.min_reward = reward if self.min_reward is None else min(self.min_reward,
                                                                         reward)
        told = ([int(c) for c in self.space.encode(dict(record.assignment))], reward)
        self._batch.append(told)
        if self.settings["learner"] == "model" or self.settings["replay"]:
            self._told.append(told)

    def _rewards(self, data: list[tuple[list[int], float | None]]) -> np.ndarray:
        fallback = self.settings["failed_reward"]
        if fallback is None:
            fallback = self.min_reward if self.min_reward is not None else 0.0
        return np.array([fallback if r is None else r for _, r in data], dtype=float)

    def _codes(self, data: list[tuple[list[int], float | None]]) -> Any:
        return torch.tensor([c for c, _ in data], dtype=torch.long).reshape(
            len(data), len(self._decisions))

    def _update(self) -> None:
        if self.settings["learning_rate"] > 0 and self._decisions:
            if self.settings["learner"] == "model":
                self._update_model()
            else:
                self._update_direct()
        self.updates += 1
        self._batch = []

    def _update_model(self) -> None:
        s = self.settings
        self._model.fit(self._codes(self._told).numpy(), self._rewards(self._told))
        gen = torch.Generator().manual_seed((self.seed * 1_000_003 + self.updates) % 2**63)
        measured = {tuple(c) for c, _ in self._told}
        for _ in range(s["model_steps"]):
            codes, logp, ent = self.policy.sample(s["rollouts"], gen)
            log_ei = self._model.log_expected_improvement(codes.numpy())
            # below e^-LOG_EI_RANGE of the best rollout's EI a rollout is simply bad: the
            # clip keeps a few hopeless ones from dominating the step's variance
            log_ei = np.maximum(log_ei, log_ei.max() - LOG_EI_RANGE)
            if not s["revisit"]:
                seen = np.array([tuple(c) in measured for c in codes.tolist()], dtype=bool)
                if not seen.all():
                    log_ei[seen] = log_ei[~seen].max() - LOG_EI_RANGE
            value = torch.tensor(log_ei, dtype=torch.float32)
            loss = -((value - value.mean()) * logp).mean() - s["temperature"] * ent.mean()
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()

    def _update_direct(self) -> None:
        s = self.settings
        data = self._told if s["replay"] else self._batch
        adv = torch.tensor(self._advantages(self._rewards(data)), dtype=torch.float32)
        codes = self._codes(data)
        for _ in range(s["epochs"]):
            logp, ent = self.policy.score(codes)
            loss = -(adv * logp).mean() - s["entropy_weight"] * ent.mean()
            if not loss.requires_grad:  # no rollout had an active decision
                break
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()

    def _advantages(self, rewards: np.ndarray) -> np.ndarray:
        if self.settings["advantage"] == "baseline":
            mean = float(rewards[-len(self._batch):].mean())  # the new batch's mean
            if self.baseline is None:
                self.baseline = mean
            adv = rewards - self.baseline
            d = self.settings["baseline_decay"]
            self.baseline = d * self.baseline + (1 - d) * mean
            return adv
        order = rewards.argsort(kind="stable")
        ranks = np.empty(len(rewards))
        ranks[order] = np.arange(len(rewards))
        for r in np.unique(rewards):  # ties share their mean rank
            ranks[rewards == r] = ranks[rewards == r].mean()
        return ranks / max(len(rewards) - 1, 1) - 0.5

    def probabilities(self, assignment: Mapping[str, Any]) -> float:
        """p(assignment) under the current policy (for tests and reports)."""
        with torch.no_grad():
            codes = torch.tensor([self.space.encode(dict(assignment))], dtype=torch.long)
            logp, _ = self.policy.score(codes.reshape(1, len(self._decisions)))
        return math.exp(float(logp[0]))

    def _state(self) -> dict[str, Any]:
        return _encode({
            "policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict(),
            "generator": self._gen.get_state(), "baseline": self.baseline,
            "min_reward": self.min_reward, "updates": self.updates,
            "pending": sorted(self._pending), "batch": [[c, r] for c, r in self._batch],
            "told": [[c, r] for c, r in self._told]})

    def _load(self, own: Mapping[str, Any]) -> None:
        own = _decode(own)
        self.policy.load_state_dict(own["policy"])
        opt = own["optimizer"]
        opt["state"] = {int(k): v for k, v in opt["state"].items()}
        self.optimizer.load_state_dict(opt)
        self._gen.set_state(own["generator"])
        self.baseline, self.min_reward = own["baseline"], own["min_reward"]
        self.updates = int(own["updates"])
        self._pending = {int(k) for k in own["pending"]}
        self._batch = [([int(x) for x in c], r) for c, r in own["batch"]]
        self._told = [([int(x) for x in c], r) for c, r in own.get("told", [])]
