"""Study names: each becomes a folder under --runs-dir, so it must be safe as a path part.

One rule, checked where a name enters (the CLI's --study, Storage.create_study) and again
where it is joined to the runs directory (a name stored by an older autopeft, or written
into a shared database by hand, must not lead checkpoints out of --runs-dir either).
"""
from __future__ import annotations

import re
from pathlib import Path

from autopeft.exceptions import ConfigError

# Letters, digits, "_", "." and "-", not starting with "." or "-": no separators, no NUL,
# no "..", nothing a shell or argparse would read as an option. The same alphabet as
# space names, so the default name <space>-<date>-<time> always passes.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
MAX_STUDY_NAME = 128  # well under the 255-byte limit of a file name on common filesystems
RULE = (f"letters, digits, '_', '.' and '-', starting with a letter, digit or '_', at most "
        f"{MAX_STUDY_NAME} characters")


def study_name_problem(name: object) -> str | None:
    """Why `name` cannot be a study name, or None when it can."""
    if not isinstance(name, str):
        return f"a study name must be a string, got {type(name).__name__}"
    if len(name) > MAX_STUDY_NAME:
        return (f"the study name {name[:40]!r}... is {len(name)} characters long; the limit "
                f"is {MAX_STUDY_NAME}")
    if not _NAME.fullmatch(name):
        return (f"the study name {name!r} cannot be used: it becomes a folder under "
                f"--runs-dir, so it may hold only {RULE}")
    return None


def study_dir(runs_dir: str | Path, name: str) -> Path:
    """`runs_dir / name`, refused unless it is a plain folder inside runs_dir."""
    problem = study_name_problem(name)
    root = Path(runs_dir).resolve()
    path = (root / str(name)).resolve() if problem is None else None
    if path is None or path.parent != root:
        raise ConfigError(problem or f"the study name {name!r} leaves the runs directory",
                          value=name, fix="start a new study with a name made of " + RULE)
    return path
