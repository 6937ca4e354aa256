"""Benchmark: what one proxy trial costs, against a competent hand-written trial.

Sides (all train the same candidate, on the same stratified examples, for the same steps,
batch size, learning rate, warmup + linear decay, clipping, evaluation points, precision
and one thread; each reports its best validation accuracy):

  fair   a competent HF `Trainer` trial, as a user doing model_init-based HPO writes it:
         tokenise once without padding (datasets.map, shared by all its trials),
         DataCollatorWithPadding, the model rebuilt per trial (from_pretrained + peft).
  naive  (--naive) the old baseline: every trial re-reads data and model and pads every
         example to max_length (as HF tutorials do).
  today  ProxyEvaluator as it was before issue 12: plain random batches
         (length_window 1), every evaluation on all validation examples, no cache.
  fast   ProxyEvaluator with length-grouped batches (window 50; off in the proxy's
         defaults), cheap rungs on a stratified subset, the frozen-prefix activation cache.

Per-trial cost = once-per-side set-up / repeats + median trial time (set-up: data, model,
tokenisation; the fair side's per-trial model rebuild is inside its trials; the fast
side's cache is built inside its first trial that needs it).  Spread = the same with the
fastest and the slowest trial.  Trials of a case are interleaved (side order rotates per
repeat) so every side sees the same machine load.

Cases: TREC-6 (questions, ~13 tokens) with the default candidate (LoRA r=8 on q,v, all
layers); 128-token documents (experiments/longtext.py: consecutive same-label Rotten
Tomatoes snippets joined to >= 128 tokens) with the default candidate and with the same
LoRA on the top half of the layers only.  Then `tau`: >= 10 default-space candidates,
each trained on the fast and today paths: Kendall tau between the two, the effect of no
dropout below L on the cached ones, and tau between rung-subset and full-validation scores
at each rung (from today's full evaluations).

Precision: bf16 where the CPU (or GPU) has bf16 units, else fp32 for every side (on a CPU
without them bf16 is emulated and ~10x slower: that speed-up is not counted here).

    .venv/bin/python experiments/bench_trial.py                  # ~10 min on a quiet 2-core box
    .venv/bin/python experiments/bench_trial.py --full --repeats 3 --naive   # the issue's sizes

Last line: `fair_speedup=<x> top_half_long_speedup=<y> tau_fast_vs_plain=<t>`.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

ALL, TOP = [0, 1, 2, 3, 4, 5], [3, 4, 5]
WINDOW = 50  # the fast side's length_window (the proxy default is 1: see docs/EXPERIMENT.md)


def _lora(layers=ALL, rank=8, targets=("q", "v")):
    return {"type": "lora", "layers": layers, "targets": list(targets), "rank": rank,
            "alpha": 16.0, "dropout": 0.0}


DEFAULT = [_lora()]
TOP_HALF = [_lora(TOP)]
# default-space candidates (search_spaces/default.yaml choices), most different first
TAU_SET = {
    "lora_r8_qv": ([_lora()], 1e-3),
    "lora_r8_qv_top": ([_lora(TOP)], 1e-3),
    "adapter64_pf": ([{"type": "adapter", "layers": ALL, "size": 64}], 1e-3),
    "adapter16_hb_top": ([{"type": "adapter", "layers": TOP, "size": 16,
                           "placement": "houlsby"}], 3e-3),
    "ia3": ([{"type": "ia3", "layers": ALL}], 1e-2),
    "bitfit": ([{"type": "bitfit", "layers": ALL}], 1e-2),
    "prefix16": ([{"type": "prefix", "layers": ALL, "length": 16}], 1e-2),
    "par16_top": ([{"type": "parallel_adapter", "layers": TOP, "size": 16}], 3e-3),
    "lora_r4_qkvo_top": ([_lora(TOP, 4, ("q", "k", "v", "o"))], 3e-3),
    "lora_r16_ffn_top": ([_lora(TOP, 16, ("q", "v", "ffn_in", "ffn_out"))], 1e-3),
    "par64": ([{"type": "parallel_adapter", "layers": ALL, "size": 64}], 1e-3),
    "lora_r8_top_lowlr": ([_lora(TOP)], 1e-4),
}


def cand(modules, lr=None):
    return {"modules": modules, "hyper": {} if lr is None else {"learning_rate": lr},
            "num_layers": 6}


# ---------------------------------------------------------------- the hand-written sides

class FairTrainer:
    """model_init-style HPO with transformers.Trainer: tokenise once, rebuild per trial."""

    def __init__(self, cfg, padding=False):
        t0 = time.perf_counter()
        import transformers
        from datasets import Dataset

        from autopeft import taskdata
        from autopeft.models import minilm_path

        self.cfg, p = cfg, cfg.proxy
        raw = taskdata.load_examples(cfg.data, file=cfg.source)
        splits = taskdata.make_splits(raw.labels, cfg.data)
        tr = taskdata.stratified_subset(raw.labels, splits["train"], p.train_examples or 10**12,
                                        seed=cfg.data.split_seed)
        va = taskdata.stratified_subset(raw.labels, splits["validation"],
                                        p.validation_examples or 10**12,
                                        seed=cfg.data.split_seed + 1)
        self.path, self.num_labels = str(minilm_path()), raw.num_labels
        self.tok = transformers.AutoTokenizer.from_pretrained(self.path)

        def as_ds(idx):  # no padding here: the collator pads each batch
            ds = Dataset.from_dict({"text": [raw.texts[i] for i in idx],
                                    "label": [int(raw.labels[i]) for i in idx]})
            return ds.map(lambda b: self.tok(b["text"], truncation=True,
                                             max_length=p.max_length, padding=padding),
                          batched=True, remove_columns=["text"])

        self.train_ds, self.val_ds = as_ds(tr), as_ds(va)
        self.setup_seconds = time.perf_counter() - t0

    def trial(self, modules, seed):
        t0 = time.perf_counter()
        import numpy as np
        import transformers
        from peft import LoraConfig, get_peft_model

        from autopeft import metrics

        (m,) = modules
        cfg, p, o = self.cfg, self.cfg.proxy, self.cfg.optimizer
        model = transformers.AutoModelForSequenceClassification.from_pretrained(
            self.path, num_labels=self.num_labels)
        names = {"q": "query", "k": "key", "v": "value"}
        model = get_peft_model(model, LoraConfig(
            task_type="SEQ_CLS", r=m["rank"], lora_alpha=m["alpha"], lora_dropout=0.0,
            target_modules=[names[t] for t in m["targets"]],
            layers_to_transform=None if m["layers"] == ALL else m["layers"]))

        def compute_metrics(pred):
            return {"accuracy": metrics.accuracy(pred.label_ids,
                                                 np.argmax(pred.predictions, -1))}

        with tempfile.TemporaryDirectory() as out:
            args = transformers.TrainingArguments(
                output_dir=out, max_steps=p.max_steps, per_device_train_batch_size=o.batch_size,
                per_device_eval_batch_size=p.eval_batch_size, learning_rate=o.learning_rate,
                weight_decay=o.weight_decay, warmup_ratio=o.warmup_ratio,
                max_grad_norm=o.max_grad_norm, lr_scheduler_type="linear",
                eval_strategy="steps", eval_steps=p.eval_every, save_strategy="no",
                logging_strategy="no", report_to=[], seed=seed, use_cpu=True,
                disable_tqdm=True, dataloader_num_workers=0, bf16=p.bf16)
            trainer = transformers.Trainer(
                model=model, args=args, train_dataset=self.train_ds, eval_dataset=self.val_ds,
                data_collator=transformers.DataCollatorWithPadding(self.tok),
                compute_metrics=compute_metrics)
            trainer.train()
            accs = [h["eval_accuracy"] for h in trainer.state.log_history
                    if "eval_accuracy" in h]
            if p.max_steps % p.eval_every:
                accs.append(trainer.evaluate()["eval_accuracy"])
        return time.perf_counter() - t0, max(accs)


class Naive:
    """The old baseline: everything re-read per trial, every example padded to max_length."""

    def __init__(self, cfg):
        self.cfg, self.setup_seconds = cfg, 0.0

    def trial(self, modules, seed):
        t0 = time.perf_counter()
        _, acc = FairTrainer(self.cfg, padding="max_length").trial(modules, seed)
        return time.perf_counter() - t0, acc


class Ours:
    """ProxyEvaluator on one path (today's or fast)."""

    def __init__(self, cfg):
        from autopeft.evaluation.proxy import ProxyEvaluator

        # a side of its own: no sharing of the other side's on-disk token cache
        os.environ["AUTOPEFT_CACHE"] = tempfile.mkdtemp(prefix="bench_trial_")
        t0 = time.perf_counter()
        self.exp = cfg.to_dict()
        self.ev = ProxyEvaluator(self.exp)
        s = self.ev.setup()
        self.ev._encoded(s, cfg.proxy.max_length)
        self.setup_seconds = time.perf_counter() - t0
        self.once = 0.0   # activation-cache builds: once per worker and L, not per trial

    def trial(self, modules, seed, lr=None, number=0):
        from autopeft.evaluation.base import NullReporter
        from autopeft.records import EvalRequest

        cache = self.ev._activations
        built = {id(v) for v in cache.entries.values()} if cache else set()
        t0 = time.perf_counter()
        m = self.ev.evaluate(EvalRequest("bench", number, cand(modules, lr), self.exp,
                                         seed=seed), NullReporter())
        seconds = time.perf_counter() - t0
        cache = self.ev._activations
        new = [v.seconds for v in (cache.entries.values() if cache else ())
               if id(v) not in built]
        self.once += sum(new)
        self.last = m
        return seconds - sum(new), m.metric


def path(cfg, fast: bool, rung: int | None):
    t = cfg.proxy
    t = (dataclasses.replace(t, rung_examples=rung, length_window=WINDOW) if fast else
         dataclasses.replace(t, length_window=1, rung_examples=None, frozen_cache_mb=0))
    return dataclasses.replace(cfg, proxy=t)


# ---------------------------------------------------------------- measuring

def padding_report(title, ours, cfg):
    """Tokens per training batch (padded and real) with plain and length-grouped batches."""
    import torch

    from autopeft import taskdata
    from autopeft.evaluation import batching

    s = ours.ev.setup()
    enc = ours.ev._encoded(s, cfg.proxy.max_length)
    idx = taskdata.stratified_subset(s.raw.labels, s.splits["train"],
                                     cfg.proxy.train_examples or 10**12,
                                     seed=cfg.data.split_seed)
    bs = cfg.optimizer.batch_size
    for window in (1, cfg.proxy.length_window if cfg.proxy.length_window > 1 else 50):
        pads, reals = [], []
        for seed in range(5):  # five epochs' orders
            b = batching.grouped_order(enc.lengths, idx, bs,
                                       generator=torch.Generator().manual_seed(seed),
                                       window=window)
            pad, real = batching.padded_tokens(enc.lengths, b)
            pads.append(pad)
            reals.append(real)
        print(f"{title} tokens per batch of {bs}, window {window:2d}: padded "
              f"{statistics.mean(pads):.0f} (real {statistics.mean(reals):.0f}, "
              f"{statistics.mean(pads) / bs:.1f} tokens wide)", flush=True)


def per_trial(side, times, search_trials):
    """Median trial + the side's once-per-worker costs spread over a search's trials."""
    base = (side.setup_seconds + getattr(side, "once", 0.0)) / search_trials
    return base + statistics.median(times), base + min(times), base + max(times)


def run_case(title, sides, modules, repeats, torch, threads, search_trials):
    """Interleave the sides' trials; returns {name: (cost, lo, hi, mean accuracy)}."""
    names = list(sides)
    times = {n: [] for n in names}
    accs = {n: [] for n in names}
    for r in range(repeats):
        for k in range(len(names)):
            n = names[(k + r) % len(names)]     # rotate who goes first
            torch.set_num_threads(threads)
            s, a = sides[n].trial(modules, seed=r)
            times[n].append(s)
            accs[n].append(a)
            print(f"  {title} {n:6s} repeat {r}: {s:6.1f}s  accuracy {a:.4f}", flush=True)
    out = {}
    for n in names:
        cost, lo, hi = per_trial(sides[n], times[n], search_trials)
        out[n] = (cost, lo, hi, statistics.mean(accs[n]))
        once = getattr(sides[n], "once", 0.0)
        print(f"{title} {n:6s} {cost:7.1f}s per trial  [{lo:.1f}..{hi:.1f}]  set-up "
              f"{sides[n].setup_seconds:.1f}s" + (f" + cache builds {once:.1f}s" if once else "")
              + f" (over {search_trials} trials)  accuracy {out[n][3]:.4f}", flush=True)
    return out


def tau_section(cfg, args, torch, threads):
    """Fast vs today over TAU_SET; rung-subset vs full from today's evaluations."""
    import numpy as np

    from autopeft import metrics, taskdata
    from autopeft.evaluation import trainloop
    from autopeft.metrics import kendall_tau

    p = dataclasses.replace(cfg.proxy, max_steps=args.tau_steps, eval_every=args.tau_every)
    cfg = dataclasses.replace(cfg, proxy=p)
    fast, today = Ours(path(cfg, True, args.rung)), Ours(path(cfg, False, None))
    s = today.ev.setup()
    val = taskdata.stratified_subset(s.raw.labels, s.splits["validation"],
                                     p.validation_examples or 10**12,
                                     seed=cfg.data.split_seed + 1)
    rung = taskdata.stratified_subset(s.raw.labels, val, args.rung,
                                      seed=cfg.data.split_seed + 2)
    pos = np.searchsorted(val, rung)
    probe: list[tuple[float, float]] = []
    real_score = trainloop.TrainLoop.score

    def score(self, idx):  # today's full evaluations, also read on the rung subset
        value, y_pred = real_score(self, idx)
        if len(idx) == len(val) and self.t.rung_examples is None:
            y = self.source.labels[torch.as_tensor(rung)].numpy()
            probe.append((metrics.compute(cfg.metric, y, y_pred[pos]), value))
        return value, y_pred

    trainloop.TrainLoop.score = score
    rows, rung_rows = {}, {}
    try:
        for i, (name, (mods, lr)) in enumerate(TAU_SET.items()):
            if i >= args.tau_candidates:
                break
            torch.set_num_threads(threads)
            order = [("fast", fast), ("today", today)][:: 1 if i % 2 else -1]
            row = {}
            for label, side in order:
                probe.clear()
                t, a = side.trial(mods, seed=0, lr=lr, number=i)
                row[label], row[label + "_s"] = a, t
                row["L"] = side.last.extra["frozen_below"] if label == "fast" else row.get("L")
                if label == "today":
                    rung_rows[name] = list(probe)
            rows[name] = row
            print(f"  tau {name:20s} L={row['L']}  fast {row['fast']:.4f} ({row['fast_s']:.0f}s)"
                  f"  today {row['today']:.4f} ({row['today_s']:.0f}s)", flush=True)
    finally:
        trainloop.TrainLoop.score = real_score
    names = list(rows)
    tau = kendall_tau([rows[n]["fast"] for n in names], [rows[n]["today"] for n in names])
    cached = [n for n in names if rows[n]["L"]]
    diffs = [rows[n]["fast"] - rows[n]["today"] for n in cached]
    print(f"tau fast vs today over {len(names)} candidates: {tau:.3f}; mean |acc diff| "
          f"{statistics.mean(abs(rows[n]['fast'] - rows[n]['today']) for n in names):.4f}")
    if cached:
        print(f"cached candidates (no dropout below L): {len(cached)}, accuracy fast-today "
              f"mean {statistics.mean(diffs):+.4f} [{min(diffs):+.4f}..{max(diffs):+.4f}]")
    n_rungs = min(len(v) for v in rung_rows.values())
    for r in range(n_rungs):
        sub = [rung_rows[n][r][0] for n in names]
        full = [rung_rows[n][r][1] for n in names]
        print(f"rung {r + 1}: tau(subset of {len(rung)} vs all {len(val)}) = "
              f"{kendall_tau(sub, full):.3f}")
    return tau


def sized(cfg, args, long: bool):
    """The case's experiment: the issue's sizes with --full, smaller by default."""
    p, d = cfg.proxy, cfg.data
    if long:
        from longtext import build_csv

        src = build_csv(Path(args.out))
        d = dataclasses.replace(d, source=str(src))
    steps, every, n_tr, n_va = ((150, 50, 2000, 500) if args.full else
                                ((args.long_steps, args.long_steps // 2, args.long_train,
                                  args.long_val) if long
                                 else (args.steps, args.steps // 3, args.train, args.val)))
    p = dataclasses.replace(p, max_steps=steps, eval_every=every, train_examples=n_tr,
                            validation_examples=n_va, max_length=128 if long else p.max_length)
    return dataclasses.replace(cfg, data=d, proxy=p)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--experiment", default="default")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--full", action="store_true", help="the issue's sizes: 2000 train, "
                    "500 validation, 150 steps, evaluations every 50 (long and short)")
    ap.add_argument("--steps", type=int, default=60, help="TREC steps without --full")
    ap.add_argument("--long-steps", type=int, default=30, help="long-text steps without --full")
    ap.add_argument("--train", type=int, default=1000, help="TREC train examples")
    ap.add_argument("--val", type=int, default=300, help="TREC validation examples")
    ap.add_argument("--long-train", type=int, default=600)
    ap.add_argument("--long-val", type=int, default=200)
    ap.add_argument("--rung", type=int, default=200, help="rung subset size (fast side)")
    ap.add_argument("--naive", action="store_true", help="add the old padded baseline")
    ap.add_argument("--search-trials", type=int, default=20, help="trials a search spreads "
                    "each side's once-per-worker costs (set-up, cache builds) over")
    ap.add_argument("--tau-candidates", type=int, default=10)
    ap.add_argument("--tau-steps", type=int, default=60)
    ap.add_argument("--tau-every", type=int, default=20)
    ap.add_argument("--skip", default="", help="comma list of cases to skip: trec,long,tau")
    ap.add_argument("--out", default=str(Path(__file__).parent / "out"))
    args = ap.parse_args(argv)

    import torch

    from autopeft.config import load_experiment
    from autopeft.evaluation.trainloop import bf16_pays

    import datasets  # noqa: F401 - imports paid before any side is timed
    import peft  # noqa: F401
    import transformers  # noqa: F401
    cfg = load_experiment(args.experiment)
    threads = 1
    bf16 = bf16_pays(torch, torch.device("cpu"), cfg.proxy.bf16)
    cfg = dataclasses.replace(cfg, resources=dataclasses.replace(cfg.resources, cpus=threads),
                              proxy=dataclasses.replace(cfg.proxy, bf16=bf16))
    torch.set_num_threads(threads)
    skip = set(args.skip.split(","))
    print(f"{cfg.data.source}: batch {cfg.optimizer.batch_size}, lr "
          f"{cfg.optimizer.learning_rate:g}, {'bf16' if bf16 else 'fp32 (no bf16 units)'}, "
          f"{threads} thread, {args.repeats} repeats, rung subset {args.rung}", flush=True)
    fair = top = tau = float("nan")
    if "trec" not in skip:
        c = sized(cfg, args, long=False)
        print(f"[trec] {c.proxy.train_examples} train / {c.proxy.validation_examples} val, "
              f"{c.proxy.max_steps} steps, eval every {c.proxy.eval_every}", flush=True)
        sides = {"fair": FairTrainer(c), "today": Ours(path(c, False, None)),
                 "fast": Ours(path(c, True, args.rung))}
        if args.naive:
            sides["naive"] = Naive(c)
        padding_report("trec", sides["fast"], path(c, True, args.rung))
        r = run_case("trec default", sides, DEFAULT, args.repeats, torch, threads,
                     args.search_trials)
        fair = r["fair"][0] / r["fast"][0]
        print(f"trec default: fast vs fair {fair:.2f}x (accuracy {r['fast'][3]:.4f} vs "
              f"{r['fair'][3]:.4f}), fast vs today {r['today'][0] / r['fast'][0]:.2f}x"
              + (f", fair vs naive {r['naive'][0] / r['fair'][0]:.2f}x" if args.naive else ""),
              flush=True)
    if "long" not in skip:
        c = sized(cfg, args, long=True)
        print(f"[long] {c.data.source}: {c.proxy.train_examples} train / "
              f"{c.proxy.validation_examples} val, {c.proxy.max_steps} steps, max_length 128",
              flush=True)
        sides = {"today": Ours(path(c, False, None)), "fast": Ours(path(c, True, args.rung))}
        padding_report("long", sides["fast"], path(c, True, args.rung))
        r = run_case("long top-half", sides, TOP_HALF, args.repeats, torch, threads,
                     args.search_trials)
        top = r["today"][0] / r["fast"][0]
        print(f"long top-half: fast vs today {top:.2f}x (accuracy {r['fast'][3]:.4f} vs "
              f"{r['today'][3]:.4f}); cache {sides['fast'].ev._activations.nbytes / 2**20:.1f}"
              f" MB", flush=True)
        r = run_case("long default", sides, DEFAULT, args.repeats, torch, threads,
                     args.search_trials)
        print(f"long default: fast vs today {r['today'][0] / r['fast'][0]:.2f}x", flush=True)
    if "tau" not in skip:
        print(f"[tau] {min(args.tau_candidates, len(TAU_SET))} candidates, "
              f"{args.tau_steps} steps", flush=True)
        tau = tau_section(sized(cfg, args, long=False), args, torch, threads)
    print(f"fair_speedup={fair:.2f} top_half_long_speedup={top:.2f} "
          f"tau_fast_vs_plain={tau:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
