"""Decisions of a bound space: order, conditions, walk, validate, encode/decode,
cardinality and candidates."""
from __future__ import annotations

import math
import textwrap

import numpy as np
import pytest

from autopeft.exceptions import SpaceError
from autopeft.space import parse_space

MIX = textwrap.dedent("""\
    space: mix
    select: any
    shared_layers: {groups: 2}
    modules:
      lora:
        rank: [0, 4, 8]
        targets: [[q, v], [q, k, v, o]]
        init: [default, zero]
        init_scale: [0.1, 1.0]
        layers: {choices: [all, {last: 0.5}, mask]}
      adapter: {size: [16, 32], required: true, layers: shared}
      prefix: {length: 8, layers: shared}
    hyperparameters:
      learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true, levels: 4}
      batch_size: 16
    """)

ONE = textwrap.dedent("""\
    space: one
    modules:
      lora: {rank: [4, 8], layers: mask}
      ia3: {}
      prompt: {length: [10, 20]}
    """)


def test_decision_order_select_any() -> None:
    bound = parse_space(MIX).bind(4)
    assert bound.names == (
        "lora.on", "lora.rank", "lora.targets", "lora.init", "lora.init_scale",
        "lora.layers", "lora.layers.mask.0", "lora.layers.mask.1", "lora.layers.mask.2",
        "lora.layers.mask.3",
        "adapter.size",
        "prefix.on",
        "shared.layers.group.0", "shared.layers.group.1",
        "hp.learning_rate",
    )
    d = bound.decision("lora.layers")
    assert d.choices == ("all", {"last": 0.5}, "mask")
    assert bound.decision("lora.layers.mask.2").parent == "lora.layers"
    assert bound.decision("lora.layers.mask.2").parent_values == ("mask",)
    assert bound.decision("lora.init_scale").parent == "lora.init"
    assert bound.decision("lora.init_scale").parent_values == ("zero",)
    assert bound.decision("adapter.size").parent is None  # required: no gate
    assert bound.decision("shared.layers.group.0").parent is None  # always active
    assert bound.decision("hp.learning_rate").kind == "float"


def test_decision_order_select_one() -> None:
    bound = parse_space(ONE).bind(3)
    assert bound.names == ("module", "lora.rank", "lora.layers.mask.0", "lora.layers.mask.1",
                           "lora.layers.mask.2", "prompt.length")
    assert bound.decision("module").choices == ("lora", "ia3", "prompt")
    assert bound.decision("prompt.length").parent_values == ("prompt",)


def test_single_entry_select_one_has_no_module_decision() -> None:
    bound = parse_space("space: s\nmodules: {lora: {rank: [4, 8]}}\n").bind(6)
    assert bound.names == ("lora.rank",)
    assert bound.decision("lora.rank").parent is None


def test_is_active_follows_the_chain() -> None:
    bound = parse_space(MIX).bind(4)
    assert not bound.is_active("lora.rank", {"lora.on": False})
    assert bound.is_active("lora.rank", {"lora.on": True})
    assert not bound.is_active("lora.layers.mask.0", {"lora.on": True, "lora.layers": "all"})
    assert bound.is_active("lora.layers.mask.0", {"lora.on": True, "lora.layers": "mask"})
    assert not bound.is_active("lora.init_scale", {"lora.on": True, "lora.init": "default"})
    assert bound.is_active("shared.layers.group.1", {})


def test_walk_asks_only_active_decisions_in_order() -> None:
    bound = parse_space(MIX).bind(4)
    asked = []

    def suggest(d):
        asked.append(d.name)
        if d.name == "lora.on":
            return False
        if d.kind == "bool":
            return True
        return d.options()[0]

    a = bound.walk(suggest)
    assert asked == ["lora.on", "adapter.size", "prefix.on", "shared.layers.group.0",
                     "shared.layers.group.1", "hp.learning_rate"]
    assert a["lora.on"] is False and "lora.rank" not in a
    cand = bound.to_candidate(a)
    assert cand.types == ("adapter", "prefix")
    assert cand.modules[0].layers == (0, 1, 2, 3)
    assert cand.hyper == {"learning_rate": 1.0e-4, "batch_size": 16}


