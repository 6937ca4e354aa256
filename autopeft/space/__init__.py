'''The search-space DSL: which PEFT setups a search may try, written as YAML.

Reference (the README's "The search-space DSL" section carries the same text)
=============================================================

A space file::

    space: default            # required: the space's name
    version: 1                # optional; must be 1
    description: "..."        # optional; not part of the fingerprint
    select: one               # one (default): a decision `module` picks one entry
                              # any: each entry gets its own on/off decision `<entry>.on`
    shared_layers: mask       # optional: one layer spec shared by entries with `layers: shared`
    modules:                  # required, non-empty; entry order fixes the decision order
      lora:                   # entry name; `type:` defaults to it
        rank: [4, 8, 16]
        targets: [[q, v], [q, k, v, o]]
        layers: {choices: [all, {last: 3}, mask]}
      big_lora: {type: lora, rank: 64, required: true}   # (required needs select: any)
      bitfit:
        hyperparameters:      # the entry's own: <entry>.hp.<name>, active when it is
          learning_rate: {low: 3.0e-3, high: 3.0e-2, log: true}   # chosen / on
    hyperparameters:          # optional: hp.<name> decisions beside the modules
      learning_rate: {low: 1.0e-4, high: 3.0e-3, log: true, levels: 8}

An entry's own `hyperparameters:` (same forms as the top-level ones) replace the top-level
ones when the entry is chosen (select: one: any of them; `hp.<name>` is then active only
for entries without their own, and a top-level one every entry replaces is an error).
With select: any only learning_rate and weight_decay may be set per entry: the module
trains in its own optimizer parameter group (autopeft.methods.groups); the classifier
head and modules without their own use the top-level values.

Module types, their parameters, defaults and allowed values come from
autopeft.moduletypes: lora, adapter (serial bottleneck; placement pfeiffer or houlsby),
parallel_adapter, prefix, prompt, ia3, bitfit, and the combinations unipelt and mam. To mix
modules (the AutoPEFT paper's serial + parallel adapter + prefix) use `select: any`.
An entry's keys are `type`, `required` (select: any only: always on, no `.on` decision),
`layers` (not for prompt), `hyperparameters` and the type's parameters. A parameter left out takes the
type's default: fixed, no decision. Unknown keys are errors.

Parameter forms
---------------
    rank: 8                              fixed value (no decision); also {value: 8}
    rank: [4, 8, 16]                     categorical choices; also {choices: [4, 8, 16]}
                                         (a one-item list is the same as a fixed value)
    dropout: {low: 0.0, high: 0.2}       float range
    rank: {low: 2, high: 64, log: true}  int range: int because the parameter is int
    lr: {low: 0.1, high: 0.5, step: 0.1} stepped range (step and log do not combine)
    levels: 8                            (ranges) how many grid points a discrete
                                         controller, `encode` and `cardinality` use
    targets: [q, v]                      a fixed set of sub-modules
    targets: [[q, v], [q, k, v, o]]      a choice between sets

Targets: q, k, v (attention projections), o (attention output), ffn_in, ffn_out.
Initialisations (init): default, zero, xavier, kaiming, gaussian; LoRA also takes peft's
data-free pissa and olora. `init_scale` in [0.1, 1.0] multiplies the init's scale and
only matters for zero, xavier, kaiming and gaussian: when init is searched, the
`<entry>.init_scale` decision is active only when one of those is chosen; setting
init_scale when init can only be default/pissa/olora is an error.

Size 0 means off: the size parameter of a type (lora rank, adapter and parallel_adapter
size, prefix and prompt length) also accepts 0, which drops the module from that
candidate (the AutoPEFT paper's "11 levels including off"). The module's other decisions
stay active even when its size is 0 (simpler; they just have no effect). A module whose
layer set comes out empty (a mask with every bit off) is dropped the same way. A
candidate with no module left is the head-only baseline.

Layers (relative to the model: one space serves a 6-layer and a 24-layer model)
-------------------------------------------------------------------------------
    all                          every layer (the default)
    {first: N} / {last: N}       N >= 1 layers, or a fraction 0 < f <= 1 of the model's
                                 layers (rounded half up, at least 1): {last: 0.5};
                                 {first: 1} is one layer, {first: 1.0} all of them
    {indices: [0, 2, -1]}        explicit; negatives count from the end; a bare list of
                                 integers means the same
    mask                         one on/off decision per layer: <entry>.layers.mask.<i>
    {groups: G}                  G contiguous groups, one on/off decision each:
                                 <entry>.layers.group.<g>
    shared                       the top-level shared_layers (its decisions are named
                                 shared.layers...; they are always active)
    {choices: [all, {last: 3}, mask]}   a categorical decision <entry>.layers whose values
                                 are the forms above as JSON ("all", {"last": 3}, "mask");
                                 the mask/group decisions of an option are active only
                                 when it is chosen (at most one groups option)

Checks against the model happen at bind time: an index beyond the model, first/last N
larger than its depth, more groups than layers, and (given a hidden size) a rank or size
above the hidden size are errors.

Decisions, in their fixed order
-------------------------------
1. `module` (select: one with two or more entries), choices: the entry names;
2. for each entry in file order: `<entry>.on` (select: any, not required), then its
   searched parameters `<entry>.<param>` in the type's parameter order (see
   autopeft.moduletypes), then `<entry>.layers`, `<entry>.layers.mask.<i>` /
   `<entry>.layers.group.<g>`, then its own `<entry>.hp.<name>`;
3. the shared layer decisions `shared.layers`, `shared.layers.mask.<i>`, ...;
4. `hp.<name>` in file order.
An entry's decisions are active only when the entry is selected (`module` = entry) or on.
Kinds: categorical, bool, int, float. Assignment values are JSON-safe (lists for target
sets, strings or one-key mappings for layer forms).

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
