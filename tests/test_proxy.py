"""ProxyEvaluator: the lean training loop, its failure mapping, set-up once per worker.

Fast tests train a 4-layer random GPT-2 (autopeft.models "tiny-gpt2") for a few steps on a
small local CSV; the `slow` test trains LoRA on the real MiniLM and TREC-6.
"""
import dataclasses
import math
import random

import pytest

torch = pytest.importorskip("torch")

from autopeft import models, taskdata  # noqa: E402
from autopeft.evaluation.base import NullReporter, Reporter, make_evaluator  # noqa: E402
from autopeft.evaluation.proxy import ProxyEvaluator  # noqa: E402
from autopeft.evaluation.trainloop import TrainLoop  # noqa: E402
from autopeft.exceptions import FatalError, TrialFailedError  # noqa: E402
from autopeft.records import EvalRequest  # noqa: E402

LORA = {"modules": [{"type": "lora", "layers": [0, 1, 2, 3], "targets": ["q", "v"],
                     "rank": 4}], "hyper": {}, "num_layers": 4}
HEAD_ONLY = {"modules": [], "hyper": {}, "num_layers": 4}


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    d = tmp_path_factory.mktemp("proxy")
    rng = random.Random(0)
    words = {0: ["awful", "bad", "poor", "dull"], 1: ["great", "good", "fine", "superb"]}
    lines = ["text,label"]
    for i in range(160):
        y = i % 2
        lines.append(f"the film was {rng.choice(words[y])} and {rng.choice(words[y])},{y}")
    (d / "toy.csv").write_text("\n".join(lines) + "\n")
    from autopeft.config import ExperimentConfig

    cfg = ExperimentConfig.from_dict({
        "model": "tiny-gpt2",
        "data": {"source": str(d / "toy.csv"), "validation": 32, "test": 32},
        "proxy": {"train_examples": 64, "max_steps": 6, "eval_every": 2, "max_length": 16,
                  "validation_examples": 32, "eval_batch_size": 32},
        "full": {"train_examples": None, "epochs": 1, "eval_every": 4, "max_length": 16},
        "optimizer": {"learning_rate": 5.0e-3, "batch_size": 8, "warmup_ratio": 0.2},
        # one thread: tiny matrices gain nothing from two, and on a loaded machine two
        # threads wait on each other (measured 40x slower per op under load)
        "resources": {"cpus": 1},
    })
    return cfg.to_dict()


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOPEFT_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def evaluator(experiment):
    return ProxyEvaluator(experiment)


def request(experiment, candidate=LORA, seed=1, number=0, **kw):
    return EvalRequest(study="t", trial_number=number, candidate=candidate,
                       experiment=experiment, seed=seed, **kw)


class Recorder(Reporter):
    def __init__(self, stop_at=None):
        self.calls, self.stop_at = [], stop_at

    def report(self, trial_number, step, value):
        self.calls.append((trial_number, step, value))
        return self.stop_at is None or step < self.stop_at


def test_make_evaluator_gives_the_proxy_trainer(experiment):
    assert isinstance(make_evaluator(experiment), ProxyEvaluator)


def test_trial_reports_and_returns_metrics(evaluator, experiment):
    rec = Recorder()
    m = evaluator.evaluate(request(experiment), rec)
    assert [c[1] for c in rec.calls] == [2, 4, 6]
    assert m.intermediate == tuple((s, v) for _, s, v in rec.calls)
    assert m.metric == max(v for _, _, v in rec.calls)     # the best validation score
    assert m.metric_name == "accuracy" and 0.0 <= m.metric <= 1.0
    assert m.steps == 6 and not m.pruned and m.test_metric is None
    assert m.train_loss is not None and math.isfinite(m.train_loss)
    assert m.cost.trainable_params > 0 and 0 < m.cost.params_ratio < 1
    assert m.extra["n_train"] == 64 and m.extra["n_validation"] == 32


