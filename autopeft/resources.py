"""Files shipped with autopeft (search spaces, experiments, controller presets) and how a
name given on the command line resolves to one.

The YAML files live at the top of the repository (search_spaces/, experiments/,
controllers/); autopeft/data/<kind> are symlinks to them, so the same files are package
data in a wheel and in an editable install.

Resolution order for `resolve(name, kind)`:
  1. an existing file at that path (relative to the current directory) wins;
  2. else, when the name has no directory part, the shipped file of that name, with or
     without the `.yaml` suffix;
  3. else an error (ConfigError, or the class passed as `error`) listing the shipped names.
"""
from __future__ import annotations

import logging
import os
from importlib import resources as _res
from pathlib import Path

from autopeft.exceptions import ConfigError

log = logging.getLogger(__name__)

KINDS = ("search_spaces", "experiments", "controllers")
SUFFIX = ".yaml"


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown resource kind {kind!r}; known: {', '.join(KINDS)}")


def shipped_dir(kind: str) -> Path:
    """The folder holding the shipped files of `kind` (it may be missing or empty)."""
    _check_kind(kind)
    return Path(str(_res.files("autopeft"))) / "data" / kind


def shipped(kind: str) -> list[str]:
    """File names of the shipped files of `kind`, sorted (e.g. ['default.yaml', ...])."""
    folder = shipped_dir(kind)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.suffix == SUFFIX and p.is_file())


def resolve(name_or_path: str | os.PathLike, kind: str, *,
            error: type[ConfigError] = ConfigError) -> Path:
    """The file `name_or_path` means for `kind` (see the module docstring)."""
    _check_kind(kind)
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if path.exists():  # a directory, or a device or pipe (/dev/zero would never end)
        noun = kind[:-1].replace("_", " ")
        what = "a directory" if path.is_dir() else "not a regular file"
        raise error(f"{text!r} is {what}, not {'an' if noun[0] in 'aeiou' else 'a'} {noun} "
                    "file", file=text, value=text, fix="name a YAML file")
    names = shipped(kind)
    if text and os.sep not in text and "/" not in text:
        for candidate in (text, text + SUFFIX):
            if candidate in names:
                found = shipped_dir(kind) / candidate
                log.debug("%s %r resolved to the shipped file %s", kind, text, found)
                return found
    listing = ", ".join(names) if names else "(none)"
    raise error(f"no file {text!r} here ({os.getcwd()}) and no shipped "
                f"{kind.replace('_', ' ')} of that name", file=text, value=text,
                fix=f"give a path to a YAML file, or one of the shipped {kind.replace('_', ' ')}: "
                    f"{listing}")
