"""Malformed spaces: every error names the file, the YAML path, the bad value and a fix."""
from __future__ import annotations

import textwrap

import pytest

from autopeft.exceptions import SpaceError
from autopeft.space import parse_space

HEAD = "space: s\n"

# (id, YAML text, expected path fragment, expected value fragment, bind (layers, hidden))
CASES = [
    ("unknown_top_key", HEAD + "modules: {lora: {}}\nmodulez: {}\n",
     "modulez", "'modulez'", None),
    ("unknown_type", HEAD + "modules: {foo: {type: lorra}}\n",
     "modules.foo.type", "'lorra'", None),
    ("entry_name_not_a_type", HEAD + "modules: {lora_big: {rank: 4}}\n",
     "modules.lora_big", "'lora_big'", None),
    ("unknown_param", HEAD + "modules:\n  lora:\n    rnak: 4\n",
     "modules.lora.rnak", "'rnak'", None),
    ("string_rank", HEAD + "modules: {lora: {rank: eight}}\n",
     "modules.lora.rank", "'eight'", None),
    ("empty_choices", HEAD + "modules: {lora: {rank: []}}\n",
     "modules.lora.rank", "[]", None),
    ("empty_choices_spelled", HEAD + "modules: {lora: {rank: {choices: []}}}\n",
     "modules.lora.rank.choices", "[]", None),
    ("low_above_high", HEAD + "modules: {lora: {rank: {low: 64, high: 4}}}\n",
     "modules.lora.rank", "64", None),
    ("negative_rank", HEAD + "modules: {lora: {rank: [4, -8]}}\n",
     "modules.lora.rank[1]", "-8", None),
    ("init_not_for_prompt", HEAD + "modules: {prompt: {init: xavier}}\n",
     "modules.prompt.init", "'xavier'", None),
    ("pissa_on_adapter", HEAD + "modules: {adapter: {init: [default, pissa]}}\n",
     "modules.adapter.init[1]", "'pissa'", None),
    ("init_scale_too_big", HEAD + "modules: {lora: {init: xavier, init_scale: 1.5}}\n",
     "modules.lora.init_scale", "1.5", None),
    ("init_scale_without_scaled_init",
     HEAD + "modules: {lora: {init: [default, pissa], init_scale: [0.1, 0.5]}}\n",
     "modules.lora.init_scale", "0.1", None),
    ("index_13_of_12", HEAD + "modules: {lora: {layers: [0, 13]}}\n",
     "modules.lora.layers[1]", "13", (12, None)),
    ("index_13_of_12_spelled", HEAD + "modules: {lora: {layers: {indices: [0, 13]}}}\n",
     "modules.lora.layers.indices[1]", "13", (12, None)),
    ("index_twice_after_negatives", HEAD + "modules: {lora: {layers: [0, -6]}}\n",
     "modules.lora.layers[1]", "-6", (6, None)),
    ("first_zero", HEAD + "modules: {lora: {layers: {first: 0}}}\n",
     "modules.lora.layers.first", "0", None),
    ("first_beyond_model", HEAD + "modules: {lora: {layers: {first: 8}}}\n",
     "modules.lora.layers.first", "8", (6, None)),
    ("groups_zero", HEAD + "modules: {lora: {layers: {groups: 0}}}\n",
     "modules.lora.layers.groups", "0", None),
    ("groups_beyond_model",
     HEAD + "modules: {lora: {layers: {choices: [all, {groups: 7}]}}}\n",
     "modules.lora.layers.choices[1].groups", "7", (6, None)),
    ("fraction_above_one", HEAD + "modules: {lora: {layers: {last: 1.5}}}\n",
     "modules.lora.layers.last", "1.5", None),
    ("unknown_layer_form", HEAD + "modules: {lora: {layers: every}}\n",
     "modules.lora.layers", "'every'", None),
    ("shared_inside_choices", HEAD + "shared_layers: mask\n"
     "modules: {lora: {layers: {choices: [all, shared]}}, ia3: {layers: shared}}\n",
     "modules.lora.layers.choices[1]", "'shared'", None),
    ("unknown_target", HEAD + "modules: {lora: {targets: [q, qq]}}\n",
     "modules.lora.targets[1]", "'qq'", None),
    ("target_sets_mixed", HEAD + "modules: {lora: {targets: [q, [k, v]]}}\n",
     "modules.lora.targets", '"q"', None),
    ("duplicate_target_set", HEAD + "modules: {lora: {targets: [[q, v], [v, q]]}}\n",
     "modules.lora.targets[1]", '["v", "q"]', None),
    ("select_both", HEAD + "select: both\nmodules: {lora: {}}\n",
     "select", "'both'", None),
    ("duplicate_entry", HEAD + "modules:\n  lora: {rank: 4}\n  lora: {rank: 8}\n",
     "modules.lora", "'lora'", None),
    ("duplicate_param", HEAD + "modules:\n  lora:\n    rank: 4\n    rank: 8\n",
     "modules.lora.rank", "'rank'", None),
    ("shared_without_shared_layers", HEAD + "select: any\nmodules: {lora: {layers: shared}}\n",
     "modules.lora.layers", "shared", None),
    ("shared_layers_unused", HEAD + "shared_layers: mask\nmodules: {lora: {}}\n",
     "shared_layers", "mask", None),
    ("empty_modules", HEAD + "modules: {}\n", "modules", "{}", None),
    ("modules_missing", HEAD, "modules", "null", None),
    ("required_with_select_one", HEAD + "modules: {lora: {required: true}, ia3: {}}\n",
     "modules.lora.required", "true", None),
    ("unknown_hyperparameter", HEAD + "modules: {lora: {}}\nhyperparameters: {lr: 0.1}\n",
     "hyperparameters.lr", "'lr'", None),
    ("log_range_low_zero", HEAD + "modules: {lora: {}}\n"
     "hyperparameters: {learning_rate: {low: 0.0, high: 0.1, log: true}}\n",
     "hyperparameters.learning_rate.low", "0.0", None),
    ("float_without_dot", HEAD + "modules: {lora: {}}\n"
     "hyperparameters: {learning_rate: {low: 1e-4, high: 0.1}}\n",
     "hyperparameters.learning_rate.low", "'1e-4'", None),
    ("non_mapping_root", "- lora\n- ia3\n", "(root)", '["lora", "ia3"]', None),
    ("yaml_syntax", HEAD + "modules: {lora: {rank: [4, 8}\n", "line 2", "column", None),
    ("version_2", HEAD + "version: 2\nmodules: {lora: {}}\n", "version", "2", None),
    ("no_name", "modules: {lora: {}}\n", "space", "null", None),
    ("layers_on_prompt", HEAD + "modules: {prompt: {layers: all}}\n",
     "modules.prompt.layers", "'all'", None),
    ("rank_above_hidden", HEAD + "modules: {lora: {rank: [8, 512]}}\n",
     "modules.lora.rank", "512", (6, 384)),
    ("duplicate_choice", HEAD + "modules: {lora: {rank: [4, 8, 4]}}\n",
     "modules.lora.rank[2]", "4", None),
    ("two_keys_in_layer_form", HEAD + "modules: {lora: {layers: {first: 2, last: 2}}}\n",
     "modules.lora.layers", '"first": 2', None),
    ("step_with_log", HEAD + "modules: {lora: {}}\n"
     "hyperparameters: {learning_rate: {low: 0.001, high: 0.1, log: true, step: 0.01}}\n",
     "hyperparameters.learning_rate.step", "0.01", None),
    ("levels_one", HEAD + "modules: {lora: {dropout: {low: 0.0, high: 0.2, levels: 1}}}\n",
     "modules.lora.dropout.levels", "1", None),
    ("reserved_entry_name", HEAD + "modules: {module: {type: lora}}\n",
     "modules.module", "'module'", None),
    ("dropout_out_of_bounds", HEAD + "modules: {lora: {dropout: 0.95}}\n",
     "modules.lora.dropout", "0.95", None),
    ("yaml_bool_key", HEAD + "modules: {lora: {on: true}}\n", "modules.lora", "'on'", None),
    ("range_for_choice_param", HEAD + "modules: {adapter: {placement: {low: 1, high: 2}}}\n",
     "modules.adapter.placement", '"low": 1', None),
    ("entry_not_a_mapping", HEAD + "modules: {lora: 8}\n", "modules.lora", "8", None),
    ("int_range_float_bound", HEAD + "modules: {lora: {rank: {low: 1.5, high: 8}}}\n",
     "modules.lora.rank.low", "1.5", None),
    ("unknown_range_key", HEAD + "modules: {lora: {rank: {low: 1, hihg: 8}}}\n",
     "modules.lora.rank.hihg", "'hihg'", None),
    ("two_groups_options",
     HEAD + "modules: {lora: {layers: {choices: [{groups: 2}, {groups: 3}]}}}\n",
     "modules.lora.layers.choices[1].groups", '"groups": 3', None),
    ("required_not_bool", HEAD + "select: any\nmodules: {lora: {required: yes please}}\n",
     "modules.lora.required", "'yes please'", None),
    ("hyperparameters_not_mapping", HEAD + "modules: {lora: {}}\nhyperparameters: [lr]\n",
     "hyperparameters", '["lr"]', None),
]


