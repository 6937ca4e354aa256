"""Measure proxy validation accuracy of single modules at a few learning rates.

The learning-rate ranges in search_spaces/default.yaml come from the 300 random-search
trials in experiments/data/trials_default.csv (learning rate drawn log-uniformly in
1e-4..1e-2; `--table` prints the summary per type and band). The PLAN trials probe the
rates above 1e-2 that the table never tried (IA3, prefix and BitFit still improve at
1e-2) and pin the recipes' rates; they have not been run to the end yet (the shared
machine was too loaded on 2026-12-01), so the spaces mark those rates "not measured".

    python experiments/measure_lr.py --out /tmp/lr.jsonl            # run the trials
    python experiments/measure_lr.py --table                          # summarise the table

Each trial is one default proxy trial (experiments/default.yaml: MiniLM, TREC-6, 150
steps x 16, seed 0), or with `--fidelity full` one training on the experiment's `full`
schedule (the whole train split, 3 epochs, early stopping: what finalize trains); one
JSON line per trial is appended to --out as it finishes.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
ALL6 = [0, 1, 2, 3, 4, 5]
MODULES = {
    "lora_r8_qv": {"type": "lora", "rank": 8, "targets": ["q", "v"], "layers": ALL6},
    "pfeiffer64": {"type": "adapter", "size": 64, "placement": "pfeiffer", "layers": ALL6},
    "houlsby64": {"type": "adapter", "size": 64, "placement": "houlsby", "layers": ALL6},
    "parallel64": {"type": "parallel_adapter", "size": 64, "layers": ALL6},
    "prefix16": {"type": "prefix", "length": 16, "layers": ALL6},
    "ia3": {"type": "ia3", "layers": ALL6},
    "bitfit": {"type": "bitfit", "layers": ALL6},
    "full": {"type": "full"},  # full fine-tuning, the reference (autopeft.recipes)
}
# (module, learning rate): the points the table lacks (above 1e-2) or that pin a recipe
PLAN = [("ia3", 2e-2), ("ia3", 4e-2), ("prefix16", 2e-2), ("prefix16", 4e-2),
        ("bitfit", 2e-2), ("bitfit", 4e-2), ("lora_r8_qv", 1e-3), ("lora_r8_qv", 2e-3),
        ("houlsby64", 3e-3), ("parallel64", 1e-3)]


def run(out: Path, plan: list[tuple[str, float]], seed: int, fidelity: str = "proxy") -> None:
    from autopeft.config import load_experiment
    from autopeft.evaluation.base import NullReporter
    from autopeft.evaluation.proxy import ProxyEvaluator
    from autopeft.records import EvalRequest

    cfg = load_experiment(HERE / "default.yaml")
    cfg = (cfg.for_final() if fidelity == "full" else cfg).to_dict()
    ev = ProxyEvaluator(cfg)
    for i, (name, lr) in enumerate(plan):
        cand = {"modules": [MODULES[name]], "hyper": {"learning_rate": lr}, "num_layers": 6}
        t0 = time.perf_counter()
        m = ev.evaluate(EvalRequest("measure-lr", i, cand, cfg, seed), NullReporter())
        row = {"module": name, "learning_rate": lr, "fidelity": fidelity,
               "metric": round(m.metric, 4), "steps": m.steps,
               "curve": [round(v, 3) for _, v in m.intermediate], "seed": seed,
               "seconds": round(time.perf_counter() - t0, 1)}
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)


def table(path: Path) -> None:
    """Median validation accuracy per module type and learning-rate band of the table."""
    bands = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2 + 1e-12]
    cells: dict[tuple[str, int], list[float]] = defaultdict(list)
    with path.open() as f:
        for row in csv.DictReader(f):
            if not row["metric"]:
                continue
            a = json.loads(row["assignment"])
            typ = a["module"]
            if typ == "adapter":
                typ = f"adapter/{a['adapter.placement']}"
            lr = a["hp.learning_rate"]
            band = next(i for i in range(4) if lr < bands[i + 1])
            cells[(typ, band)].append(float(row["metric"]))
    print("type".ljust(20) + "".join(f"{bands[i]:.0e}-{bands[i + 1]:.0e}".rjust(26)
                                     for i in range(4)))
    for typ in sorted({t for t, _ in cells}):
        line = typ.ljust(20)
        for b in range(4):
            v = sorted(cells.get((typ, b), []))
            line += (f"{v[len(v) // 2]:.3f} [{v[0]:.2f},{v[-1]:.2f}] n={len(v)}".rjust(26)
                     if v else "-".rjust(26))
        print(line)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("lr_trials.jsonl"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plan", nargs="*", metavar="MODULE=LR",
                    help="trials to run instead of PLAN, e.g. ia3=0.02 prefix16=0.02")
    ap.add_argument("--fidelity", choices=("proxy", "full"), default="proxy",
                    help="full: the experiment's `full` schedule (what finalize trains)")
    ap.add_argument("--table", action="store_true",
                    help="summarise experiments/data/trials_default.csv instead")
    args = ap.parse_args(argv)
    if args.table:
        table(HERE / "data" / "trials_default.csv")
        return 0
    plan = PLAN if not args.plan else [(m, float(lr)) for m, lr in
                                       (item.split("=") for item in args.plan)]
    run(args.out, plan, args.seed, args.fidelity)
    return 0


if __name__ == "__main__":
    sys.exit(main())