def test_walk_rejects_an_illegal_suggestion() -> None:
    bound = parse_space(ONE).bind(3)
    with pytest.raises(SpaceError, match="'module'"):
        bound.walk(lambda d: "lorra")


def test_validate_catches_missing_extra_inactive_and_illegal() -> None:
    bound = parse_space(ONE).bind(3)
    good = {"module": "prompt", "prompt.length": 20}
    bound.validate(good)
    with pytest.raises(SpaceError, match="lacks active decision 'prompt.length'"):
        bound.validate({"module": "prompt"})
    with pytest.raises(SpaceError, match="inactive"):
        bound.validate({**good, "lora.rank": 4})
    with pytest.raises(SpaceError, match="unknown decision 'nope'"):
        bound.validate({**good, "nope": 1})
    with pytest.raises(SpaceError, match="not legal"):
        bound.validate({"module": "prompt", "prompt.length": 15})
    with pytest.raises(SpaceError, match="not legal"):  # True is not the int 1
        bound.validate({"module": "lora", "lora.rank": 4, "lora.layers.mask.0": 1,
                        "lora.layers.mask.1": True, "lora.layers.mask.2": True})


def test_encode_decode_round_trip_for_discrete_assignments() -> None:
    bound = parse_space(MIX).bind(4)
    rng = np.random.default_rng(3)
    for _ in range(50):
        a = bound.sample(rng)
        codes = bound.encode(a)
        assert len(codes) == len(bound.decisions)
        for d, c in zip(bound.decisions, codes):
            assert (c == -1) == (d.name not in a)
        back = bound.decode(codes)
        assert set(back) == set(a)
        for k, v in a.items():
            if k != "hp.learning_rate":
                assert back[k] == v
        lr = bound.decision("hp.learning_rate")
        assert back["hp.learning_rate"] in lr.options()  # snapped to the grid
        bound.validate(back)


def test_decode_ignores_codes_of_inactive_decisions() -> None:
    bound = parse_space(ONE).bind(3)
    a = bound.decode([2, 1, 0, 1, 1, 0])  # module=prompt; lora codes ignored
    assert a == {"module": "prompt", "prompt.length": 10}
    with pytest.raises(ValueError):
        bound.decode([5, 0, 0, 0, 0, 0])
    with pytest.raises(ValueError):
        bound.decode([0])


def test_range_grid_options() -> None:
    text = textwrap.dedent("""\
        space: s
        modules:
          lora:
            rank: {low: 1, high: 64, log: true, levels: 7}
            dropout: {low: 0.0, high: 0.3, step: 0.1}
            alpha: {low: 1, high: 3}
        """)
    bound = parse_space(text).bind(6)
    assert bound.decision("lora.rank").options() == (1, 2, 4, 8, 16, 32, 64)
    assert bound.decision("lora.dropout").options() == (0.0, 0.1, 0.2, 0.3)
    alpha = bound.decision("lora.alpha")
    assert alpha.kind == "float" and len(alpha.options()) == 8
    assert alpha.options()[0] == 1.0 and alpha.options()[-1] == 3.0


def test_cardinality_exact_with_conditions() -> None:
    # module: lora -> rank 2 x mask 2^3 = 16; ia3 -> 1; prompt -> 2  => 19
    assert parse_space(ONE).bind(3).cardinality() == (19, math.log10(19))
    mix = parse_space(MIX).bind(4)
    lora_layers = 1 + 1 + 2 ** 4
    lora = 3 * 2 * (1 + 2) * lora_layers
    expected = (1 + lora) * 2 * 2 * (2 ** 2) * 4
    assert mix.cardinality()[0] == expected


