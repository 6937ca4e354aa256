"""Does the proxy trial rank candidates the way a long training does?

Trains each of a set of diverse candidates twice on the same data: under the experiment's
`proxy` section (what a search trial does) and under its `full` section (the whole train
split, more epochs: what finalize does), then prints Kendall's tau between the two
rankings (tau-b, autopeft.metrics.kendall_tau).  The long ranking uses the validation
metric of the long run (its test score is printed beside it, never used).

    .venv/bin/python experiments/proxy_fidelity.py [--experiment default]
        [--long-epochs 2] [--results /tmp/fidelity.json] [--threads 2]

Results are appended to --results as they come, and candidates already there are not
trained again, so an interrupted run continues where it stopped.
The last line is `kendall_tau=<t> n=<n>`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

ALL = [0, 1, 2, 3, 4, 5]


def _lora(rank, targets, layers=ALL):
    return {"type": "lora", "layers": layers, "targets": targets, "rank": rank,
            "alpha": 2.0 * rank}


# name -> (modules, learning rate): each method at a learning rate usual for it
CANDIDATES = {  # the most different kinds first, so a cut-short run still spans them
    "head_only": ([], 5e-3),
    "bitfit": ([{"type": "bitfit", "layers": ALL}], 5e-3),
    "lora_r8_qv": ([_lora(8, ["q", "v"])], 1e-3),
    "adapter_64": ([{"type": "adapter", "layers": ALL, "size": 64}], 1e-3),
    "prefix_10": ([{"type": "prefix", "layers": ALL, "length": 10}], 5e-3),
    "ia3": ([{"type": "ia3", "layers": ALL}], 5e-3),
    "lora_r2_qv": ([_lora(2, ["q", "v"])], 1e-3),
    "parallel_adapter_32": ([{"type": "parallel_adapter", "layers": ALL, "size": 32}], 1e-3),
    "lora_r16_all": ([_lora(16, ["q", "k", "v", "o", "ffn_in", "ffn_out"])], 5e-4),
    "prompt_10": ([{"type": "prompt", "length": 10}], 1e-2),
    "lora_r8_qv_top3": ([_lora(8, ["q", "v"], [3, 4, 5])], 1e-3),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--experiment", default="default")
    ap.add_argument("--long-epochs", type=float, default=None,
                    help="epochs of the long training (default: the experiment's full.epochs)")
    ap.add_argument("--candidates", default=",".join(CANDIDATES),
                    help="comma-separated names from: " + ", ".join(CANDIDATES))
    ap.add_argument("--results", default="/tmp/autopeft_fidelity.json")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--long-bf16", choices=("on", "off"), default=None,
                    help="bf16 autocast in the long training (default: full.bf16)")
    args = ap.parse_args(argv)

    from autopeft.config import load_experiment
    from autopeft.evaluation.base import NullReporter
    from autopeft.evaluation.proxy import ProxyEvaluator
    from autopeft.exceptions import TrialFailedError
    from autopeft.metrics import kendall_tau
    from autopeft.records import EvalRequest

    cfg = load_experiment(args.experiment)
    if args.threads:
        cfg = dataclasses.replace(cfg, resources=dataclasses.replace(cfg.resources,
                                                                     cpus=args.threads))
    if args.long_epochs is not None:
        cfg = dataclasses.replace(cfg, full=dataclasses.replace(
            cfg.full, epochs=args.long_epochs, max_steps=None))
    if args.long_bf16 is not None:
        cfg = dataclasses.replace(cfg, full=dataclasses.replace(
            cfg.full, bf16=args.long_bf16 == "on"))
    proxy_exp, long_exp = cfg.to_dict(), cfg.for_final().to_dict()
    print(f"proxy: {cfg.proxy}\nlong:  {cfg.full}", flush=True)
    results_path = Path(args.results)
    done = json.loads(results_path.read_text()) if results_path.is_file() else {}
    setting = {"proxy": proxy_exp["proxy"], "full": long_exp["full"],
               "optimizer": proxy_exp["optimizer"], "data": proxy_exp["data"]}
    if done.get("_setting") not in (None, setting):
        print(f"{results_path} holds results of another setting: pass another --results",
              file=sys.stderr)
        return 2
    done["_setting"] = setting
    ev = ProxyEvaluator(proxy_exp)
    names = [n.strip() for n in args.candidates.split(",") if n.strip()]
    for i, name in enumerate(names):
        if name in done:
            continue
        modules, lr = CANDIDATES[name]
        cand = {"modules": modules, "hyper": {"learning_rate": lr}, "num_layers": 6}
        row = {}
        for label, exp in (("proxy", proxy_exp), ("long", long_exp)):
            t = time.perf_counter()
            try:
                m = ev.evaluate(EvalRequest("fidelity", i, cand, exp, seed=args.seed),
                                NullReporter())
            except TrialFailedError as exc:
                print(f"{name}: {label} run failed: {exc}", flush=True)
                row = None
                break
            row[label] = m.metric
            row[f"{label}_seconds"] = round(time.perf_counter() - t, 1)
            row[f"{label}_steps"] = m.steps
            if label == "long":
                row["long_test"] = m.test_metric
            row["params_ratio"] = m.cost.params_ratio
        if row is None:
            continue
        done[name] = row
        results_path.write_text(json.dumps(done, indent=1))
        print(f"{name:22s} proxy {row['proxy']:.4f} ({row['proxy_seconds']:.0f}s)  "
              f"long {row['long']:.4f} ({row['long_seconds']:.0f}s, test "
              f"{row['long_test']:.4f})", flush=True)
    rows = {n: done[n] for n in names if n in done}
    if len(rows) < 2:
        print("fewer than two candidates finished", file=sys.stderr)
        return 1
    by_long = sorted(rows, key=lambda n: -rows[n]["long"])
    print("\nrank  candidate               long    proxy")
    for r, n in enumerate(by_long, 1):
        print(f"{r:4d}  {n:22s} {rows[n]['long']:.4f}  {rows[n]['proxy']:.4f}")
    tau = kendall_tau([rows[n]["proxy"] for n in rows], [rows[n]["long"] for n in rows])
    print(f"kendall_tau={tau:.3f} n={len(rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
