"""ExperimentConfig: strict loading with located errors, defaults, round trip."""
import textwrap
from pathlib import Path

import pytest

from autopeft.config import ExperimentConfig, load_experiment
from autopeft.exceptions import ExperimentError

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path, text, name="exp.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_shipped_experiments_load_and_round_trip():
    files = sorted((REPO / "experiments").glob("*.yaml"))
    assert any(f.name == "default.yaml" for f in files)
    for f in files:
        cfg = load_experiment(f)
        again = ExperimentConfig.from_dict(cfg.to_dict())
        assert again == cfg
        assert again.to_dict() == cfg.to_dict()


def test_default_is_found_by_name():
    cfg = load_experiment("default")
    assert cfg.data.source == "builtin:trec6"
    assert cfg.model == "minilm"
    assert cfg.source and cfg.source.endswith("default.yaml")


def test_empty_file_gives_all_defaults(tmp_path):
    cfg = load_experiment(write(tmp_path, ""))
    assert cfg.metric == "accuracy"
    assert cfg.proxy.max_steps is not None and cfg.proxy.epochs is None
    assert cfg.full.train_examples is None and cfg.full.epochs is not None
    assert cfg.training is cfg.proxy
    assert cfg.for_final().training is cfg.full


@pytest.mark.parametrize("text, path, words", [
    ("modle: minilm\n", "modle", "unknown key"),
    ("proxy:\n  max_step: 10\n", "proxy.max_step", "unknown key"),
    ("proxy:\n  max_length: 2\n", "proxy.max_length", "out of range"),
    ("proxy:\n  train_examples: many\n", "proxy.train_examples", "integer"),
    ("optimizer:\n  learning_rate: 1e-3\n", "optimizer.learning_rate", "1.0e-3"),
    ("optimizer:\n  learning_rate: 0\n", "optimizer.learning_rate", "out of range"),
    ("optimizer:\n  warmup_ratio: 0.9\n", "optimizer.warmup_ratio", "out of range"),
    ("metric: auc\n", "metric", "macro_f1"),
    ("reward:\n  lambda: -1.0\n", "reward.lambda", "out of range"),
    ("constraints:\n  max_params_ratio: yes\n", "constraints.max_params_ratio", "number"),
    ("trust_remote_code: 1\n", "trust_remote_code", "true or false"),
    ("data:\n  text: [a, b, c]\n", "data.text", "two"),
    ("data:\n  source: builtin:imdb\n", "data.source", "builtin:trec6"),
    ("data:\n  validation: 1.5\n", "data.validation", "fraction"),
    ("data:\n  validation: 0.5\n  test: 0.45\n", "data", "too little"),
    ("proxy:\n  max_steps: 10\n  epochs: 2.0\n", "proxy", "exactly one"),
    ("proxy: 3\n", "proxy", "mapping"),
    ("evaluator: nocolon\n", "evaluator", "no longer an experiment setting"),
    ("fake:\n  sleep: 1\n", "fake", "no longer an experiment setting"),
    ("resources:\n  cpus: 0\n", "resources.cpus", "out of range"),
])
def test_bad_values_name_file_path_and_fix(tmp_path, text, path, words):
    f = write(tmp_path, text)
    with pytest.raises(ExperimentError) as exc:
        load_experiment(f)
    msg = str(exc.value)
    assert str(f) in msg
    assert f"at {path}:" in msg
    assert words in msg
    assert "fix:" in msg
    assert exc.value.path == path


def test_yaml_syntax_error_names_the_file(tmp_path):
    f = write(tmp_path, "proxy: [unclosed\n")
    with pytest.raises(ExperimentError, match="invalid YAML"):
        load_experiment(f)


def test_missing_file_and_unknown_name():
    with pytest.raises(ExperimentError, match="no_such_experiment_name"):
        load_experiment("no_such_experiment_name")
    with pytest.raises(ExperimentError, match="x.yaml"):
        load_experiment("/nonexistent/dir/x.yaml")


def test_one_step_budget_clears_the_other(tmp_path):
    cfg = load_experiment(write(tmp_path, "proxy:\n  epochs: 2\nfull:\n  max_steps: 500\n"))
    assert (cfg.proxy.epochs, cfg.proxy.max_steps) == (2.0, None)
    assert (cfg.full.epochs, cfg.full.max_steps) == (None, 500)


def test_relative_data_files_resolve_against_the_experiment_folder(tmp_path):
    sub = tmp_path / "exp"
    sub.mkdir()
    cfg = load_experiment(write(sub, "data:\n  source: ../data/train.csv\n"))
    assert Path(cfg.data.source) == (sub / "../data/train.csv").resolve() or \
        Path(cfg.data.source).resolve() == (tmp_path / "data" / "train.csv").resolve()
    hub = load_experiment(write(sub, "data:\n  source: glue\n  hf_config: sst2\n", "h.yaml"))
    assert hub.data.source == "glue"


def test_pair_text_columns_and_counts(tmp_path):
    cfg = load_experiment(write(tmp_path, """\
        data:
          source: pairs.jsonl
          text: [premise, hypothesis]
          validation: 200
          test: 0.2
        reward: {lambda: 0.5, w_params: 2.0, w_flops: 1.0}
        constraints: {max_latency_ratio: 0.15, max_flops_ratio: 0.1}
        """))
    assert cfg.data.text == ["premise", "hypothesis"]
    assert cfg.data.validation == 200
    assert cfg.reward.lam == 0.5
    assert cfg.to_dict()["reward"]["lambda"] == 0.5
    assert cfg.constraints.max_latency_ratio == 0.15
    assert ExperimentConfig.from_dict(cfg.to_dict()) == cfg


def test_an_experiment_file_cannot_name_code_to_import(tmp_path):
    """`evaluator: module:factory` imported whatever module the file named; refused now,
    before the module is imported (a module with a side effect shows it)."""
    marker = tmp_path / "imported"
    (tmp_path / "evil_hook.py").write_text(
        f"open({str(marker)!r}, 'w').close()\ndef make(experiment):\n    return None\n")
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(ExperimentError, match="does not import code") as err:
            load_experiment(write(tmp_path, "evaluator: evil_hook:make\n"))
        assert "evaluator_factory" in str(err.value)
    finally:
        sys.path.remove(str(tmp_path))
    assert not marker.exists() and "evil_hook" not in sys.modules


def test_older_studies_stored_the_removed_keys_as_null():
    cfg = ExperimentConfig.from_dict({"model": "minilm", "evaluator": None, "fake": None})
    assert "evaluator" not in cfg.to_dict() and "fake" not in cfg.to_dict()


def test_importing_config_stays_light():
    import subprocess
    import sys

    code = ("import sys, autopeft.config; "
            "bad = [m for m in ('torch', 'transformers', 'peft', 'datasets', 'pandas') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_key_is_documented():
    doc = (REPO / "docs" / "EXPERIMENT.md").read_text()
    d = ExperimentConfig().to_dict()
    keys = [k for k, v in d.items() if not isinstance(v, dict) and k != "source"]
    keys += [f"{k}.{sub}" for k, v in d.items() if isinstance(v, dict) for sub in v]
    missing = [k for k in keys if f"`{k}`" not in doc]
    assert not missing, f"docs/EXPERIMENT.md does not document {missing}"
