"""Seeded uniform sampling: reproducible, respects conditions, stays inside the space."""
from __future__ import annotations

import math
import textwrap
from collections import Counter

import numpy as np

from autopeft.space import parse_space

TEXT = textwrap.dedent("""\
    space: s
    select: one
    modules:
      lora:
        rank: {low: 2, high: 64, log: true}
        dropout: {low: 0.0, high: 0.3, step: 0.05}
        init: [default, xavier, pissa]
        init_scale: {low: 0.1, high: 1.0}
        layers: {choices: [all, {groups: 2}, mask]}
      adapter: {size: [0, 16, 64], placement: [pfeiffer, houlsby]}
      prompt: {length: [10, 20]}
    hyperparameters:
      learning_rate: {low: 1.0e-5, high: 1.0e-2, log: true}
      weight_decay: {low: 0.0, high: 0.1}
      batch_size: [16, 32]
    """)


def _bound(layers: int = 6):
    return parse_space(TEXT).bind(layers)


def test_same_seed_same_candidates() -> None:
    bound = _bound()
    a = [bound.sample(np.random.default_rng(7)) for _ in range(2)]
    assert a[0] == a[1]
    r1, r2 = np.random.default_rng(11), np.random.default_rng(11)
    assert [bound.sample(r1) for _ in range(20)] == [bound.sample(r2) for _ in range(20)]


def test_another_seed_different_candidates() -> None:
    bound = _bound()
    r1, r2 = np.random.default_rng(1), np.random.default_rng(2)
    assert [bound.sample(r1) for _ in range(10)] != [bound.sample(r2) for _ in range(10)]


def test_sampling_does_not_touch_global_random_state() -> None:
    bound = _bound()
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    bound.sample(np.random.default_rng(0))
    assert np.random.random() == expected


def test_samples_respect_conditions_and_are_legal() -> None:
    bound = _bound()
    rng = np.random.default_rng(0)
    modules = Counter()
    for _ in range(400):
        a = bound.sample(rng)
        bound.validate(a)  # exactly the active decisions, legal values
        modules[a["module"]] += 1
        for name in a:
            if name.startswith(("lora.", "adapter.", "prompt.")):
                assert name.split(".")[0] == a["module"]
        if a["module"] == "lora":
            assert ("lora.init_scale" in a) == (a["lora.init"] == "xavier")
            masks = [n for n in a if ".mask." in n]
            groups = [n for n in a if ".group." in n]
            assert len(masks) == (6 if a["lora.layers"] == "mask" else 0)
            assert len(groups) == (2 if a["lora.layers"] == {"groups": 2} else 0)
            assert 2 <= a["lora.rank"] <= 64 and isinstance(a["lora.rank"], int)
            assert abs(a["lora.dropout"] / 0.05 - round(a["lora.dropout"] / 0.05)) < 1e-9
        cand = bound.to_candidate(a)
        assert len(cand.modules) <= 1
        if a["module"] == "adapter" and a["adapter.size"] == 0:
            assert cand.modules == ()
        assert set(cand.hyper) == {"learning_rate", "weight_decay", "batch_size"}
    assert set(modules) == {"lora", "adapter", "prompt"}
    for count in modules.values():  # uniform over the module choice
        assert 90 < count < 180


def test_log_range_is_sampled_log_uniformly() -> None:
    bound = _bound()
    d = bound.decision("hp.learning_rate")
    rng = np.random.default_rng(0)
    logs = [math.log10(d.sample(rng)) for _ in range(2000)]
    assert min(logs) >= -5 and max(logs) <= -2
    below = sum(x < -3.5 for x in logs) / len(logs)  # half of the log range
    assert 0.45 < below < 0.55


def test_sampled_values_are_plain_python() -> None:
    bound = _bound()
    rng = np.random.default_rng(5)
    for _ in range(50):
        for v in bound.sample(rng).values():
            assert type(v) in (str, int, float, bool, list, dict)


def test_sampling_does_not_mutate_the_space() -> None:
    bound = _bound()
    rng = np.random.default_rng(0)
    for _ in range(30):
        a = bound.sample(rng)
        if isinstance(a.get("lora.layers"), dict):
            a["lora.layers"]["groups"] = 99
    assert bound.decision("lora.layers").choices[1] == {"groups": 2}
