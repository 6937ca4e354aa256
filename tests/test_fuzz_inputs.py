"""Fuzzing the readers: generated malformed spaces and experiments are each refused (or
accepted, when a mutation happens to be valid) within a time and memory bound, and
never with an exception other than the project's own error class for that file.

The cases are seeded mutations of the shipped files in search_spaces/ and experiments/:
truncations, character and line edits, invalid UTF-8, type swaps, renamed and dropped
keys, deep and wide structures and alias bombs. Each runs in a forked child with an
address-space limit and an alarm (tests/bounded.py), so a regression fails the case
instead of hanging the suite. A space that parses is also bound to a 6-layer model and
sampled, so the DSL's own checks are fuzzed too.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import yaml

from autopeft import yamlio
from autopeft.config import load_experiment
from autopeft.exceptions import ExperimentError, SpaceError
from autopeft.space import load_space
from bounded import run_bounded

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {
    "space": sorted((ROOT / "search_spaces").glob("*.yaml")),
    "experiment": sorted((ROOT / "experiments").glob("*.yaml")),
}
SEED = 20261201
PER_KIND = 110          # 220 cases in all
SECONDS = 5.0           # per case, wall clock in the child (it takes ~0.05 s)
GROWTH_MB = 128         # per case, resident-set growth (a bomb would take gigabytes)

# ------------------------------------------------------------------ mutations
# Each takes (rng, the source text, its parsed data) and returns the mutated text (or bytes).

PLACE = "__FUZZ_PLACE__"
ODD = "[]{}:,-&*!|>'\"#%@` \t\n.eE+_~?0123456789\x00\x7f\ufeff\u2028é"
SWAPS: list[Any] = [[], {}, "", "x", 0, -1, 1.5, True, None, [1, "a"], {"k": [1]}, "1e-3",
                    10**30, float("nan"), float("inf"), "é✓", ["deep"] * 3, {"type": "lora"}]


def _paths(data: Any, prefix: tuple = ()) -> list[tuple]:
    """Every (container path, key) in the data, the top included."""
    out = []
    if isinstance(data, dict):
        for k, v in data.items():
            out.append(prefix + (k,))
            out += _paths(v, prefix + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out.append(prefix + (i,))
            out += _paths(v, prefix + (i,))
    return out


def _replace_at(rng: random.Random, data: Any, new: Any) -> Any:
    """A copy of data with the value at a random path replaced by `new`."""
    data = yaml.safe_load(yaml.safe_dump(data))  # a deep copy
    paths = _paths(data)
    if not paths:
        return {"top": new}
    path = rng.choice(paths)
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = new
    return data


def _dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def truncate(rng, text, data):
    cut = rng.randrange(len(text))
    if rng.random() < 0.5:  # on a line boundary, the way a half-written file ends
        cut = text.rfind("\n", 0, cut) + 1
    return text[:cut]


def edit_chars(rng, text, data):
    chars = list(text)
    for _ in range(rng.randint(1, 6)):
        i = rng.randrange(len(chars) + 1)
        op = rng.choice("idr")
        if op == "i" or not chars:
            chars.insert(i, rng.choice(ODD))
        elif op == "d":
            del chars[min(i, len(chars) - 1)]
        else:
            chars[min(i, len(chars) - 1)] = rng.choice(ODD)
    return "".join(chars)


def edit_lines(rng, text, data):
    lines = text.splitlines(keepends=True)
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(lines))
        op = rng.choice(["dup", "del", "swap", "indent", "dedent"])
        if op == "dup":  # duplicate keys, usually
            lines.insert(i, lines[i])
        elif op == "del" and len(lines) > 1:
            del lines[i]
        elif op == "swap":
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "indent":
            lines[i] = "  " + lines[i]
        else:
            lines[i] = lines[i][2:] if lines[i].startswith("  ") else lines[i]
    return "".join(lines)


def bad_bytes(rng, text, data):
    raw = bytearray(text.encode("utf-8"))
    for _ in range(rng.randint(1, 3)):
        raw.insert(rng.randrange(len(raw) + 1), rng.choice([0xff, 0xc3, 0x80, 0xe9, 0xfe]))
    return bytes(raw)


def swap_type(rng, text, data):
    return _dump(_replace_at(rng, data, rng.choice(SWAPS)))


def rename_or_drop_key(rng, text, data):
    data = yaml.safe_load(yaml.safe_dump(data))
    maps = [data] + [v for v in _walk(data) if isinstance(v, dict) and v]
    target = rng.choice([m for m in maps if m] or [data])
    if not target:
        return text
    key = rng.choice(list(target))
    value = target.pop(key)
    if rng.random() < 0.6:  # a typo: swap two letters, or drop one
        word = str(key)
        i = rng.randrange(max(len(word) - 1, 1))
        word = word[:i] + word[i + 1:i + 2] + word[i:i + 1] + word[i + 2:] \
            if rng.random() < 0.5 else word[:i] + word[i + 1:]
        target[word or "x"] = value
    return _dump(data)


def _walk(data: Any):
    if isinstance(data, dict):
        for v in data.values():
            yield v
            yield from _walk(v)
    elif isinstance(data, list):
        for v in data:
            yield v
            yield from _walk(v)


def deep(rng, text, data):
    n = rng.choice([40, 70, 200, 1000, 3000])
    if rng.random() < 0.5:  # flow: [[[...]]] or {a: {a: ...}}
        inner = "[" * n + "]" * n if rng.random() < 0.5 else "{a: " * n + "1" + "}" * n
        return _dump(_replace_at(rng, data, PLACE)).replace(PLACE, inner, 1)
    block = "".join("  " * i + "- k:\n" for i in range(1, n))  # block: a list of mappings
    return text + "deep_fuzz:\n" + block


def wide(rng, text, data):
    n = rng.choice([500, 5000, 21000])
    if rng.random() < 0.5:
        inner = "[" + ", ".join(str(i) for i in range(n)) + "]"
    else:
        inner = "{" + ", ".join(f"k{i}: {i}" for i in range(n)) + "}"
    return _dump(_replace_at(rng, data, PLACE)).replace(PLACE, inner, 1)


def alias_bomb(rng, text, data):
    levels, fan = rng.randint(5, 12), rng.randint(5, 20)
    merge = rng.random() < 0.25
    rows = ["bomb_fuzz:\n", "  a0: &a0 {x: 1}\n" if merge else "  a0: &a0 [4, 8]\n"]
    for i in range(1, levels):
        aliases = ", ".join([f"*a{i - 1}"] * fan)
        rows.append(f"  a{i}: &a{i} {{<<: [{aliases}]}}\n" if merge
                    else f"  a{i}: &a{i} [{aliases}]\n")
    anchors = "".join(rows)
    if rng.random() < 0.3:  # defined under an unknown key and never used
        return anchors + text
    return anchors + _dump(_replace_at(rng, data, PLACE)).replace(
        f"'{PLACE}'", f"*a{levels - 1}").replace(PLACE, f"*a{levels - 1}")


MUTATIONS: list[tuple[Callable, int]] = [  # (mutation, weight)
    (truncate, 5), (edit_chars, 6), (edit_lines, 5), (bad_bytes, 1), (swap_type, 6),
    (rename_or_drop_key, 3), (deep, 2), (wide, 1), (alias_bomb, 3)]


def _cases() -> list[tuple[str, str, Callable, str | bytes]]:
    rng = random.Random(SEED)
    cases = []
    for kind, files in SOURCES.items():
        texts = [(f.name, f.read_text(encoding="utf-8")) for f in files]
        for i in range(PER_KIND):
            name, text = texts[i % len(texts)]
            fn = rng.choices([m for m, _ in MUTATIONS], [w for _, w in MUTATIONS])[0]
            data = yamlio.read_yaml(text, name)[0]
            cases.append((f"{kind}-{i:03d}-{fn.__name__}-{name}", kind, fn,
                          fn(rng, text, data)))
    return cases


CASES = _cases()


def _load(kind: str, path: str) -> None:
    if kind == "space":
        bound = load_space(path).bind(num_layers=6, hidden_size=384)
        bound.to_candidate(bound.sample(np.random.default_rng(0)))
    else:
        load_experiment(path)


def test_the_fuzz_is_big_and_varied():
    assert len(CASES) >= 200
    assert {fn for _, _, fn, _ in CASES} == {m for m, _ in MUTATIONS}
    assert sum(1 for *_, text in CASES if isinstance(text, str)
               and text.startswith("bomb_fuzz")) >= 10


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_each_malformed_input_is_refused_in_bounds(tmp_path, case):
    _, kind, _, text = case
    path = tmp_path / f"fuzz_{kind}.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    out = run_bounded(lambda: _load(kind, str(path)), seconds=SECONDS, extra_mb=512,
                      trace=False)
    assert out.kind in ("ok", "error"), out.message  # not a crash, not killed
    assert out.seconds < SECONDS and out.peak_mb < GROWTH_MB, (out.seconds, out.peak_mb)
    if out.kind == "error":
        want = SpaceError if kind == "space" else ExperimentError
        assert out.error == want.__name__, out.message
        assert out.message.startswith(str(path)) and "fix:" in out.message, out.message
