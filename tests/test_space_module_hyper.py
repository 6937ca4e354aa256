"""An entry's own hyperparameters (issue 11 item 2): syntax, conditional decisions,
candidates, sampling, encoding, cardinality, fingerprint and located errors."""
from __future__ import annotations

import numpy as np
import pytest

from autopeft.exceptions import SpaceError
from autopeft.space import parse_space

ONE = """\
space: one
modules:
  lora:
    rank: [4, 8]
  bitfit:
    hyperparameters:
      learning_rate: {low: 1.0e-3, high: 1.0e-2, log: true, levels: 3}
      batch_size: [16, 32]
  ia3:
    hyperparameters: {learning_rate: 2.0e-2}
hyperparameters:
  learning_rate: {low: 1.0e-4, high: 1.0e-3, log: true, levels: 4}
"""

ANY = """\
space: mix
select: any
modules:
  adapter:
    size: 16
    hyperparameters:
      learning_rate: {low: 1.0e-3, high: 1.0e-2, log: true, levels: 3}
  prefix:
    length: 8
    required: true
    hyperparameters: {learning_rate: 1.0e-2, weight_decay: 0.1}
  lora: {rank: 4}
hyperparameters:
  learning_rate: [1.0e-4, 1.0e-3]
"""


def bind(text, layers=6):
    return parse_space(text, "s.yaml").bind(layers)


def test_select_one_decisions_and_conditions():
    b = bind(ONE)
    d = {x.name: x for x in b.decisions}
    assert b.names == ("module", "lora.rank", "bitfit.hp.learning_rate",
                       "bitfit.hp.batch_size", "hp.learning_rate")
    assert (d["bitfit.hp.learning_rate"].parent, d["bitfit.hp.learning_rate"].parent_values) \
        == ("module", ("bitfit",))
    # the top-level one only for the entries without their own
    assert (d["hp.learning_rate"].parent, d["hp.learning_rate"].parent_values) == \
        ("module", ("lora",))
    assert b.is_active("hp.learning_rate", {"module": "lora"})
    assert not b.is_active("hp.learning_rate", {"module": "bitfit"})
    assert not b.is_active("hp.learning_rate", {"module": "ia3"})  # fixed 2e-2 of its own
    # lora: 2 ranks x 4 rates; bitfit: 3 x 2; ia3: 1
    assert b.cardinality()[0] == 8 + 6 + 1


def test_select_one_the_chosen_entrys_values_are_the_candidates():
    b = bind(ONE)
    c = b.to_candidate({"module": "bitfit", "bitfit.hp.learning_rate": 0.005,
                        "bitfit.hp.batch_size": 16})
    assert c.hyper == {"learning_rate": 0.005, "batch_size": 16}
    assert c.modules[0].hyper == {}  # one module: its rate is the candidate's
    c = b.to_candidate({"module": "ia3"})
    assert c.hyper == {"learning_rate": 2e-2}
    c = b.to_candidate({"module": "lora", "lora.rank": 4, "hp.learning_rate": 1e-4})
    assert c.hyper == {"learning_rate": 1e-4}
    with pytest.raises(SpaceError, match="inactive"):
        b.validate({"module": "bitfit", "bitfit.hp.learning_rate": 0.005,
                    "bitfit.hp.batch_size": 16, "hp.learning_rate": 1e-4})


def test_select_any_one_parameter_group_per_module():
    b = bind(ANY)
    assert b.names == ("adapter.on", "adapter.hp.learning_rate", "lora.on",
                       "hp.learning_rate")
    assert b.decision("adapter.hp.learning_rate").parent == "adapter.on"
    assert b.decision("hp.learning_rate").parent is None  # the head always needs one
    c = b.to_candidate({"adapter.on": True, "adapter.hp.learning_rate": 0.002,
                        "lora.on": True, "hp.learning_rate": 1e-4})
    assert [(m.type, m.hyper) for m in c.modules] == [
        ("adapter", {"learning_rate": 0.002}),
        ("prefix", {"learning_rate": 1e-2, "weight_decay": 0.1}),
        ("lora", {})]  # lora has none of its own: it trains at the top-level rate
    assert c.hyper == {"learning_rate": 1e-4}
    d = c.to_dict()
    assert d["modules"][0]["hyper"] == {"learning_rate": 0.002}
    assert "hyper" not in d["modules"][2]  # written only when a module has its own
    from autopeft.candidate import Candidate

    assert Candidate.from_dict(d) == c and Candidate.from_dict(d).key() == c.key()
    assert "lr=0.002" in c.summary()
    bare = b.to_candidate({"adapter.on": True, "adapter.hp.learning_rate": 0.005,
                           "lora.on": True, "hp.learning_rate": 1e-3})
    assert bare.key() != c.key() and bare.architecture_key() == c.architecture_key()


def test_sampling_is_seeded_and_the_encoding_round_trips():
    for text in (ONE, ANY):
        b = bind(text)
        a = [b.sample(np.random.default_rng(7)) for _ in range(2)]
        assert a[0] == a[1]
        seen = set()
        for i in range(40):
            x = b.sample(np.random.default_rng(i))
            b.validate(x)
            b.to_candidate(x)
            codes = b.encode(x)
            back = b.decode(codes)
            assert back.keys() == x.keys() and b.encode(back) == codes
            seen.update(k for k in x if ".hp." in k)
        assert seen, "the entries' own decisions are sampled"


