"""The fingerprint hashes the canonical form: same meaning, same fingerprint."""
from __future__ import annotations

import json

from autopeft.space import parse_space

BASE = """\
space: s
select: one
modules:
  lora:
    rank: [4, 8]
    targets: [q, v]
    layers: {last: 3}
  ia3: {}
hyperparameters:
  learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}
"""

SAME = """\
# a comment, other key order, other layout, spelled-out forms, defaults written out
space: s
description: "only documentation"
version: 1
modules:
  lora:
    layers:
      last: 3
    targets: {value: [v, q]}
    rank: {choices: [4, 8]}
    alpha: 16
    init: [default]
    type: lora
  ia3: {targets: [k, v, ffn_out], layers: all}
hyperparameters:
  learning_rate: {log: true, high: 0.01, low: 0.0001, levels: 8}
"""


def test_same_meaning_same_fingerprint() -> None:
    a, b = parse_space(BASE), parse_space(SAME)
    assert a.canonical() == b.canonical()
    assert a.fingerprint == b.fingerprint
    assert len(a.fingerprint) == 64


def test_any_change_of_meaning_changes_the_fingerprint() -> None:
    base = parse_space(BASE).fingerprint
    variants = [
        BASE.replace("rank: [4, 8]", "rank: [4, 16]"),
        BASE.replace("{last: 3}", "{last: 2}"),
        BASE.replace("log: true", "log: true, levels: 4"),
        BASE.replace("select: one", "select: any"),
        BASE.replace("  ia3: {}\n", "  ia3: {}\n  bitfit: {}\n"),
        BASE.replace("targets: [q, v]", "targets: [q, k]"),
    ]
    prints = {parse_space(v).fingerprint for v in variants}
    assert base not in prints and len(prints) == len(variants)


def test_entry_order_matters_because_it_fixes_the_decision_order() -> None:
    swapped = BASE.replace("  ia3: {}\n", "").replace("modules:\n", "modules:\n  ia3: {}\n")
    assert parse_space(swapped).fingerprint != parse_space(BASE).fingerprint


def test_canonical_form_is_json_and_fills_defaults() -> None:
    canon = parse_space(BASE).canonical()
    json.dumps(canon)
    lora = canon["modules"][0]
    assert lora["params"]["alpha"] == {"value": 16.0}
    assert lora["params"]["init"] == {"value": "default"}
    assert lora["layers"] == {"last": 3}
    assert canon["hyperparameters"][0]["levels"] == 8
    assert "description" not in canon
