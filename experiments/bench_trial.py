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
         (length_window 1), every evaluation on all validation examples, no activation
         cache, no lean model.
  fast   ProxyEvaluator as it is now by default: length-grouped batches (windows of 16
         batches), cheap rungs on a stratified subset, the frozen-prefix activation cache,
         and the lean model (frozen linear weights kept in bf16 under bf16 autocast, the
         last layer at [CLS] only, cheaper dropout masks).

Clock: CPU seconds of this process (time.process_time), printed beside wall seconds.
Every side runs one torch thread in this one process, so CPU time is the work a side
does; unlike wall time it does not count the seconds a shared machine's other jobs take
the core away (these 2 cores are shared with other benchmarks), so the ratios hold under
load.  Per-trial cost = once-per-side set-up / search trials + median trial (set-up:
data, model, tokenisation; the fair side rebuilds its model inside each trial; the fast
side's activation cache is built once per worker and L, counted as set-up).  Spread = the
same with the fastest and the slowest trial.  Trials of a case are interleaved (the order
rotates per repeat).

Cases:
  trec   TREC-6 (questions, ~13 tokens) with the default candidate (LoRA r=8 on q,v, all
         layers), at the default proxy's sizes (2000 train, 500 validation, 150 steps,
         evaluations every 50).
  long   128-token documents (experiments/longtext.py: consecutive same-label Rotten
         Tomatoes snippets joined to >= 128 tokens) with the same LoRA on the top half of
         the layers, with the default candidate, and with full fine-tuning (every weight
         trains: the reference that Embedding Recycling's "over 90 % faster" is measured
         against) on today's path.
  tau    N candidates sampled from search_spaces/default.yaml (seeded), each trained on the
         fast and today paths with the same trial seed, plus today's path with another
         seed: Kendall tau fast-vs-today beside the control tau today-vs-today' (what seed
         noise alone gives), the accuracy effect of no dropout below L on the cached
         candidates, and tau between rung-subset and full-validation scores at each rung.

Precision: bf16 where the CPU (or GPU) has bf16 units, else fp32 for every side (on a CPU
without them bf16 is emulated and ~10x slower: that speed-up is not counted here).

    .venv/bin/python experiments/bench_trial.py            # ~35 min on one quiet core
    .venv/bin/python experiments/bench_trial.py --naive --repeats 3

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
WINDOW = 16  # the fast side's length_window: the proxy default (docs/EXPERIMENT.md)


def clock():
    """(CPU seconds of this process, wall seconds)."""
    return time.process_time(), time.perf_counter()


def since(t):
    c, w = clock()
    return c - t[0], w - t[1]


def _lora(layers=ALL, rank=8, targets=("q", "v")):
    return {"type": "lora", "layers": layers, "targets": list(targets), "rank": rank,
            "alpha": 16.0, "dropout": 0.0}


DEFAULT = [_lora()]
TOP_HALF = [_lora(TOP)]
FULL_FT = [{"type": "full"}]


def cand(modules, lr=None):
    return {"modules": modules, "hyper": {} if lr is None else {"learning_rate": lr},
            "num_layers": 6}


# ---------------------------------------------------------------- the hand-written sides

class FairTrainer:
    """model_init-style HPO with transformers.Trainer: tokenise once, rebuild per trial."""

    def __init__(self, cfg, padding=False):
        t0 = clock()
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
        self.setup_seconds = since(t0)[0]

    def trial(self, modules, seed):
        t0 = clock()
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
        return since(t0), max(accs)


class Naive:
    """The old baseline: everything re-read per trial, every example padded to max_length."""

    def __init__(self, cfg):
        self.cfg, self.setup_seconds = cfg, 0.0

    def trial(self, modules, seed):
        t0 = clock()
        _, acc = FairTrainer(self.cfg, padding="max_length").trial(modules, seed)
        return since(t0), acc


class Ours:
    """ProxyEvaluator on one path (today's or fast)."""

    def __init__(self, cfg):
        from autopeft.evaluation.proxy import ProxyEvaluator

        # a side of its own: no sharing of the other side's on-disk token cache
        os.environ["AUTOPEFT_CACHE"] = tempfile.mkdtemp(prefix="bench_trial_")
        t0 = clock()
        self.exp = cfg.to_dict()
        self.ev = ProxyEvaluator(self.exp)
        s = self.ev.setup()
        self.ev._encoded(s, cfg.proxy.max_length)
        self.setup_seconds = since(t0)[0]
        self.once = 0.0   # activation-cache builds: once per worker and L, not per trial

    def trial(self, modules, seed, lr=None, number=0):
        from autopeft.evaluation.base import NullReporter
        from autopeft.records import EvalRequest

        cache = self.ev._activations
        built = {id(v) for v in cache.entries.values()} if cache else set()
        t0 = clock()
        m = self.ev.evaluate(EvalRequest("bench", number, cand(modules, lr), self.exp,
                                         seed=seed), NullReporter())
        cpu, wall = since(t0)
        cache = self.ev._activations
        new = [v for v in (cache.entries.values() if cache else ()) if id(v) not in built]
        once_cpu = sum(v.cpu_seconds for v in new)   # the clock of this benchmark
        self.once += once_cpu
        self.last = m
        return (cpu - once_cpu, wall - sum(v.seconds for v in new)), m.metric