def test_same_seed_same_metrics_and_the_callers_rng_is_untouched(evaluator, experiment):
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = evaluator.evaluate(request(experiment, seed=5), NullReporter())
    assert torch.equal(torch.get_rng_state(), state)
    b = evaluator.evaluate(request(experiment, seed=5), NullReporter())
    c = evaluator.evaluate(request(experiment, seed=6), NullReporter())
    assert (a.metric, a.intermediate, a.train_loss) == (b.metric, b.intermediate, b.train_loss)
    assert a.train_loss != c.train_loss


def test_setup_and_tokenisation_happen_once_per_worker(experiment, monkeypatch):
    counts = {"load_examples": 0, "load_base": 0, "tokenise": 0}

    def counted(name, fn):
        def wrapper(*a, **k):
            counts[name] += 1
            return fn(*a, **k)
        return wrapper

    monkeypatch.setattr(taskdata, "load_examples", counted("load_examples", taskdata.load_examples))
    monkeypatch.setattr(models, "load_base", counted("load_base", models.load_base))
    monkeypatch.setattr(taskdata, "_tokenise", counted("tokenise", taskdata._tokenise))
    ev = ProxyEvaluator(experiment)
    ev.evaluate(request(experiment, number=0), NullReporter())
    ev.evaluate(request(experiment, candidate=HEAD_ONLY, number=1), NullReporter())
    assert counts == {"load_examples": 1, "load_base": 1, "tokenise": 1}
    assert ev.stats == {"setups": 1, "tokenisations": 1, "trials": 2}
    # a new worker finds the tokens in the on-disk cache: it reads, it does not tokenise
    ProxyEvaluator(experiment).evaluate(request(experiment), NullReporter())
    assert counts["tokenise"] == 1 and counts["load_base"] == 2


def test_trials_start_from_clean_base_weights(evaluator, experiment):
    first = evaluator.evaluate(request(experiment, candidate=HEAD_ONLY, seed=3), NullReporter())
    evaluator.evaluate(request(experiment, seed=4), NullReporter())  # trains something else
    again = evaluator.evaluate(request(experiment, candidate=HEAD_ONLY, seed=3), NullReporter())
    assert first.intermediate == again.intermediate and first.train_loss == again.train_loss


def test_reporter_can_prune(evaluator, experiment):
    rec = Recorder(stop_at=4)
    m = evaluator.evaluate(request(experiment), rec)
    assert m.pruned and m.steps == 4
    assert m.metric == rec.calls[-1][2]


def test_early_stopping_with_patience(experiment):
    exp = dict(experiment, proxy=dict(experiment["proxy"], patience=1, max_steps=20),
               optimizer=dict(experiment["optimizer"], learning_rate=1.0e-7))
    m = ProxyEvaluator(exp).evaluate(request(exp), NullReporter())
    # nothing can improve at lr 1e-7: the second evaluation stops the trial
    assert m.steps == 4 and m.extra["early_stopped"] and not m.pruned


def test_candidate_learning_rate_overrides_the_default(evaluator, experiment):
    cand = dict(LORA, hyper={"learning_rate": 0.02, "batch_size": 4})
    m = evaluator.evaluate(request(experiment, candidate=cand), NullReporter())
    assert m.extra["learning_rate"] == 0.02 and m.extra["batch_size"] == 4


def test_non_finite_loss_fails_the_trial(evaluator, experiment, monkeypatch):
    real = TrainLoop._forward

    def poisoned(self, batch):
        out = real(self, batch)
        return out * float("nan") if self.step == 2 else out

    monkeypatch.setattr(TrainLoop, "_forward", poisoned)
    with pytest.raises(TrialFailedError, match="non-finite loss at step 3"):
        evaluator.evaluate(request(experiment), NullReporter())


def test_out_of_memory_fails_the_trial(evaluator, experiment, monkeypatch):
    def oom(self, batch):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(TrainLoop, "_forward", oom)
    with pytest.raises(TrialFailedError, match="out of memory at step 0"):
        evaluator.evaluate(request(experiment), NullReporter())


