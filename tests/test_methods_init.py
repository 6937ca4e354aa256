"""The requested initialisation is honoured by every backend (statistics of the new weights)."""
from __future__ import annotations

import pytest

from autopeft.candidate import Candidate, ModuleConfig as M
from autopeft.methods.init import expected_std

SCALE = 0.5

# (id, modules(init) -> candidate modules, {name fragment: "in" | "out"})
BACKENDS = [
    ("peft-lora", lambda init: (M("lora", {"rank": 32, "init": init, "init_scale": SCALE},
                                  range(6)),),
     {".lora_A.default.weight": "in", ".lora_B.default.weight": "out"}),
    ("adapters-parallel", lambda init: (M("parallel_adapter", {"size": 32, "init": init,
                                                               "init_scale": SCALE}, range(6)),),
     {"adapter_down.0.weight": "in", "adapter_up.weight": "out"}),
    ("adapters-mixture", lambda init: (
        M("lora", {"rank": 32, "init": init, "init_scale": SCALE}, range(6)),
        M("adapter", {"size": 32, "init": init, "init_scale": SCALE}, range(6)),
        M("parallel_adapter", {"size": 32, "init": init, "init_scale": SCALE}, range(6))),
     {".loras.autopeft.lora_A": "in", ".loras.autopeft.lora_B": "out",  # adapters LoRA
      "adapter_down.0.weight": "in", "adapter_up.weight": "out",       # adapters serial
      "autopeft_parallel.down.weight": "in", "autopeft_parallel.up.weight": "out"}),  # ours
]


def _weights(built, roles):
    """{fragment: [weights]} for the trainable weights whose name contains the fragment."""
    out = {f: [] for f in roles}
    for name, p in built.trainable_parameters().items():
        for f in roles:
            if name.endswith(f):
                out[f].append(p.detach())
    assert all(out.values()), {f: len(v) for f, v in out.items()}
    return out


@pytest.mark.parametrize("init", ["xavier", "kaiming", "gaussian"])
@pytest.mark.parametrize("backend_id,modules,roles", BACKENDS, ids=[b[0] for b in BACKENDS])
def test_random_inits_have_the_expected_std(minilm, backend_id, modules, roles, init):
    import torch

    from autopeft.methods import build

    built = build(minilm, Candidate(modules(init), {}, 6), seed=0)
    for fragment, ws in _weights(built, roles).items():
        fan_out, fan_in = ws[0].shape
        want = expected_std(init, fan_in, fan_out, SCALE)
        got = torch.cat([w.flatten() for w in ws]).std().item()
        assert got == pytest.approx(want, rel=0.05), (fragment, got, want)
        assert abs(torch.cat([w.flatten() for w in ws]).mean().item()) < 0.1 * want


@pytest.mark.parametrize("backend_id,modules,roles", BACKENDS, ids=[b[0] for b in BACKENDS])
def test_zero_init_zeroes_the_output_projection(minilm, backend_id, modules, roles):
    import torch

    from autopeft.methods import build

    built = build(minilm, Candidate(modules("zero"), {}, 6), seed=0)
    for fragment, ws in _weights(built, roles).items():
        flat = torch.cat([w.flatten() for w in ws])
        if roles[fragment] == "out":
            assert torch.count_nonzero(flat) == 0, fragment
        else:
            fan_in = ws[0].shape[1]
            assert flat.abs().max().item() <= SCALE / fan_in ** 0.5 + 1e-7
            assert flat.std().item() == pytest.approx(expected_std("zero", fan_in, 0, SCALE),
                                                      rel=0.05)


def test_expected_std_formulas():
    assert expected_std("xavier", 300, 100) == pytest.approx((2 / 400) ** 0.5)
    assert expected_std("kaiming", 200, 7, 0.5) == pytest.approx(0.5 * (2 / 200) ** 0.5)
    assert expected_std("gaussian", 1, 1, 0.25) == pytest.approx(0.005)
    with pytest.raises(ValueError):
        expected_std("default", 1, 1)
