"""Every shipped space loads, binds to 6, 12 and 24 layers and samples legal candidates."""
from __future__ import annotations

import numpy as np
import pytest

from autopeft.resources import shipped
from autopeft.space import load_space

SHIPPED = shipped("search_spaces")
SHAPES = [(6, 384), (12, 768), (24, 1024)]


def test_the_three_required_spaces_ship() -> None:
    assert {"default.yaml", "autopeft_paper.yaml", "lora_only.yaml"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize("layers,hidden", SHAPES)
def test_shipped_space_binds_and_samples(name: str, layers: int, hidden: int) -> None:
    space = load_space(name)
    assert space.name == name.removesuffix(".yaml")
    bound = space.bind(layers, hidden)
    exact, log10 = bound.cardinality()
    assert exact is not None and exact > 1 and log10 > 0
    rng = np.random.default_rng(0)
    for _ in range(25):
        a = bound.sample(rng)
        bound.validate(a)
        cand = bound.to_candidate(a)
        assert cand.num_layers == layers
        for m in cand.modules:
            assert m.layers is None or (m.layers and max(m.layers) < layers)
        assert bound.decode(bound.encode(a)).keys() == a.keys()


def test_default_space_is_small_and_offers_the_usual_methods() -> None:
    bound = load_space("default").bind(6, 384)
    assert set(bound.decision("module").choices) == {
        "lora", "adapter", "parallel_adapter", "prefix", "ia3", "bitfit"}
    # each module type searches a learning-rate range of its own (measured to suit it)
    for entry in bound.decision("module").choices:
        lr = bound.decision(f"{entry}.hp.learning_rate")
        assert lr.log and lr.parent == "module" and lr.parent_values == (entry,)
    assert "hp.learning_rate" not in bound.names
    ranges = {e: bound.decision(f"{e}.hp.learning_rate") for e in ("lora", "bitfit")}
    assert ranges["bitfit"].low > 2.5e-4 and ranges["lora"].high < 1e-2  # the facts
    assert bound.cardinality()[0] < 10_000  # a short search covers it meaningfully


def test_paper_space_has_eleven_levels_with_off_and_one_shared_mask() -> None:
    bound = load_space("autopeft_paper.yaml").bind(12, 768)
    sizes = ["serial_adapter.size", "parallel_adapter.size", "prefix.length"]
    for name in sizes:
        d = bound.decision(name)
        assert len(d.choices) == 11 and 0 in d.choices and d.parent is None
    masks = [n for n in bound.names if n.startswith("shared.layers.mask.")]
    assert len(masks) == 12
    assert bound.names == tuple(sizes + masks)
    a = {"serial_adapter.size": 64, "parallel_adapter.size": 0, "prefix.length": 16,
         **{m: i < 6 for i, m in enumerate(masks)}}
    cand = bound.to_candidate(a)
    assert cand.types == ("adapter", "prefix")
    assert all(m.layers == (0, 1, 2, 3, 4, 5) for m in cand.modules)
    assert cand.modules[0]["placement"] == "pfeiffer"
    # each module trains at its own fixed rate (its own optimizer parameter group)
    assert [m.hyper["learning_rate"] for m in cand.modules] == [4e-3, 1e-2]


def test_lora_only_offers_data_free_inits() -> None:
    bound = load_space("lora_only").bind(6, 384)
    assert {"pissa", "olora"} <= set(bound.decision("lora.init").choices)
    assert "module" not in bound.names