def path(cfg, fast: bool, rung: int | None):
    t = cfg.proxy
    t = (dataclasses.replace(t, rung_examples=rung, length_window=WINDOW, lean_model=True)
         if fast else
         dataclasses.replace(t, length_window=1, rung_examples=None, frozen_cache_mb=0,
                             lean_model=False))
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
    for window in (1, WINDOW):
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


def run_case(title, sides, jobs, repeats, torch, threads, search_trials):
    """Interleave the sides' trials; returns {name: (cpu cost, lo, hi, mean accuracy)}.

    jobs: {side name: (modules, lr)}, so sides may train different candidates."""
    names = list(sides)
    times = {n: [] for n in names}
    walls = {n: [] for n in names}
    accs = {n: [] for n in names}
    for r in range(repeats):
        for k in range(len(names)):
            n = names[(k + r) % len(names)]     # rotate who goes first
            torch.set_num_threads(threads)
            mods, lr = jobs[n]
            side = sides[n]
            (cpu, wall), a = (side.trial(mods, seed=r, lr=lr) if isinstance(side, Ours)
                              else side.trial(mods, seed=r))
            times[n].append(cpu)
            walls[n].append(wall)
            accs[n].append(a)
            print(f"  {title} {n:6s} repeat {r}: {cpu:6.1f} CPU s ({wall:6.1f} wall)  "
                  f"accuracy {a:.4f}", flush=True)
    out = {}
    for n in names:
        cost, lo, hi = per_trial(sides[n], times[n], search_trials)
        out[n] = (cost, lo, hi, statistics.mean(accs[n]))
        once = getattr(sides[n], "once", 0.0)
        print(f"{title} {n:6s} {cost:7.1f} CPU s per trial  [{lo:.1f}..{hi:.1f}]  median wall "
              f"{statistics.median(walls[n]):.1f}s  set-up {sides[n].setup_seconds:.1f}s"
              + (f" + cache builds {once:.1f}s" if once else "")
              + f" (over {search_trials} trials)  accuracy {out[n][3]:.4f} "
              f"[{min(accs[n]):.4f}..{max(accs[n]):.4f}]", flush=True)
    return out


def tau_candidates(n, seed):
    """n distinct candidates sampled from the default space (seeded), with their rates."""
    import numpy as np

    from autopeft.space import load_space

    bound = load_space("default.yaml").bind(num_layers=6, hidden_size=384)
    rng = np.random.default_rng(seed)
    out, seen = {}, set()
    while len(out) < n:
        c = bound.to_candidate(bound.sample(rng))
        if c.key() in seen:
            continue
        seen.add(c.key())
        out[f"c{len(out):02d} {c.summary()[:60]}"] = c.to_dict()
    return out


def tau_section(cfg, args, torch, threads):
    """Fast vs today (same seed), today vs today (another seed: the control), rungs."""
    import numpy as np

    from autopeft import metrics, taskdata
    from autopeft.evaluation import trainloop
    from autopeft.metrics import kendall_tau

    fast, today = Ours(path(cfg, True, args.rung)), Ours(path(cfg, False, None))
    p = cfg.proxy
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

    def run(side, c, seed, number):
        from autopeft.evaluation.base import NullReporter
        from autopeft.records import EvalRequest

        t0 = clock()
        m = side.ev.evaluate(EvalRequest("bench", number, c, side.exp, seed=seed),
                             NullReporter())
        return m, since(t0)[0]

    trainloop.TrainLoop.score = score
    rows, rung_rows = {}, {}
    try:
        for i, (name, c) in enumerate(tau_candidates(args.tau_candidates,
                                                     args.tau_seed).items()):
            torch.set_num_threads(threads)
            row = {}
            order = [("fast", fast, 0), ("today", today, 0), ("today2", today, 1)]
            for label, side, seed in order[i % 3:] + order[:i % 3]:
                probe.clear()
                m, t = run(side, c, seed, i)
                row[label], row[label + "_s"] = m.metric, t
                if label == "fast":
                    row["L"] = m.extra.get("frozen_below", 0)
                if label == "today":
                    rung_rows[name] = list(probe)
            rows[name] = row
            print(f"  tau {name:64s} L={row['L']}  fast {row['fast']:.4f} ({row['fast_s']:.0f}s)"
                  f"  today {row['today']:.4f} ({row['today_s']:.0f}s)  today' "
                  f"{row['today2']:.4f}", flush=True)
    finally:
        trainloop.TrainLoop.score = real_score
    names = list(rows)
    col = {k: [rows[n][k] for n in names] for k in ("fast", "today", "today2")}
    tau = kendall_tau(col["fast"], col["today"])
    control = kendall_tau(col["today2"], col["today"])
    print(f"tau fast vs today over {len(names)} candidates: {tau:.3f} (control: today with "
          f"another seed vs today {control:.3f}); mean |acc diff| fast-today "
          f"{statistics.mean(abs(a - b) for a, b in zip(col['fast'], col['today'])):.4f}, "
          f"today'-today "
          f"{statistics.mean(abs(a - b) for a, b in zip(col['today2'], col['today'])):.4f}")
    cached = [n for n in names if rows[n]["L"]]
    if cached:
        diffs = [rows[n]["fast"] - rows[n]["today"] for n in cached]
        print(f"cached candidates (no dropout below L): {len(cached)}, accuracy fast-today "
              f"mean {statistics.mean(diffs):+.4f} [{min(diffs):+.4f}..{max(diffs):+.4f}]")
    cost = statistics.mean(rows[n]["today_s"] for n in names) / statistics.mean(
        rows[n]["fast_s"] for n in names)
    print(f"mean CPU per trial over these candidates: today/fast {cost:.2f}x")
    n_rungs = min(len(v) for v in rung_rows.values())
    for r in range(n_rungs):
        sub = [rung_rows[n][r][0] for n in names]
        full = [rung_rows[n][r][1] for n in names]
        print(f"rung {r + 1}: tau(subset of {len(rung)} vs all {len(val)}) = "
              f"{kendall_tau(sub, full):.3f}")
    return tau