@pytest.mark.parametrize("text,path,value,bind", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_malformed_space_is_located(text: str, path: str, value: str, bind) -> None:
    with pytest.raises(SpaceError) as info:
        space = parse_space(text, source="bad.yaml")
        if bind is None:
            pytest.fail("parsed without error")
        space.bind(*bind)
    message = str(info.value)
    assert message.startswith("bad.yaml"), message
    assert path in message, message
    assert value in message, message
    assert "fix:" in message, message
    assert info.value.file == "bad.yaml"


def test_well_over_twenty_malformed_cases() -> None:
    assert len(CASES) >= 20
    assert len({c[0] for c in CASES}) == len(CASES)


def test_error_carries_line_of_the_offending_key() -> None:
    text = textwrap.dedent("""\
        space: s
        modules:
          lora:
            rank: [4, 8]
            alpha: big
        """)
    with pytest.raises(SpaceError) as info:
        parse_space(text, source="x.yaml")
    assert info.value.line == 5
    assert info.value.path == "modules.lora.alpha"
    assert info.value.value == "big"
    assert str(info.value).startswith("x.yaml:5: at modules.lora.alpha:")


def test_bind_error_points_at_the_line_of_the_layer_spec() -> None:
    text = "space: s\nmodules:\n  lora:\n    layers:\n      indices: [0, 1, 13]\n"
    space = parse_space(text, source="x.yaml")
    space.bind(14)  # fits a deeper model
    with pytest.raises(SpaceError) as info:
        space.bind(12)
    assert info.value.line == 5
    assert "12-layer" in str(info.value)


def test_duplicate_key_message_gives_both_lines() -> None:
    text = "space: s\nmodules:\n  lora: {}\n  ia3: {}\n  lora: {rank: 4}\n"
    with pytest.raises(SpaceError, match=r"first at line 3, again at line 5"):
        parse_space(text, source="x.yaml")


def test_unknown_key_suggests_the_near_miss() -> None:
    with pytest.raises(SpaceError, match="did you mean 'modules'"):
        parse_space("space: s\nmodule: {lora: {}}\n", source="x.yaml")


def test_yaml_syntax_error_has_line_and_column() -> None:
    with pytest.raises(SpaceError) as info:
        parse_space("space: s\nmodules:\n  lora: {rank: [4, 8}\n", source="x.yaml")
    assert info.value.line == 3
    assert "column" in str(info.value)


def test_empty_file() -> None:
    with pytest.raises(SpaceError, match="empty"):
        parse_space("", source="x.yaml")


def test_unsafe_tag_is_refused() -> None:
    with pytest.raises(SpaceError, match="invalid YAML"):
        parse_space("space: !!python/object:os.system x\nmodules: {lora: {}}\n")