def test_cardinality_of_a_huge_space_is_exact_and_has_log10() -> None:
    text = "space: s\nmodules: {lora: {layers: mask}}\n"
    exact, log10 = parse_space(text).bind(200).cardinality()
    assert exact == 2 ** 200
    assert log10 == pytest.approx(200 * math.log10(2))


def test_to_candidate_resolves_layers_and_drops_off_modules() -> None:
    bound = parse_space(MIX).bind(6)
    a = {"lora.on": True, "lora.rank": 8, "lora.targets": ["q", "k", "v", "o"],
         "lora.init": "zero", "lora.init_scale": 0.1, "lora.layers": {"last": 0.5},
         "adapter.size": 32, "prefix.on": False,
         "shared.layers.group.0": False, "shared.layers.group.1": True,
         "hp.learning_rate": 0.001}
    cand = bound.to_candidate(a)
    assert cand.types == ("lora", "adapter")
    lora, adapter = cand.modules
    assert lora.layers == (3, 4, 5)
    assert lora["rank"] == 8 and lora["init"] == "zero" and lora["init_scale"] == 0.1
    assert lora["targets"] == ("q", "k", "v", "o")
    assert lora["alpha"] == 16.0  # the type's default, fixed
    assert adapter.layers == (3, 4, 5) and adapter["size"] == 32
    assert cand.num_layers == 6
    # rank 0 switches LoRA off; all shared groups off empties the adapter's layers
    a2 = {**a, "lora.rank": 0, "shared.layers.group.1": False}
    assert bound.to_candidate(a2).modules == ()


def test_to_candidate_fills_an_inactive_conditional_with_the_default() -> None:
    bound = parse_space(MIX).bind(6)
    a = {"lora.on": True, "lora.rank": 4, "lora.targets": ["q", "v"], "lora.init": "default",
         "lora.layers": "mask", **{f"lora.layers.mask.{i}": i % 2 == 0 for i in range(6)},
         "adapter.size": 16, "prefix.on": True,
         "shared.layers.group.0": True, "shared.layers.group.1": False,
         "hp.learning_rate": 0.01}
    cand = bound.to_candidate(a)
    assert cand.modules[0]["init_scale"] == 1.0
    assert cand.modules[0].layers == (0, 2, 4)
    assert [m.layers for m in cand.modules[1:]] == [(0, 1, 2), (0, 1, 2)]


@pytest.mark.parametrize("spec,layers,expected", [
    ("all", 6, (0, 1, 2, 3, 4, 5)),
    ("{first: 2}", 6, (0, 1)),
    ("{last: 2}", 6, (4, 5)),
    ("{first: 0.5}", 6, (0, 1, 2)),
    ("{last: 0.5}", 24, tuple(range(12, 24))),
    ("{last: 0.25}", 6, (4, 5)),      # 1.5 rounds half up to 2
    ("{last: 0.01}", 6, (5,)),        # at least one layer
    ("{first: 1.0}", 12, tuple(range(12))),
    ("{indices: [0, 2, -1]}", 6, (0, 2, 5)),
    ("[0, -2]", 12, (0, 10)),
])
def test_fixed_layer_forms_resolve_relative_to_the_model(spec, layers, expected) -> None:
    bound = parse_space(f"space: s\nmodules: {{lora: {{layers: {spec}}}}}\n").bind(layers)
    assert bound.decisions == ()
    assert bound.to_candidate({}).modules[0].layers == expected


def test_groups_split_contiguously() -> None:
    bound = parse_space("space: s\nmodules: {lora: {layers: {groups: 3}}}\n").bind(8)
    assert bound.names == ("lora.layers.group.0", "lora.layers.group.1", "lora.layers.group.2")
    a = {"lora.layers.group.0": True, "lora.layers.group.1": False, "lora.layers.group.2": True}
    assert bound.to_candidate(a).modules[0].layers == (0, 1, 5, 6, 7)


