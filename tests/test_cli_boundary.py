"""The command line's boundary: numbers, names, exit codes, messages, read-only commands.

Each case here was a defect: a bad number that ran silently or as a traceback, a study
name that wrote outside --runs-dir, usage errors sharing exit 2 with "unknown study",
read-only commands that created autopeft.db, a BrokenPipeError traceback under `head`.
"""
from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from autopeft.cli import main as cli_main
from autopeft.cli.args import USAGE_EXIT_CODE
from autopeft.exceptions import AutoPeftError, StorageError
from autopeft.testing.study_fakes import analytic

REPO = Path(__file__).resolve().parents[1]


def main(argv):
    return cli_main(argv, evaluator_factory=analytic)


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AUTOPEFT_FAKE", "{}")
    (tmp_path / "fake.yaml").write_text("name: fake\nmodel: minilm\n")
    return tmp_path


def _study(here: Path, name: str = "s", trials: int = 2) -> None:
    assert main(["search", "--space", "lora_only.yaml", "--experiment", "fake.yaml",
                 "--trials", str(trials), "--study", name, "--quiet"]) == 0


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# -- numbers ---------------------------------------------------------------------------------
SEARCH = ["search", "--space", "default.yaml", "--experiment", "fake.yaml"]


@pytest.mark.parametrize("argv, flag", [
    (SEARCH + ["--workers", "0"], "--workers"),
    (SEARCH + ["--workers", "-3"], "--workers"),
    (SEARCH + ["--seed", "-5"], "--seed"),
    (SEARCH + ["--seed", "4294967296"], "--seed"),
    (SEARCH + ["--trials", "0"], "--trials"),
    (SEARCH + ["--trials", "two"], "--trials"),
    (SEARCH + ["--max-retries", "-1"], "--max-retries"),
    (["resume", "s", "--trials", "0"], "--trials"),
    (["export", "s", "--out", "o", "--lambda", "-1"], "--lambda"),
    (["export", "s", "--out", "o", "--lambda", "inf"], "--lambda"),
    (["export", "s", "--out", "o", "--top-k", "0"], "--top-k"),
    (["export", "s", "--out", "o", "--max-params", "-0.5"], "--max-params"),
    (["export", "s", "--out", "o", "--max-params", "0"], "--max-params"),
    (["export", "s", "--out", "o", "--max-params", "nan"], "--max-params"),
    (["finalize", "s", "--top-k", "0"], "--top-k"),
    (["train", "x", "--out", "o", "--seed", "-1"], "--seed"),
    (["show", "s", "--top", "0"], "--top"),
    (["space", "check", "default.yaml", "--num-layers", "0"], "--num-layers"),
    (["space", "check", "default.yaml", "--hidden-size", "-8"], "--hidden-size"),
    (["space", "check", "default.yaml", "--samples", "-1"], "--samples"),
])
def test_bad_numbers_are_usage_errors_naming_the_flag(here, argv, flag, capsys):
    before = _files(here)
    assert main(argv) == USAGE_EXIT_CODE
    err = capsys.readouterr().err
    assert f"argument {flag}: must be" in err and "Traceback" not in err
    assert _files(here) == before  # nothing written, no database


def test_resume_cannot_lower_the_budget_below_what_is_finished(here, capsys):
    _study(here, trials=2)
    capsys.readouterr()
    assert main(["resume", "s", "--trials", "1", "--quiet"]) == USAGE_EXIT_CODE
    err = capsys.readouterr().err
    assert "--trials 1 is below the 2 trial(s)" in err and "N >= 2" in err
    assert main(["ls"]) == 0
    assert "2/2" in capsys.readouterr().out  # the budget was not changed


# -- exit codes ------------------------------------------------------------------------------
def test_usage_errors_have_their_own_exit_code(here, capsys):
    codes = {cls.exit_code for cls in _error_classes()}
    assert USAGE_EXIT_CODE not in codes - {USAGE_EXIT_CODE} and USAGE_EXIT_CODE != 2
    assert main(["show", "nope"]) == 2  # unknown study
    assert main(["search", "--space", "default.yaml", "--no-such-flag"]) == USAGE_EXIT_CODE
    assert main(["search"]) == USAGE_EXIT_CODE  # --space missing
    assert main([]) == USAGE_EXIT_CODE and main(["space"]) == USAGE_EXIT_CODE
    assert main(["--version"]) == 0
    capsys.readouterr()


