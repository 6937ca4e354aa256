"""An autoregressive LSTM policy over the space's decisions, trained with REINFORCE.

The policy (Zoph & Le 2017, ENAS-style) walks the decisions in the space's order. At each
active decision it feeds the embedding of the previous choice plus an embedding of the
decision being made, and samples one of `decision.options()` (ranges are offered as their
grid of levels). Inactive decisions are skipped: no step, no log-prob, no entropy.

Training: batches of `batch_size` rollouts. `ask` hands out a batch, then says "wait" until
all of it is told; then one update with loss
    -mean((R - b) * log p(rollout)) - entropy_weight * mean(entropy)
where b is a moving-average baseline (decay `baseline_decay`), started at the first batch's
mean. A failed trial gets `failed_reward`, or when that is null the lowest reward seen.

Everything stochastic uses the controller's own torch.Generator (module weights are built
without torch's global-RNG initialisation), so a seed fixes the stream, and state_dict
carries weights, Adam state, baseline and generator state (tensors as base64).
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

    def start(self) -> tuple[Any, Any, int]:
        z = torch.zeros(1, self.hidden)
        return z, z, 0  # (h, c, previous token)

    def step(self, carry: tuple[Any, Any, int], i: int) -> tuple[Any, Any, Any]:
        """Log-probs over decision i's options, and (h, c) after the step."""
        h, c, prev = carry
        x = self.tokens.weight[prev] + self.positions.weight[i]
        h, c = self.cell(x.unsqueeze(0), (h, c))
        off = self.offsets[i]
        return torch.log_softmax(self.head(h)[0, off:off + self.sizes[i]], -1), h, c

    def token(self, i: int, k: int) -> int:
        return 1 + self.offsets[i] + k

    def score(self, codes: list[int]) -> tuple[Any, Any]:
        """(log p, entropy) of a rollout given as option codes, -1 for inactive."""
        carry = self.start()
        logp, ent = torch.zeros(()), torch.zeros(())
        for i, k in enumerate(codes):
            if k < 0:
                continue
            logps, h, c = self.step(carry, i)
            logp = logp + logps[k]
            ent = ent - (logps.exp() * logps).sum()
            carry = (h, c, self.token(i, k))
        return logp, ent


class LSTMController(Controller):
    name = "lstm"
    SETTINGS = {
        "max_trials": _MAX_TRIALS,
        "batch_size": Setting(8, "int", "rollouts per policy update", low=1),
        "hidden_size": Setting(64, "int", "LSTM width", low=4),
        "learning_rate": Setting(0.01, "float", "Adam step size", low=0),
        "entropy_weight": Setting(0.01, "float", "entropy bonus (keeps exploring)", low=0),
        "baseline_decay": Setting(0.9, "float", "moving-average baseline decay", low=0,
                                  high=1),
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

    def _ask(self) -> Ask:
        if len(self._pending) + len(self._batch) >= self.settings["batch_size"]:
            return "wait"
        carry = [self.policy.start()]

        def suggest(decision: Any) -> Any:  # one policy step per active decision
            i = self._index[decision.name]
            with torch.no_grad():
                logps, h, c = self.policy.step(carry[0], i)
                k = int(torch.multinomial(logps.exp(), 1, generator=self._gen).item())
            carry[0] = (h, c, self.policy.token(i, k))
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
        self._batch.append(([int(c) for c in self.space.encode(dict(record.assignment))],
                            reward))
        if not self._pending and len(self._batch) >= self.settings["batch_size"]:
            self._update()

    def _update(self) -> None:
        s = self.settings
        fallback = s["failed_reward"]
        if fallback is None:
            fallback = self.min_reward if self.min_reward is not None else 0.0
        rewards = [fallback if r is None else r for _, r in self._batch]
        mean = float(np.mean(rewards))
        if self.baseline is None:
            self.baseline = mean
        losses = []
        for (codes, _), r in zip(self._batch, rewards):
            logp, ent = self.policy.score(codes)
            losses.append(-(r - self.baseline) * logp - s["entropy_weight"] * ent)
        loss = torch.stack(losses).mean()
        if loss.requires_grad:  # False only when no rollout had an active decision
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        d = s["baseline_decay"]
        self.baseline = d * self.baseline + (1 - d) * mean
        self.updates += 1
        self._batch = []

    def probabilities(self, assignment: Mapping[str, Any]) -> float:
        """p(assignment) under the current policy (for tests and reports)."""
        with torch.no_grad():
            logp, _ = self.policy.score(list(self.space.encode(dict(assignment))))
        return math.exp(float(logp))

    def _state(self) -> dict[str, Any]:
        return _encode({
            "policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict(),
            "generator": self._gen.get_state(), "baseline": self.baseline,
            "min_reward": self.min_reward, "updates": self.updates,
            "pending": sorted(self._pending), "batch": [[c, r] for c, r in self._batch]})

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
