"""The exceptions autopeft raises, and the exit code each one maps to in the CLI.

Every user-facing error carries a message that says what is wrong, where (file and YAML
path when there is one), the offending value, and how to fix it.
"""
from __future__ import annotations


class AutoPeftError(Exception):
    """Base class. `exit_code` is what the CLI exits with when this escapes a command."""

    exit_code = 1


class UsageError(AutoPeftError):
    """The command line itself is wrong (a bad flag value, a budget below what is done).

    64 is EX_USAGE of sysexits.h: argparse's own 2 would collide with "unknown study"."""

    exit_code = 64


class ConfigError(AutoPeftError):
    """A user-written file (space, experiment, controller preset) is invalid.

    `location` is "file:yaml.path" when known; the message already includes it.
    """

    exit_code = 1

    def __init__(self, message: str, *, file: str | None = None, path: str | None = None,
                 value: object = None, fix: str | None = None) -> None:
        self.file = file
        self.path = path
        self.value = value
        self.fix = fix
        where = ""
        if file and path:
            where = f"{file}: at {path}: "
        elif file:
            where = f"{file}: "
        elif path:
            where = f"at {path}: "
        text = f"{where}{message}"
        if fix:
            text += f"\n  fix: {fix}"
        super().__init__(text)


class SpaceError(ConfigError):
    """A search-space file is invalid, or a space does not fit a model."""


class ExperimentError(ConfigError):
    """An experiment file is invalid."""

    exit_code = 3


class CandidateError(AutoPeftError):
    """A candidate cannot be built on the given model (raised before any training)."""

    exit_code = 1


class TrialFailedError(AutoPeftError):
    """The candidate itself is bad (NaN loss, out of memory, infeasible): fail, no retry."""


class FatalError(AutoPeftError):
    """The setup is broken (model or data missing): persist the trial, then stop the search."""

    exit_code = 5


class StorageError(AutoPeftError):
    """The database refused or could not be reached. Wraps the driver's error."""

    exit_code = 4


class StudyNotFoundError(StorageError):
    exit_code = 2


class NoDatabaseError(StudyNotFoundError):
    """A command that only reads found no database (or no autopeft schema) at the URL:
    so no study of that name exists there either. Nothing was created."""


class StudyExistsError(StorageError):
    exit_code = 6


class SpaceDriftError(AutoPeftError):
    """The space file changed since the study was created (fingerprint mismatch)."""

    exit_code = 7


class ExportError(AutoPeftError):
    exit_code = 8


class MissingDependencyError(AutoPeftError):
    """An optional dependency is not installed; the message names the pip command."""

    exit_code = 9