def _error_classes() -> list[type]:
    seen, todo = [], [AutoPeftError]
    while todo:
        cls = todo.pop()
        seen.append(cls)
        todo.extend(cls.__subclasses__())
    return seen


def test_the_readme_exit_code_table_lists_every_code_the_program_uses():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    table = text[text.index("Exit codes"):]
    documented = {int(m) for m in re.findall(r"^\| (\d+) \|", table, flags=re.M)}
    used = {0, 130, 141} | {cls.exit_code for cls in _error_classes()}
    assert documented == used


@pytest.mark.parametrize("argv, code, words", [
    (["show", "nope"], 2, "no database at"),
    (["ls", "--storage", "foo://u:pw@h/db"], 4, "u:***@h"),
    (["search", "--space", "default.yaml", "--experiment", "bad.yaml"], 3, "bad.yaml"),
    (["space", "check", "badspace.yaml"], 1, "badspace.yaml"),
    (["search", "--space", "default.yaml", "--experiment", "fake.yaml", "--controller",
      "nope"], 1, "tpe_asha"),
    (["export", "s", "--out", "fake.yaml"], 8, "is an existing file, not a directory"),
    (["search", "--space", "default.yaml", "--workers", "0"], 64, "--workers"),
])
def test_each_exit_code_row_of_the_readme(here, argv, code, words, capsys):
    (here / "bad.yaml").write_text("model: minilm\nproxy: {max_steps: -3}\n")
    (here / "badspace.yaml").write_text("space: x\nmodules: 3\n")
    assert main(argv) == code
    assert words in capsys.readouterr().err


# -- messages --------------------------------------------------------------------------------
def test_unknown_controller_lists_every_shipped_preset(here, capsys):
    from autopeft.resources import shipped

    assert main(SEARCH + ["--controller", "nope"]) == 1
    err = capsys.readouterr().err
    for f in shipped("controllers"):
        assert repr(Path(f).stem) in err


def test_out_naming_a_file_is_not_called_a_directory(here, capsys):
    _study(here)
    capsys.readouterr()
    assert main(["export", "s", "--out", "fake.yaml"]) == 8
    err = capsys.readouterr().err
    assert "fake.yaml is an existing file, not a directory" in err
    (here / "full").mkdir()
    (here / "full" / "x").write_text("")
    assert main(["export", "s", "--out", "full"]) == 8
    assert "exists and is not empty" in capsys.readouterr().err


def test_output_into_a_closed_pipe_stops_quietly(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        f"{sys.executable} -m autopeft space check default.yaml --samples 5000 | head -n 1",
        shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
        executable="/bin/bash")
    assert proc.stdout.startswith("space default: valid")
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
    status = subprocess.run(
        f"{sys.executable} -m autopeft space check default.yaml --samples 5000 | head -n 1"
        f" >/dev/null; echo ${{PIPESTATUS[0]}}", shell=True, cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=120, executable="/bin/bash")
    assert status.stdout.strip() == "141"


# -- read-only commands ----------------------------------------------------------------------
@pytest.mark.parametrize("argv, code", [
    (["ls"], 0), (["ls", "--json"], 0), (["show", "x"], 2), (["show", "x", "--json"], 2),
    (["export", "x", "--out", "o"], 2), (["report", "x", "--out", "o"], 2),
    (["resume", "x"], 2), (["finalize", "x"], 2),
])
def test_read_only_commands_create_no_database(here, argv, code, capsys):
    assert main(argv) == code
    out = capsys.readouterr()
    assert "no database at" in out.out + out.err or argv == ["ls", "--json"]
    assert not (here / "autopeft.db").exists()
    assert _files(here) == ["fake.yaml"]


