"""The one strict YAML reader (autopeft.yamlio), for every kind of YAML autopeft reads.

One list of YAML kinds drives every malformed-input test: a rule that holds for space
files must hold for experiment files, controller presets and exported candidate files
too. Alias bombs and deep nesting run in a forked child with a memory and time limit
(tests/bounded.py), so that without the fix they fail instead of eating the machine.
"""
from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

from autopeft import yamlio
from autopeft.config import load_experiment
from autopeft.controllers.presets import load_preset
from autopeft.exceptions import ConfigError, ExperimentError, ExportError, SpaceError
from autopeft.export import CANDIDATE_FILE, load_exported
from autopeft.space import load_space
from bounded import run_bounded


@dataclass(frozen=True)
class Kind:
    name: str
    file: str                      # the file name it is read from
    load: Callable[[str], Any]     # path -> loaded object (raises the kind's error)
    error: type                    # the exception class of this kind
    valid: str                     # a small valid file
    duplicate: tuple[str, int, int, str]   # text, first line, second line, YAML path
    bomb_use: str                  # a valid file with `{bomb}` where a value goes
    schema: tuple[str, int, str]   # a file with a bad value: text, its line, its path


KINDS = [
    Kind("space", "s.yaml", load_space, SpaceError,
         "space: s\nmodules:\n  lora:\n    rank: [4, 8]\n",
         ("space: s\nmodules:\n  lora:\n    rank: [4, 8]\n    rank: [16]\n", 4, 5,
          "modules.lora.rank"),
         "space: s\nmodules:\n  lora:\n    rank: {bomb}\n",
         ("space: s\nmodules:\n  lora:\n    rank: [4, eight]\n", 4, "modules.lora.rank[1]")),
    Kind("experiment", "e.yaml", load_experiment, ExperimentError,
         "name: t\nseed: 1\n",
         ("name: t\nseed: 1\nmetric: accuracy\nseed: 7\n", 2, 4, "seed"),
         "name: {bomb}\nseed: 1\n",
         ("name: t\nproxy:\n  eval_every: 10\n  max_steps: many\n", 4, "proxy.max_steps")),
    Kind("preset", "p.yaml", load_preset, ConfigError,
         "controller: tpe\nsettings: {n_startup_trials: 3}\n",
         ("controller: tpe\nsettings: {}\ncontroller: random\n", 1, 3, "controller"),
         "controller: tpe\ndescription: {bomb}\n",
         ("controller: tpe\nsettings:\n  n_startup_trials: many\n", 3,
          "settings.n_startup_trials")),
    Kind("candidate", CANDIDATE_FILE, load_exported, ExportError,
         "format: autopeft-export/1\ncandidate:\n  modules:\n  - {type: lora, rank: 4}\n"
         "  num_layers: 6\nmodel: {ref: minilm}\n",
         ("format: autopeft-export/0\ncandidate: {modules: []}\nformat: autopeft-export/1\n",
          1, 3, "format"),
         "format: autopeft-export/1\ncandidate: {modules: []}\nprovenance: {note: {bomb}}\n",
         ("format: autopeft-export/1\nmodel: {ref: m}\ncandidate:\n  modules: [{rank: 4}]\n",
          3, "candidate")),
]
IDS = [k.name for k in KINDS]

# ten anchors, each a list of ten aliases of the previous one: 10^10 values expanded
ANCHORS = "".join(["junk:\n  a0: &a0 [4, 8]\n"] + [
    f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 10)])


def write(tmp_path: Path, kind: Kind, text: str | bytes) -> str:
    path = tmp_path / kind.file
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return str(path)


def refused(kind: Kind, path: str, seconds: float = 10.0, extra_mb: int = 768,
            trace: bool = True):
    """Load in a bounded child; the outcome must be the kind's own located error."""
    out = run_bounded(lambda: kind.load(path) and None, seconds=seconds, extra_mb=extra_mb,
                      trace=trace)
    assert out.kind == "error", (out.kind, out.error, out.message)
    assert out.error == kind.error.__name__, out.message
    assert "Traceback" not in out.message and "fix:" in out.message, out.message
    return out


