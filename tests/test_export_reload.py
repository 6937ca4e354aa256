"""An exported, briefly trained candidate reloads in a fresh process with the plain library
(peft or AdapterHub adapters, plus transformers; transformers alone for full fine-tuning; no
autopeft) and gives the same logits, classifier head included. Real MiniLM."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from autopeft.candidate import Candidate, ModuleConfig as M
from autopeft.export import export_candidate, load_exported
from moduletype_cases import TYPES

pytestmark = pytest.mark.slow

# Each loader runs in a fresh interpreter: argv = base model folder, export folder, data file.
LOADERS = {
    "peft": """
        import json, sys, torch
        from transformers import AutoModelForSequenceClassification
        from peft import PeftModel
        model_path, export_dir, data_file = sys.argv[1:4]
        data = torch.load(data_file)
        base = AutoModelForSequenceClassification.from_pretrained(
            model_path, num_labels=int(data["num_labels"]))
        model = PeftModel.from_pretrained(base, export_dir).eval()
    """,
    "adapters": """
        import json, sys, torch
        import adapters
        from transformers import AutoModelForSequenceClassification
        model_path, export_dir, data_file = sys.argv[1:4]
        data = torch.load(data_file)
        model = AutoModelForSequenceClassification.from_pretrained(
            model_path, num_labels=int(data["num_labels"]))
        adapters.init(model)
        model.set_active_adapters(model.load_adapter(export_dir))
        model.eval()
    """,
    "transformers": """
        import json, sys, torch
        from transformers import AutoModelForSequenceClassification
        model_path, export_dir, data_file = sys.argv[1:4]
        data = torch.load(data_file)
        model = AutoModelForSequenceClassification.from_pretrained(export_dir).eval()
    """,
}
COMPARE = """
    with torch.no_grad():
        logits = model(**data["inputs"]).logits
    leaked = sorted(m for m in sys.modules if m == "autopeft" or m.startswith("autopeft."))
    print(json.dumps({"max_diff": float((logits - data["logits"]).abs().max()),
                      "moved": float((logits - data["untrained"]).abs().max()),
                      "autopeft_modules": leaked}))
"""

# every registered type that a library reloads (tests/moduletype_cases.py), and two variants
CASES = [pytest.param(Candidate(t.modules, {}, 6), t.trained_library, t.backend, id=t.type)
         for t in TYPES if t.trained_library] + [
    pytest.param(Candidate((M("lora", {"rank": 8, "targets": ["q", "v", "ffn_out"]}, [2, 3, 4, 5]),),
                           {}, 6), "peft", "peft", id="lora-peft"),
    pytest.param(Candidate((M("adapter", {"size": 32, "placement": "pfeiffer"}, [1, 2, 3, 4, 5]),),
                           {}, 6), "adapters", "adapters", id="pfeiffer-adapters"),
]


def _train(built, inputs, labels, steps=4):
    import torch

    params = list(built.trainable_parameters().values())
    lr = 1e-4 if built.backend == "own" else 1e-2  # full fine-tuning moves every weight
    opt = torch.optim.AdamW(params, lr=lr)
    built.model.train()
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(built.model(**inputs).logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    built.model.eval()


@pytest.mark.parametrize("candidate,library,backend", CASES)
def test_trained_export_reloads_with_the_plain_library(minilm, minilm_batch, tmp_path,
                                                       candidate, library, backend):
    import torch

    from autopeft.methods import build

    inputs, labels = minilm_batch
    built = build(minilm, candidate, seed=0)
    assert built.backend == backend
    built.model.eval()
    with torch.no_grad():
        untrained = built.model(**inputs).logits
    _train(built, inputs, labels)
    with torch.no_grad():
        logits = built.model(**inputs).logits
    out = export_candidate(candidate, tmp_path / "export", model_ref="minilm",
                           provenance={"trial": 0, "seed": 0}, built=built)
    _, prov = load_exported(out)
    assert prov["artifact"]["library"] == library and prov["artifact"]["complete"]
    data = tmp_path / "data.pt"
    torch.save({"inputs": {k: v for k, v in inputs.items()}, "logits": logits,
                "untrained": untrained, "num_labels": minilm.num_labels}, data)
    script = tmp_path / "load.py"
    script.write_text(textwrap.dedent(LOADERS[library]) + textwrap.dedent(COMPARE))
    run = subprocess.run([sys.executable, str(script), str(minilm.info.path), str(out), str(data)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["autopeft_modules"] == []
    assert result["max_diff"] < 1e-5
    assert result["moved"] > 1e-3  # training changed the logits, so the match means something
