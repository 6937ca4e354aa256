'''The search-space DSL: which PEFT setups a search may try, written as YAML.

The reference for the YAML format (space files, module types and their parameters,
parameter forms, layers, per-entry hyperparameters, the decision order) is written once,
in README.md, section "The search-space DSL"; this docstring only says how to use the
package from Python.

API
---
    space = load_space("default.yaml")       # a path, or the name of a shipped space
    space = parse_space(text, source)         # from YAML text
    space.name, space.source, space.fingerprint, space.canonical()
    bound = space.bind(num_layers=6, hidden_size=384)
    bound.decisions, bound.sample(rng), bound.walk(suggest), bound.is_active(d, partial)
    bound.validate(a), bound.encode(a), bound.decode(codes), bound.to_candidate(a)
    bound.cardinality() -> (exact count, log10)

The fingerprint is the sha256 of the canonical JSON (sorted keys, defaults filled, one-item
lists as values, targets in canonical order, floats as floats): comments, layout, key
order and description do not change it; entry and hyperparameter order do, because they
fix the decision order.

Errors are SpaceError; each names the file and line, the YAML path, the offending value
and a fix. Parsing is strict: duplicate keys, unknown keys, wrong types, empty choices,
low >= high and impossible combinations are errors. Pure Python + numpy + PyYAML.
'''
from autopeft.space.bound import BoundSpace
from autopeft.space.decision import Decision
from autopeft.space.layers import LayerSpec
from autopeft.space.loader import load_space, parse_space, read_yaml
from autopeft.space.params import ParamDef
from autopeft.space.space import Entry, SearchSpace

__all__ = ["BoundSpace", "Decision", "Entry", "LayerSpec", "ParamDef", "SearchSpace",
           "load_space", "parse_space", "read_yaml"]