@pytest.mark.parametrize("kind", KINDS, ids=IDS)
def test_the_valid_example_of_each_kind_loads(tmp_path, kind):
    assert kind.load(write(tmp_path, kind, kind.valid)) is not None


@pytest.mark.parametrize("kind", KINDS, ids=IDS)
def test_a_duplicate_key_is_refused_with_both_lines(tmp_path, kind):
    text, first, again, path = kind.duplicate
    f = write(tmp_path, kind, text)
    with pytest.raises(kind.error) as info:
        kind.load(f)
    msg = str(info.value)
    assert msg.startswith(f"{f}:{again}: at {path}: duplicate key"), msg
    assert f"first at line {first}, again at line {again}" in msg and "fix:" in msg
    assert info.value.line == again and info.value.path == path


@pytest.mark.parametrize("kind", KINDS, ids=IDS)
def test_a_schema_error_names_file_line_and_path(tmp_path, kind):
    text, line, path = kind.schema
    f = write(tmp_path, kind, text)
    with pytest.raises(kind.error) as info:
        kind.load(f)
    assert str(info.value).startswith(f"{f}:{line}: at {path}: "), str(info.value)
    assert info.value.line == line and "fix:" in str(info.value)


@pytest.mark.parametrize("where", ["used", "unused"])
@pytest.mark.parametrize("kind", KINDS, ids=IDS)
def test_a_billion_laughs_is_refused_fast_and_small(tmp_path, kind, where):
    # used: the bomb is the rank list / name / description; unused: it sits, never used,
    # under an unknown key. Either way nothing is expanded.
    body = kind.bomb_use.replace("{bomb}", "*a9") if where == "used" else kind.valid
    f = write(tmp_path, kind, ANCHORS + body)
    out = refused(kind, f)
    assert out.seconds < 1.0 and out.peak_mb < 5, (out.seconds, out.peak_mb)
    assert "more than 20,000 values once its aliases are expanded" in out.message
    assert out.message.startswith(f"{f}:") and out.line and out.line <= 10, out.message
    assert " at junk.a" in out.message  # the YAML path where the budget ran out


@pytest.mark.parametrize("kind", KINDS, ids=IDS)
def test_a_merge_key_bomb_is_refused_too(tmp_path, kind):
    # `<<: [*m, *m, ...]` chains multiply like lists do when merges are flattened
    chain = "m0: &m0 {x: 1}\n" + "".join(
        f"m{i}: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * 10)}]}}\n" for i in range(1, 10))
    f = write(tmp_path, kind, chain + kind.valid)
    out = refused(kind, f)
    assert out.seconds < 1.0 and out.peak_mb < 5 and "more than 20,000 values" in out.message


@pytest.mark.parametrize("style", ["flow", "block"])
@pytest.mark.parametrize("kind", KINDS, ids=IDS)
def test_1000_levels_of_nesting_give_a_located_error(tmp_path, kind, style):
    deep = ("[" * 1000 + "]" * 1000 if style == "flow"
            else "\n" + "".join("  " * i + f"- k{i}:\n" for i in range(1, 1000)))
    f = write(tmp_path, kind, kind.valid + f"extra: {deep}\n")
    out = refused(kind, f)  # not RecursionError: a located error of the kind's class
    assert "nests deeper than 64 levels" in out.message and out.message.startswith(f"{f}:")
    assert out.seconds < 2.0 and out.peak_mb < 20, (out.seconds, out.peak_mb)


@pytest.mark.parametrize("kind", KINDS, ids=IDS)
def test_a_recursive_alias_is_refused(tmp_path, kind):
    f = write(tmp_path, kind, kind.valid + "loop: &x [1, *x]\n")
    out = refused(kind, f)
    assert "recursive alias" in out.message and out.line == kind.valid.count("\n") + 1


@pytest.mark.parametrize("kind", KINDS, ids=IDS)
def test_a_wide_document_is_refused_past_the_value_budget(tmp_path, kind):
    f = write(tmp_path, kind, kind.valid + "wide: [" + ", ".join(["1"] * 25_000) + "]\n")
    out = refused(kind, f, extra_mb=256, trace=False)  # under tracemalloc it takes 3x longer
    assert "more than 20,000 values" in out.message and "aliases" not in out.message
    assert out.peak_mb < 64, out.peak_mb