def test_unbuildable_candidate_fails_the_trial(evaluator, experiment):
    bad = {"modules": [{"type": "lora", "layers": [0, 9], "targets": ["q"], "rank": 4}],
           "hyper": {}, "num_layers": 4}
    with pytest.raises(TrialFailedError, match="cannot be built"):
        evaluator.evaluate(request(experiment, candidate=bad), NullReporter())


def test_broken_setup_is_fatal(experiment):
    exp = dict(experiment, data=dict(experiment["data"], source="/nonexistent/data.csv"))
    with pytest.raises(FatalError, match="data.source"):
        ProxyEvaluator(exp).evaluate(request(exp), NullReporter())


def test_checkpoint_then_warm_start(evaluator, experiment, tmp_path):
    ck = tmp_path / "ck"
    first = evaluator.evaluate(request(experiment, checkpoint_dir=str(ck)), NullReporter())
    assert first.checkpoint and any(ck.iterdir())
    # continue from the checkpoint with (almost) no learning: the score is the saved one
    frozen = dict(experiment, optimizer=dict(experiment["optimizer"], learning_rate=1.0e-7))
    warm = evaluator.evaluate(request(frozen, warm_start_path=first.checkpoint, start_step=6),
                              NullReporter())
    assert warm.intermediate[0][0] == 8           # steps continue from start_step
    assert warm.intermediate[0][1] == pytest.approx(first.metric)


def test_full_fidelity_reports_the_test_split(evaluator, experiment):
    from autopeft.config import ExperimentConfig

    final = ExperimentConfig.from_dict(experiment).for_final().to_dict()
    m = evaluator.evaluate(request(final), NullReporter())
    assert m.test_metric is not None and 0.0 <= m.test_metric <= 1.0
    assert m.extra["n_train"] == 160 - 64 and m.extra["fidelity"] == "full"
    assert m.steps == math.ceil(96 / 8)          # one epoch


@pytest.mark.slow
def test_lora_learns_trec6_on_the_real_minilm(tmp_path):
    from autopeft.config import load_experiment

    cfg = load_experiment("default")
    cfg = dataclasses.replace(cfg, proxy=dataclasses.replace(
        cfg.proxy, train_examples=1000, max_steps=60, eval_every=60, validation_examples=300),
        resources=dataclasses.replace(cfg.resources, cpus=1))
    ev = ProxyEvaluator(cfg.to_dict())
    cand = {"modules": [{"type": "lora", "layers": list(range(6)), "targets": ["q", "v"],
                         "rank": 8}], "hyper": {"learning_rate": 3.0e-3}, "num_layers": 6}
    m = ev.evaluate(request(cfg.to_dict(), candidate=cand), NullReporter())
    assert m.metric > 0.6          # 6 classes: chance is ~0.23 (the largest class)
    assert m.cost.params_ratio < 0.01


def test_scoring_sorts_by_length_but_returns_predictions_in_order(experiment):
    """Validation batches are length-sorted for speed; predictions must come back aligned."""
    from types import SimpleNamespace

    from autopeft.config import ExperimentConfig

    class LengthParity(torch.nn.Module):  # predicts (number of real tokens) % 2
        def forward(self, input_ids, attention_mask, **kw):
            n = attention_mask.sum(1)
            return SimpleNamespace(logits=torch.nn.functional.one_hot(n % 2, 2).float())

    lengths = torch.tensor([5, 2, 9, 3, 8, 4, 7, 6])
    ids = torch.ones(8, 10, dtype=torch.int32)
    enc = taskdata.Encoded(ids, lengths, None, lengths % 2, 0, "parity")
    cfg = ExperimentConfig.from_dict(dict(experiment, metric="accuracy"))
    cfg = dataclasses.replace(cfg, proxy=dataclasses.replace(cfg.proxy, eval_batch_size=3,
                                                             bf16=False))
    loop = TrainLoop(torch, LengthParity(), enc, torch.device("cpu"), cfg, cfg.proxy,
                 {"batch_size": 2}, use_token_types=False)
    value, preds = loop.score([6, 0, 3, 1])
    assert preds.tolist() == [1, 1, 1, 0] and value == 1.0
