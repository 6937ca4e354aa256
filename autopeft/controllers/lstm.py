"""An autoregressive LSTM policy over the space's decisions, trained by policy gradient.

The policy (Zoph & Le 2017, ENAS-style) walks the decisions in the space's order. At each
active decision it feeds the embedding of the previous choice plus an embedding of the
decision being made, and samples one of `decision.options()` (ranges are offered as their
grid of levels). Inactive decisions are skipped: no step, no log-prob, no entropy.

Training: batches of `batch_size` rollouts. `ask` hands out a batch, then says "wait" until
all of it is told; then `epochs` Adam steps on
    -mean(A_i * log p(x_i)) - entropy_weight * mean(entropy_i)
over the rollouts x_i it learns from, with advantages A_i:
- `advantage: rank` (default): the centred rank of R_i among those rollouts, in
  [-0.5, 0.5]. Ranks ignore the reward's scale and outliers, so one lucky measurement
  cannot dominate a step, and the step size does not depend on how rewards are spread.
- `advantage: baseline`: R_i - b, b a moving average of batch means (decay
  `baseline_decay`), started at the first batch's mean (plain REINFORCE).
`replay: true` (default) learns from EVERY trial told so far, not just the last batch: at
20-100 trials a batch of 8 gives only a few updates, too few for REINFORCE to move. The old
rollouts come from earlier policies and are not importance-weighted (the weights of a
policy that has moved are large and noisy at this sample size); so this is rank-weighted
likelihood of the past trials, and the entropy bonus keeps it from collapsing early.
`advantage: baseline, replay: false, epochs: 1` is the plain REINFORCE of Zoph & Le.
A failed trial gets `failed_reward`, or when that is null the lowest reward seen.

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
from autopeft.records import Proposal, TrialRecord

torch = require("torch")


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
    def __init__(self, sizes: list[int], hidden: int, generator: Any) -> None:
        super().__init__()
        skip = torch.nn.utils.skip_init  # no global-RNG init; we initialise below
        self.offsets = [0, *np.cumsum(sizes)[:-1].tolist()]
        self.sizes = sizes
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

    def score(self, codes: Any) -> tuple[Any, Any]:
        """(log p, entropy), one each per rollout, of rollouts given as an (n x decisions)
        tensor of option codes, -1 for inactive. All rollouts step together; an inactive
        decision leaves its rollout's state as it was and adds nothing (no gradient)."""
        n = codes.shape[0]
        h, c, prev = self.start(n)
        logp, ent = torch.zeros(n), torch.zeros(n)
        for i in range(codes.shape[1]):
            on = codes[:, i] >= 0
            if not bool(on.any()):
                continue
            logps, h2, c2 = self.step((h, c, prev), i)
            k = codes[:, i].clamp(min=0)
            logp = logp + torch.where(on, logps.gather(1, k[:, None])[:, 0], 0.0)
            ent = ent + torch.where(on, -(logps.exp() * logps).sum(-1), 0.0)
            h = torch.where(on[:, None], h2, h)
            c = torch.where(on[:, None], c2, c)
            prev = torch.where(on, self.token(i, k), prev)
        return logp, ent


class LSTMController(Controller):
    name = "lstm"
    SETTINGS = {
        "max_trials": _MAX_TRIALS,
        "batch_size": Setting(4, "int", "rollouts per policy update", low=1),
        "hidden_size": Setting(64, "int", "LSTM width", low=4),
        "learning_rate": Setting(0.03, "float", "Adam step size", low=0),
        "epochs": Setting(4, "int", "Adam steps per update", low=1),
        "advantage": Setting("rank", "str", "rank (centred ranks) or baseline (R - moving "
                             "average)", choices=("rank", "baseline")),
        "replay": Setting(True, "bool", "learn from every trial told so far, not only the "
                          "last batch"),
        "entropy_weight": Setting(0.01, "float", "entropy bonus (keeps exploring)", low=0),
        "baseline_decay": Setting(0.9, "float", "moving-average baseline decay (advantage: "
                                  "baseline)", low=0, high=1),
        "failed_reward": Setting(None, "float", "reward of a failed trial (null: the "
                                 "lowest reward seen)", nullable=True),
    }

    def __init__(self, space: Any, *, seed: int, **settings: Any) -> None:
        super().__init__(space, seed=seed, **settings)
        self._decisions = list(space.decisions)
        self._index = {d.name: i for i, d in enumerate(self._decisions)}
        self._gen = torch.Generator().manual_seed(seed)
        sizes = [len(d.options()) for d in self._decisions]
        self.policy = Policy(sizes, self.settings["hidden_size"], self._gen)
        self.optimizer = torch.optim.Adam(self.policy.parameters(),
                                          lr=self.settings["learning_rate"])
        self.baseline: float | None = None
        self.min_reward: float | None = None
        self.updates = 0
        self._pending: set[int] = set()                       # asked, not told (ask index)
        self._batch: list[tuple[list[int], float | None]] = []  # (codes, reward) told
        self._told: list[tuple[list[int], float | None]] = []   # every trial (replay)

    def _ask(self) -> Ask:
        if len(self._pending) + len(self._batch) >= self.settings["batch_size"]:
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
        if self.settings["replay"]:
            self._told.append(told)
        if not self._pending and len(self._batch) >= self.settings["batch_size"]:
            self._update()

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

    def _update(self) -> None:
        s = self.settings
        data = self._told if s["replay"] else self._batch
        fallback = s["failed_reward"]
        if fallback is None:
            fallback = self.min_reward if self.min_reward is not None else 0.0
        rewards = np.array([fallback if r is None else r for _, r in data], dtype=float)
        adv = torch.tensor(self._advantages(rewards), dtype=torch.float32)
        codes = torch.tensor([c for c, _ in data], dtype=torch.long).reshape(
            len(data), len(self._decisions))
        for _ in range(s["epochs"]):
            logp, ent = self.policy.score(codes)
            loss = -(adv * logp).mean() - s["entropy_weight"] * ent.mean()
            if not loss.requires_grad:  # no rollout had an active decision
                break
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        self.updates += 1
        self._batch = []

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