@pytest.mark.parametrize("kind", KINDS, ids=IDS)
def test_a_too_big_file_is_refused_before_it_is_read(tmp_path, kind):
    f = write(tmp_path, kind, kind.valid + "# " + "x" * yamlio.MAX_BYTES + "\n")
    out = refused(kind, f)
    assert "bytes; autopeft reads YAML files of at most 2,097,152 bytes" in out.message
    assert out.peak_mb < 1, out.peak_mb  # the size is checked before reading


BROKEN = [  # (id, bytes appended to a valid file, words of the message, line offset)
    ("syntax", b"oops: [1, 2}\n", "invalid YAML", 1),
    ("not_utf8", b"name: caf\xe9\n", "not UTF-8", 1),
    ("control_char", b"oops: a\x00b\n", "control character", 1),
    ("python_tag", b"oops: !!python/object/apply:os.system [ls]\n", "tag", 1),
    ("integer_key", b"1: one\n", "is read by YAML as 1, not as a name", 1),
    ("list_key", b"? [a, b]\n: 1\n", "a key must be a plain word", 1),
    ("two_documents", b"---\nother: 1\n", "single document", 1),
    ("undefined_alias", b"oops: *nowhere\n", "undefined alias", 1),
    ("duplicate_anchor", b"a1: &d 1\na2: &d 2\n", "duplicate anchor &d", 2),
]


@pytest.mark.parametrize("case", BROKEN, ids=[c[0] for c in BROKEN])
@pytest.mark.parametrize("kind", KINDS, ids=IDS)
def test_broken_yaml_is_refused_with_its_line(tmp_path, kind, case):
    _, tail, words, offset = case
    f = write(tmp_path, kind, kind.valid.encode() + tail)
    with pytest.raises(kind.error) as info:
        kind.load(f)
    msg = str(info.value)
    line = kind.valid.count("\n") + offset
    assert words in msg and msg.startswith(f"{f}:{line}: "), msg
    assert info.value.line == line and "fix:" in msg


@pytest.mark.parametrize("kind", KINDS, ids=IDS)
def test_a_missing_file_is_refused(tmp_path, kind):
    with pytest.raises(kind.error):
        kind.load(str(tmp_path / "nowhere" / kind.file))


# ---------------------------------------------------------------- the reader itself

@pytest.mark.parametrize("fast", [True, False], ids=["libyaml", "python"])
def test_both_parsers_apply_the_same_rules(fast):
    if fast and yamlio._CParser is None:
        pytest.skip("PyYAML without libyaml")
    read = lambda text: yamlio.read_yaml(text, "f.yaml", fast=fast)  # noqa: E731
    assert read("a: [1, {b: x}]\n")[0] == {"a": [1, {"b": "x"}]}
    for text, words in [("a: 1\na: 2\n", "duplicate key"), ("a: &x [*x]\n", "recursive"),
                        ("a: " + "[" * 100 + "]" * 100, "deeper than 64"),
                        ("a: " + "[" * 2000 + "]" * 2000, "deeper than 64"),
                        ("a: [" + ",".join("1" * 20_001) + "]", "more than 20,000"),
                        (ANCHORS, "once its aliases are expanded"),
                        ("a: [1, 2}\n", "invalid YAML")]:
        with pytest.raises(ConfigError, match=words):
            read(text)


def test_aliases_within_budget_are_expanded_as_copies():
    data, lines = yamlio.read_yaml("a: &x {k: [1]}\nb: *x\n", "f.yaml")
    assert data == {"a": {"k": [1]}, "b": {"k": [1]}}
    assert data["a"] is not data["b"]  # no two places share one mutable dict
    assert lines["b"] == 2 and lines["a.k[0]"] == 1


