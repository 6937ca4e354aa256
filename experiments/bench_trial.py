"""Benchmark: one proxy trial with autopeft's evaluator vs. the same trial written by hand.

Both sides train the same candidate (LoRA r=8 on query and value in every layer, alpha 16)
on the same examples (the experiment's stratified proxy train subset), for the same number
of steps, with the same batch size, learning rate, warmup and linear decay, and score the
same validation subset at the same steps, at the same precision (the experiment's
proxy.bf16); each reports its best validation accuracy.

  (a) ours: ProxyEvaluator.  Its once-per-worker set-up (read data, load the model,
      tokenise or read the token cache) is paid once and shared by the N trials, so the
      per-trial time is (set-up + sum of the N trial times) / N.
  (b) baseline, what a user writes by hand per trial: read the data, load the tokenizer and
      the model from disk, wrap it with peft, tokenise with padding="max_length" (as the
      Hugging Face tutorials do) through datasets.map, and run a fresh transformers.Trainer.
      Its per-trial time is the mean of its N trial times.

Trials alternate (ours, baseline, ours, ...) so both see the same machine load.

    .venv/bin/python experiments/bench_trial.py [--experiment default] [--trials 3]

The last line is `speedup=<x> acc_ours=<a> acc_baseline=<b>` (mean accuracies over trials).
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time

CANDIDATE = {"modules": [{"type": "lora", "layers": [0, 1, 2, 3, 4, 5], "targets": ["q", "v"],
                          "rank": 8, "alpha": 16.0, "dropout": 0.0}],
             "hyper": {}, "num_layers": 6}


def baseline_trial(cfg, seed: int) -> tuple[float, float]:
    """What a user writes for one trial; returns (seconds, best validation accuracy)."""
    t0 = time.perf_counter()
    import numpy as np
    import transformers
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model

    from autopeft import metrics, taskdata
    from autopeft.models import minilm_path

    raw = taskdata.load_examples(cfg.data, file=cfg.source)
    splits = taskdata.make_splits(raw.labels, cfg.data)
    p = cfg.proxy
    train_idx = taskdata.stratified_subset(raw.labels, splits["train"],
                                           p.train_examples or 10**12, seed=cfg.data.split_seed)
    val_idx = taskdata.stratified_subset(raw.labels, splits["validation"],
                                         p.validation_examples or 10**12,
                                         seed=cfg.data.split_seed + 1)
    path = str(minilm_path())
    tok = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=raw.num_labels)
    model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16,
                                             lora_dropout=0.0,
                                             target_modules=["query", "value"]))

    def as_ds(idx):
        ds = Dataset.from_dict({"text": [raw.texts[i] for i in idx],
                                "label": [int(raw.labels[i]) for i in idx]})
        return ds.map(lambda b: tok(b["text"], truncation=True, padding="max_length",
                                    max_length=p.max_length), batched=True)

    train_ds, val_ds = as_ds(train_idx), as_ds(val_idx)
    o = cfg.optimizer

    def compute_metrics(pred):
        return {"accuracy": metrics.accuracy(pred.label_ids, np.argmax(pred.predictions, -1))}

    with tempfile.TemporaryDirectory() as out:
        args = transformers.TrainingArguments(
            output_dir=out, max_steps=p.max_steps, per_device_train_batch_size=o.batch_size,
            per_device_eval_batch_size=p.eval_batch_size, learning_rate=o.learning_rate,
            weight_decay=o.weight_decay, warmup_ratio=o.warmup_ratio,
            max_grad_norm=o.max_grad_norm, lr_scheduler_type="linear",
            eval_strategy="steps", eval_steps=p.eval_every, save_strategy="no",
            logging_strategy="no", report_to=[], seed=seed, use_cpu=True,
            disable_tqdm=True, dataloader_num_workers=0, bf16=p.bf16)
        trainer = transformers.Trainer(model=model, args=args, train_dataset=train_ds,
                                       eval_dataset=val_ds, compute_metrics=compute_metrics)
        trainer.train()
        accs = [h["eval_accuracy"] for h in trainer.state.log_history if "eval_accuracy" in h]
        if p.max_steps % p.eval_every:
            accs.append(trainer.evaluate()["eval_accuracy"])
    return time.perf_counter() - t0, max(accs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--experiment", default="default")
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads for both sides (default: the experiment's cpus)")
    args = ap.parse_args(argv)

    import torch

    from autopeft.config import load_experiment
    from autopeft.evaluation.base import NullReporter
    from autopeft.evaluation.proxy import ProxyEvaluator
    from autopeft.records import EvalRequest

    cfg = load_experiment(args.experiment)
    if cfg.proxy.max_steps is None:
        print("this benchmark needs proxy.max_steps (steps, not epochs)", file=sys.stderr)
        return 2
    threads = args.threads or cfg.resources.cpus
    cfg = dataclasses.replace(cfg, resources=dataclasses.replace(cfg.resources, cpus=threads))
    torch.set_num_threads(threads)
    exp = cfg.to_dict()
    print(f"experiment {cfg.source}: {cfg.data.source}, {cfg.proxy.train_examples} train / "
          f"{cfg.proxy.validation_examples} validation examples, {cfg.proxy.max_steps} steps "
          f"x batch {cfg.optimizer.batch_size}, max_length {cfg.proxy.max_length}, "
          f"lr {cfg.optimizer.learning_rate:g}, {threads} thread(s), {args.trials} trials",
          flush=True)

    ev = ProxyEvaluator(exp)
    t0 = time.perf_counter()
    ev.setup()
    ev._encoded(ev.setup(), cfg.proxy.max_length)  # tokenise (or read the cache) up front
    setup_s = time.perf_counter() - t0
    print(f"ours: once-per-worker set-up {setup_s:.1f}s", flush=True)
    ours_t, ours_a, base_t, base_a = [], [], [], []
    for i in range(args.trials):
        t = time.perf_counter()
        m = ev.evaluate(EvalRequest("bench", i, CANDIDATE, exp, seed=i), NullReporter())
        ours_t.append(time.perf_counter() - t)
        ours_a.append(m.metric)
        print(f"ours     trial {i}: {ours_t[-1]:6.1f}s  accuracy {m.metric:.4f}  "
              f"(train {m.train_seconds:.1f}s, eval {m.eval_seconds:.1f}s)", flush=True)
        s, a = baseline_trial(cfg, seed=i)
        torch.set_num_threads(threads)
        base_t.append(s)
        base_a.append(a)
        print(f"baseline trial {i}: {s:6.1f}s  accuracy {a:.4f}", flush=True)
    ours_per_trial = (setup_s + sum(ours_t)) / args.trials
    base_per_trial = statistics.mean(base_t)
    print(f"ours:     {ours_per_trial:.1f}s per trial (set-up {setup_s:.1f}s shared by "
          f"{args.trials} trials + mean trial {statistics.mean(ours_t):.1f}s)")
    print(f"baseline: {base_per_trial:.1f}s per trial")
    print(f"speedup={base_per_trial / ours_per_trial:.2f} "
          f"acc_ours={statistics.mean(ours_a):.4f} acc_baseline={statistics.mean(base_a):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