def sized(cfg, args, long: bool):
    """The case's experiment: the default proxy's sizes unless given smaller."""
    p, d = cfg.proxy, cfg.data
    if long:
        from longtext import build_csv

        src = build_csv(Path(args.out))
        d = dataclasses.replace(d, source=str(src))
    steps = args.long_steps if long else args.steps
    p = dataclasses.replace(p, max_steps=steps, eval_every=max(1, steps // 3),
                            train_examples=args.long_train if long else args.train,
                            validation_examples=args.long_val if long else args.val,
                            max_length=128 if long else p.max_length)
    return dataclasses.replace(cfg, data=d, proxy=p)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--experiment", default="default")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--long-repeats", type=int, default=2)
    ap.add_argument("--steps", type=int, default=150, help="TREC steps")
    ap.add_argument("--long-steps", type=int, default=60, help="long-text steps")
    ap.add_argument("--train", type=int, default=2000, help="TREC train examples")
    ap.add_argument("--val", type=int, default=500, help="TREC validation examples")
    ap.add_argument("--long-train", type=int, default=2000)
    ap.add_argument("--long-val", type=int, default=500)
    ap.add_argument("--rung", type=int, default=200, help="rung subset size (fast side)")
    ap.add_argument("--naive", action="store_true", help="add the old padded baseline")
    ap.add_argument("--search-trials", type=int, default=20, help="trials a search spreads "
                    "each side's once-per-worker costs (set-up, cache builds) over")
    ap.add_argument("--tau-candidates", type=int, default=12)
    ap.add_argument("--tau-seed", type=int, default=0, help="seed of the candidate sample")
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
          f"{threads} thread, {args.repeats} repeats, rung subset {args.rung}, clock: "
          f"process CPU seconds", flush=True)
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
        r = run_case("trec default", sides, {n: (DEFAULT, None) for n in sides},
                     args.repeats, torch, threads, args.search_trials)
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
        r = run_case("long top-half", sides, {n: (TOP_HALF, None) for n in sides},
                     args.long_repeats, torch, threads, args.search_trials)
        top = r["today"][0] / r["fast"][0]
        print(f"long top-half: fast vs today {top:.2f}x (accuracy {r['fast'][3]:.4f} vs "
              f"{r['today'][3]:.4f}); cache {sides['fast'].ev._activations.nbytes / 2**20:.1f}"
              f" MB", flush=True)
        d = run_case("long default", sides, {n: (DEFAULT, None) for n in sides},
                     args.long_repeats, torch, threads, args.search_trials)
        print(f"long default: fast vs today {d['today'][0] / d['fast'][0]:.2f}x", flush=True)
        ft = run_case("long full-ft", {"today": sides["today"]},
                      {"today": (FULL_FT, 5e-5)}, 1, torch, threads, args.search_trials)
        print(f"long: full fine-tuning (today's path) vs top-half LoRA (fast) "
              f"{ft['today'][0] / r['fast'][0]:.2f}x, i.e. "
              f"{100 * (1 - r['fast'][0] / ft['today'][0]):.0f} % less CPU per trial "
              f"(the Embedding Recycling comparison)", flush=True)
    if "tau" not in skip:
        c = sized(cfg, args, long=False)
        print(f"[tau] {args.tau_candidates} candidates sampled from default.yaml (seed "
              f"{args.tau_seed}), {c.proxy.max_steps} steps", flush=True)
        tau = tau_section(c, args, torch, threads)
    print(f"fair_speedup={fair:.2f} top_half_long_speedup={top:.2f} "
          f"tau_fast_vs_plain={tau:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