def test_the_budget_counts_aliases_at_their_expanded_size():
    text = "a: &x [1, 2, 3, 4]\nb: [*x, *x, *x]\n"  # 1 + 5 + 1 + 1 + 3 * 5 values with keys
    yamlio.read_yaml(text, "f.yaml", max_values=24)
    with pytest.raises(ConfigError, match="more than 23 values once its aliases"):
        yamlio.read_yaml(text, "f.yaml", max_values=23)


def test_the_depth_limit_counts_aliases_at_their_height():
    text = "a: &x [[[1]]]\nb: [[*x]]\n"  # *x, 4 levels high, sits at level 4 of b: 7
    yamlio.read_yaml(text, "f.yaml", max_depth=7)
    with pytest.raises(ConfigError, match="deeper than 6 levels") as info:
        yamlio.read_yaml(text, "f.yaml", max_depth=6)
    assert info.value.path == "b[0][0]" and info.value.line == 2


def test_merge_keys_work_and_written_keys_win_and_keep_their_lines():
    text = "base: &b {x: 1, y: 2}\nother: &o {y: 9, z: 3}\nc:\n  y: 5\n  <<: [*b, *o]\n"
    data, lines = yamlio.read_yaml(text, "f.yaml")
    assert data["c"] == {"x": 1, "y": 5, "z": 3}  # written wins; earlier merge wins
    assert lines["c.y"] == 4 and lines["c.x"] == 1
    with pytest.raises(ConfigError, match="merge key"):
        yamlio.read_yaml("c:\n  <<: [1, 2]\n", "f.yaml")
    # a quoted '<<' is a plain key, not a merge
    assert yamlio.read_yaml("c: {'<<': [1, 2]}\n", "f.yaml")[0] == {"c": {"<<": [1, 2]}}


def test_an_empty_file_is_none_and_comments_only_too():
    assert yamlio.read_yaml("", "f.yaml")[0] is None
    assert yamlio.read_yaml("# nothing\n", "f.yaml")[0] is None


def test_line_lookup_falls_back_to_the_nearest_ancestor():
    lines = yamlio.Lines({"": 1, "a": 2, "a.b": 3, "a.b[0]": 4})
    assert lines.at("a.b[0]") == 4 and lines.at("a.b[7].c") == 3 and lines.at("a.q") == 2
    assert lines.at("zzz") == 1 and lines.at("<top>") == 1 and lines.at(None) == 1


def test_located_errors_of_a_plain_error_class_have_the_same_shape():
    err = yamlio.located(ExportError, "x.yaml", "bad", line=3, path="a.b", fix="do it")
    assert str(err) == "x.yaml:3: at a.b: bad\n  fix: do it"
    assert (err.file, err.line, err.path) == ("x.yaml", 3, "a.b")
    err = yamlio.located(ExperimentError, "x.yaml", "bad", line=3, path="a.b", fix="do it")
    assert str(err) == "x.yaml:3: at a.b: bad\n  fix: do it" and err.file == "x.yaml"


# ---------------------------------------------------------------- the command line

def _cli(argv: list[str], cwd: str) -> list:
    from autopeft.cli import main

    os.chdir(cwd)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return [rc, out.getvalue(), err.getvalue()]


def _bad_files(tmp_path: Path) -> dict[str, str]:
    files = {
        "space_bomb": ANCHORS + "space: s\nmodules:\n  lora:\n    rank: *a9\n",
        "space_deep": "space: s\nmodules: " + "[" * 1000 + "]" * 1000 + "\n",
        "exp_bomb": ANCHORS + "name: *a9\n",
        "exp_deep": "name: t\nproxy: " + "{a: " * 1000 + "1" + "}" * 1000 + "\n",
        "exp_dup": "name: t\nseed: 1\nseed: 7\n",
        "preset_bomb": ANCHORS + "controller: tpe\ndescription: *a9\n",
        "preset_deep": "controller: tpe\nsettings: " + "[" * 1000 + "]" * 1000 + "\n",
        "preset_dup": "controller: tpe\ncontroller: random\n",
    }
    for name, text in files.items():
        (tmp_path / f"{name}.yaml").write_text(text)
    return {name: str(tmp_path / f"{name}.yaml") for name in files}


