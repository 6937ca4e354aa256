"""Write a study's measured trials as the CSV table that bench_controllers.py replays.

The table committed as experiments/data/trials_default.csv was made with:

    cd experiments/data
    autopeft search --space default.yaml --experiment default.yaml --controller random \\
        --trials 300 --study table-default --seed 0 \\
        --storage sqlite:///$PWD/table_default.db
    python ../make_table.py --storage sqlite:///$PWD/table_default.db \\
        --study table-default --out trials_default.csv

Random proposals on purpose: the table should cover the space without a controller's bias.
Every row is one real proxy evaluation (real MiniLM, real TREC-6 training).
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from autopeft.candidate import Candidate
from autopeft.records import TrialState
from autopeft.storage import open_storage

COLUMNS = ("number", "state", "key", "assignment", "reward", "metric", "params_ratio",
           "flops_ratio", "feasible", "train_seconds", "summary", "source")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--storage", required=True)
    ap.add_argument("--study", required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    storage = open_storage(args.storage)
    rows = []
    for t in storage.get_trials(args.study):
        if not t.state.finished:
            continue
        cand = Candidate.from_dict(t.candidate)
        m = t.metrics
        ok = t.state == TrialState.COMPLETE and m is not None
        rows.append({
            "number": t.number, "state": t.state.value, "key": cand.key(),
            "assignment": json.dumps(dict(t.assignment), sort_keys=True),
            "reward": "" if not ok or t.reward is None else f"{t.reward:.6f}",
            "metric": "" if not ok else f"{m.metric:.6f}",
            "params_ratio": "" if m is None else f"{m.cost.params_ratio:.8f}",
            "flops_ratio": "" if m is None else f"{m.cost.flops_ratio:.8f}",
            "feasible": "" if t.feasible is None else int(bool(t.feasible)),
            "train_seconds": "" if m is None else f"{m.train_seconds:.2f}",
            "summary": cand.summary(), "source": "measured",
        })
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    print(f"{len(rows)} finished trials of {args.study} -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