def test_walk_asks_only_the_active_ones():
    b = bind(ONE)
    asked = []

    def suggest(d):
        asked.append(d.name)
        return "bitfit" if d.name == "module" else d.options()[0]

    b.walk(suggest)
    assert asked == ["module", "bitfit.hp.learning_rate", "bitfit.hp.batch_size"]


def test_fingerprint():
    plain = "space: s\nmodules:\n  lora: {rank: [4, 8]}\n  bitfit: {}\n"
    empty = "space: s\nmodules:\n  lora: {rank: [4, 8]}\n  bitfit: {hyperparameters: {}}\n"
    own = ("space: s\nmodules:\n  lora: {rank: [4, 8]}\n"
           "  bitfit: {hyperparameters: {learning_rate: 1.0e-2}}\n")
    own2 = ("space: s\nmodules:\n  lora: {rank: [4, 8]}\n  bitfit:\n    # a comment\n"
            "    hyperparameters:\n      learning_rate: [1.0e-2]\n")
    fp = {k: parse_space(v, "s.yaml").fingerprint for k, v in
          {"plain": plain, "empty": empty, "own": own, "own2": own2}.items()}
    assert fp["plain"] == fp["empty"]  # no own values: the old canonical form
    assert fp["own"] != fp["plain"]
    assert fp["own"] == fp["own2"]  # layout, comments, one-item lists do not count


@pytest.mark.parametrize("text, line, path, message, fix", [
    ("space: s\nmodules:\n  lora:\n    rank: 8\n    learning_rate: 1.0e-3\n", 5,
     "modules.lora.learning_rate", "is a training hyperparameter",
     "under the entry's hyperparameters"),
    ("space: s\nmodules:\n  lora:\n    hyperparameters:\n      learnig_rate: 1.0e-3\n", 5,
     "modules.lora.hyperparameters.learnig_rate", "unknown hyperparameter",
     "did you mean 'learning_rate'"),
    ("space: s\nmodules:\n  lora:\n    hyperparameters: [1.0e-3]\n", 4,
     "modules.lora.hyperparameters", "must be a mapping", "hyperparameters: {learning_rate"),
    ("space: s\nmodules:\n  lora:\n    hyperparameters:\n"
     "      learning_rate: {low: 1.0e-2, high: 1.0e-3}\n", 5,
     "modules.lora.hyperparameters.learning_rate", "not below high", "swap them"),
    ("space: s\nmodules:\n  lora:\n    hyperparameters:\n      learning_rate: 2.0\n", 5,
     "modules.lora.hyperparameters.learning_rate", "must be in", "between"),
    ("space: s\nselect: any\nmodules:\n  lora:\n    hyperparameters:\n"
     "      warmup_ratio: 0.1\n", 6, "modules.lora.hyperparameters.warmup_ratio",
     "cannot differ between the modules", "top-level hyperparameters"),
    ("space: s\nmodules:\n  lora:\n    hyperparameters: {learning_rate: 1.0e-3}\n"
     "hyperparameters:\n  learning_rate: {low: 1.0e-4, high: 1.0e-3, log: true}\n", 6,
     "hyperparameters.learning_rate", "never used: every entry (lora) sets its own",
     "remove hyperparameters.learning_rate"),
    ("space: s\nselect: any\nmodules:\n  a:\n    type: lora\n    hyperparameters:\n"
     "      learning_rate: 1.0e-3\n  b: {type: lora}\n", 6, "modules.a.hyperparameters",
     "both lora", "top-level hyperparameters"),
])
def test_invalid_syntax_is_located(text, line, path, message, fix):
    with pytest.raises(SpaceError) as info:
        parse_space(text, "bad.yaml")
    err = info.value
    assert (err.file, err.line, err.path) == ("bad.yaml", line, path)
    assert message in str(err) and fix in (err.fix or "")
    assert f"bad.yaml:{line}" in str(err)


def test_an_entry_without_layers_may_have_its_own_hyperparameters():
    """full and prompt have no insertion layers, but their learning rate differs from the
    others' like any module's (full fine-tuning's by two orders of magnitude)."""
    b = parse_space("""
space: t
modules:
  lora: {rank: 8}
  full:
    hyperparameters:
      learning_rate: {low: 1.0e-5, high: 1.0e-4, log: true, levels: 2}
  prompt:
    length: 10
    hyperparameters:
      learning_rate: 0.03
hyperparameters:
  learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}
""", "t.yaml").bind(6)
    full = b.to_candidate({"module": "full", "full.hp.learning_rate": 1.0e-5})
    assert full.hyper["learning_rate"] == pytest.approx(1.0e-5)
    assert b.to_candidate({"module": "prompt"}).hyper["learning_rate"] == pytest.approx(0.03)
    with pytest.raises(SpaceError, match="no insertion layers"):
        parse_space("space: t\nmodules:\n  full: {layers: all}\n", "t.yaml")