SEARCH = [  # (which argument is bad, the file, exit code, words)
    ("space", "space_bomb", 1, "billion laughs"),
    ("space", "space_deep", 1, "deeper than 64"),
    ("experiment", "exp_bomb", 3, "billion laughs"),
    ("experiment", "exp_deep", 3, "deeper than 64"),
    ("experiment", "exp_dup", 3, "duplicate key 'seed' (first at line 2, again at line 3)"),
    ("controller", "preset_bomb", 1, "billion laughs"),
    ("controller", "preset_deep", 1, "deeper than 64"),
    ("controller", "preset_dup", 1, "duplicate key 'controller'"),
]


@pytest.mark.parametrize("case", SEARCH, ids=[c[1] for c in SEARCH])
def test_search_refuses_each_bad_file_located_and_writes_nothing(tmp_path, case):
    which, name, code, words = case
    inputs = tmp_path / "in"
    inputs.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    files = _bad_files(inputs)
    args = {"space": "lora_only.yaml", "experiment": "default.yaml", "controller": "tpe"}
    args[which] = files[name]
    argv = ["search", "--trials", "1"] + [x for k, v in args.items() for x in (f"--{k}", v)]
    out = run_bounded(lambda: _cli(argv, str(work)), seconds=60)
    assert out.kind == "ok", out.message
    rc, _, err = out.value
    assert rc == code, err
    assert f"error: {files[name]}:" in err and words in err and "fix:" in err, err
    assert "Traceback" not in err
    assert list(work.iterdir()) == []  # no database, no runs directory


@pytest.mark.parametrize("name", ["space_bomb", "space_deep"])
def test_space_check_refuses_bombs_and_depth_located(tmp_path, name):
    files = _bad_files(tmp_path)
    out = run_bounded(lambda: _cli(["space", "check", files[name]], str(tmp_path)),
                      seconds=30)
    assert out.kind == "ok", out.message
    rc, stdout, err = out.value
    assert rc == 1 and stdout == "" and f"error: {files[name]}:" in err and "fix:" in err
    assert "Traceback" not in err and out.peak_mb < 50, (err, out.peak_mb)


def test_train_refuses_a_bad_candidate_file_and_writes_nothing(tmp_path):
    export = tmp_path / "exported"
    export.mkdir()
    (export / CANDIDATE_FILE).write_text(ANCHORS + "format: autopeft-export/1\n"
                                         "candidate: {modules: *a9}\n")
    out = run_bounded(lambda: _cli(["train", str(export), "--out", str(tmp_path / "out")],
                                   str(tmp_path)), seconds=60)
    assert out.kind == "ok", out.message
    rc, _, err = out.value
    assert rc == ExportError.exit_code and "billion laughs" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported"]


def test_no_module_reads_yaml_around_the_strict_reader():
    # a yaml.safe_load anywhere else would bring back silent duplicates and unbounded aliases
    import ast

    package = Path(__file__).resolve().parents[1] / "autopeft"
    loads = {"load", "safe_load", "full_load", "unsafe_load", "load_all", "safe_load_all",
             "compose", "compose_all", "CSafeLoader", "SafeLoader", "Loader", "FullLoader"}
    found = []
    for path in sorted(package.rglob("*.py")):
        if path.name == "yamlio.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Attribute) and node.attr in loads
                    and isinstance(node.value, ast.Name) and node.value.id == "yaml"):
                found.append(f"{path.relative_to(package.parent)}:{node.lineno} yaml.{node.attr}")
            if isinstance(node, ast.ImportFrom) and node.module == "yaml":
                found += [f"{path.relative_to(package.parent)}:{node.lineno} from yaml import "
                          f"{a.name}" for a in node.names if a.name in loads]
    assert found == [], found


@pytest.mark.parametrize("kind", [k for k in KINDS if k.name in ("space", "experiment")],
                         ids=["space", "experiment"])
def test_a_device_or_a_directory_is_refused_by_name(tmp_path, kind):
    with pytest.raises(kind.error, match="'/dev/zero' is not a regular file, not an? "):
        kind.load("/dev/zero")  # it would never end
    with pytest.raises(kind.error, match="is a directory"):
        kind.load(str(tmp_path))