def test_read_only_commands_create_no_schema_in_an_empty_database(here, capsys):
    db = here / "other.db"
    sqlite3.connect(db).close()  # an empty SQLite file: not an autopeft database
    url = f"sqlite:///{db}"
    assert main(["show", "x", "--storage", url]) == 2
    assert "holds no autopeft studies" in capsys.readouterr().err
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == []


# -- study names -----------------------------------------------------------------------------
BAD_NAMES = ["..", "../x", "/abs", "/tmp/abs", "a/b", "a\\b", ".hidden", "-x", "a b",
             "a\x00b", "x" * 129, "", "ü" * 3]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_unsafe_study_names_are_refused_before_anything_is_written(here, name, capsys):
    assert main(SEARCH + ["--study", name, "--runs-dir", "runs"]) == USAGE_EXIT_CODE
    assert "argument --study" in capsys.readouterr().err
    assert _files(here) == ["fake.yaml"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_storage_refuses_unsafe_names_too(tmp_path, name):
    from autopeft.storage import open_storage

    with open_storage(f"sqlite:///{tmp_path / 'db.sqlite'}") as storage:
        with pytest.raises(StorageError, match="study name"):
            storage.create_study(name=name, space_text="x", space_fingerprint="f",
                                 experiment={"model": "minilm"}, controller="random",
                                 seed=0, n_trials=1)
        assert storage.list_studies() == []


def test_good_names_stay_inside_the_runs_dir(tmp_path):
    from autopeft.names import study_dir

    for name in ("s", "lora_only-20261201-120000", "a..b", "_x", "x" * 128):
        assert study_dir(tmp_path, name) == (tmp_path / name).resolve()


def test_a_stored_name_that_escapes_is_refused_on_resume(here, capsys):
    """A row written by an older autopeft or by hand: checkpoints never leave --runs-dir."""
    _study(here, "s", trials=1)
    with sqlite3.connect(here / "autopeft.db") as conn:
        conn.execute("UPDATE autopeft_studies SET name = '../escaped' WHERE name = 's'")
    capsys.readouterr()
    assert main(["resume", "../escaped", "--trials", "2", "--quiet"]) == 1
    assert "cannot be used" in capsys.readouterr().err
    assert not (here / "escaped").exists() and not (here.parent / "escaped").exists()


# -- code named by a file or a database row --------------------------------------------------
def test_a_stored_evaluator_reference_is_never_imported(here, capsys):
    """A study row in a shared database naming `evaluator: module:factory`: resuming it
    must not import that module (the marker file proves it was not)."""
    from autopeft.space import load_space
    from autopeft.storage import open_storage

    marker = here / "imported"
    (here / "evil_hook.py").write_text(f"open({str(marker)!r}, 'w').close()\n"
                                       f"def make(experiment):\n    return None\n")
    sys.path.insert(0, str(here))
    try:
        space = load_space("lora_only.yaml")
        with open_storage(None) as storage:
            storage.create_study(
                name="shared", space_text=Path(space.source).read_text(encoding="utf-8"),
                space_fingerprint=space.fingerprint, space_source=str(space.source),
                experiment={"model": "minilm", "evaluator": "evil_hook:make"},
                controller="random", seed=0, n_trials=1)
        rc = cli_main(["resume", "shared", "--quiet"])  # no factory: the real CLI
    finally:
        sys.path.remove(str(here))
    assert rc == 3  # the stored experiment is invalid
    assert "does not import code" in capsys.readouterr().err
    assert not marker.exists() and "evil_hook" not in sys.modules
    with open_storage(None) as storage:  # refused before the loop: nothing changed
        assert storage.get_trials("shared") == []
        assert storage.get_study("shared").status == "created"


def test_make_evaluator_refuses_a_named_evaluator_without_importing_it():
    from autopeft.evaluation.base import make_evaluator
    from autopeft.exceptions import FatalError

    with pytest.raises(FatalError, match="does not import code"):
        make_evaluator({"model": "minilm", "evaluator": "os:getcwd"})
    made = make_evaluator({"model": "minilm"}, analytic)  # injected from Python
    assert type(made).__name__ == "AnalyticEvaluator"