def test_prompt_has_no_layers_and_prefix_zero_is_off() -> None:
    text = ("space: s\nselect: any\nmodules:\n  prompt: {required: true, length: [0, 20]}\n"
            "  prefix: {required: true, length: [0, 10]}\n")
    bound = parse_space(text).bind(6)
    cand = bound.to_candidate({"prompt.length": 20, "prefix.length": 0})
    assert cand.types == ("prompt",) and cand.modules[0].layers is None


def test_hidden_size_binds_only_rank_and_size() -> None:
    text = ("space: s\nselect: any\nmodules:\n  lora: {rank: [8, 384]}\n"
            "  prefix: {length: 512}\n")
    space = parse_space(text)
    space.bind(6, 384)
    with pytest.raises(SpaceError, match="hidden size 256"):
        space.bind(6, 256)


def test_bind_rejects_a_bad_layer_count() -> None:
    space = parse_space("space: s\nmodules: {lora: {}}\n")
    for bad in (0, -1, 2.5, True):
        with pytest.raises(SpaceError, match="num_layers"):
            space.bind(bad)


def test_combination_types_and_two_entries_of_one_type() -> None:
    text = textwrap.dedent("""\
        space: s
        select: any
        modules:
          lora_attn: {type: lora, rank: [4, 8], targets: [q, k, v, o]}
          lora_ffn: {type: lora, rank: 16, targets: [ffn_in, ffn_out], required: true}
          unipelt: {rank: [4, 8], prefix_length: 10}
          mam: {size: [16, 64], layers: {last: 2}}
        """)
    bound = parse_space(text).bind(6)
    assert bound.names == ("lora_attn.on", "lora_attn.rank", "unipelt.on", "unipelt.rank",
                           "mam.on", "mam.size")
    a = {"lora_attn.on": True, "lora_attn.rank": 4, "unipelt.on": True, "unipelt.rank": 8,
         "mam.on": True, "mam.size": 64}
    cand = bound.to_candidate(a)
    assert cand.types == ("lora", "lora", "unipelt", "mam")
    assert cand.modules[1]["targets"] == ("ffn_in", "ffn_out")
    assert cand.modules[3].layers == (4, 5)


def test_sample_needs_a_generator() -> None:
    bound = parse_space(ONE).bind(3)
    with pytest.raises(TypeError, match="default_rng"):
        bound.sample(0)  # type: ignore[arg-type]


def test_bound_space_pickles_and_deep_copies() -> None:
    import copy
    import pickle

    bound = parse_space(MIX).bind(4)
    bound.decision("lora.layers").options()  # fill the caches first
    for clone in (pickle.loads(pickle.dumps(bound)), copy.deepcopy(bound)):
        assert clone.names == bound.names
        a = clone.sample(np.random.default_rng(0))
        assert a == bound.sample(np.random.default_rng(0))
        assert clone.to_candidate(a) == bound.to_candidate(a)


def test_int_for_a_float_choice_is_accepted_and_canonicalised() -> None:
    bound = parse_space("space: s\nmodules: {lora: {alpha: [8, 16]}}\n").bind(6)
    assert bound.decision("lora.alpha").choices == (8.0, 16.0)
    bound.validate({"lora.alpha": 16})  # e.g. typed by hand as JSON
    assert bound.to_candidate({"lora.alpha": 16}).modules[0]["alpha"] == 16.0
    assert bound.walk(lambda d: 8) == {"lora.alpha": 8.0}
    assert bound.encode({"lora.alpha": 16}) == [1]
    with pytest.raises(SpaceError):
        bound.validate({"lora.alpha": True})  # a bool is never a number here


def test_yaml_anchors_and_merge_keys_work() -> None:
    text = textwrap.dedent("""\
        space: s
        select: any
        modules:
          small: &base {type: lora, rank: [4, 8], targets: [q, v]}
          big:
            <<: *base
            rank: [32, 64]
        """)
    bound = parse_space(text).bind(6)
    assert bound.decision("big.rank").choices == (32, 64)
    assert bound.decision("small.rank").choices == (4, 8)
