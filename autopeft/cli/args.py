"""Validated argparse types: every number and name on the command line is checked here.

argparse reports a type's ArgumentTypeError as "argument --FLAG: MESSAGE", so each message
says what was wrong with the value and how to fix it, and the flag's name comes for free.
Usage errors exit with USAGE_EXIT_CODE (see `UsageParser`), a code of their own.
"""
from __future__ import annotations

import argparse
import math
import sys
from typing import Callable, NoReturn

from autopeft.exceptions import UsageError

USAGE_EXIT_CODE = UsageError.exit_code
MAX_SEED = 2**32 - 1  # numpy's and torch's seeds are unsigned 32-bit


class UsageParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors exit USAGE_EXIT_CODE instead of argparse's 2
    (2 is also what autopeft used for "unknown study"); sub-parsers inherit the class."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(USAGE_EXIT_CODE, f"{self.prog}: error: {message}\n")


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None


def int_at_least(low: int, fix: str = "") -> Callable[[str], int]:
    """A whole number >= low."""
    what = f"a whole number of at least {low}"

    def parse(text: str) -> int:
        value = _int(text, what)
        if value < low:
            raise argparse.ArgumentTypeError(
                f"must be {what}, got {value}; fix: pass {low} or more" +
                (f" ({fix})" if fix else ""))
        return value

    parse.__name__ = f"int>={low}"  # argparse names the type in some messages
    return parse


positive_int = int_at_least(1)
count = int_at_least(0)
workers = int_at_least(1, "1 runs one trial at a time in this process, K > 1 runs K at "
                          "once on Ray")


def seed(text: str) -> int:
    value = _int(text, "a whole number")
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(
            f"must be a whole number from 0 to {MAX_SEED} (random generators take unsigned "
            f"32-bit seeds), got {value}")
    return value


def _float(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value


def cost_weight(text: str) -> float:
    """λ, the cost penalty weight: 0 ignores cost, larger prefers cheaper candidates. A
    negative one would reward cost (a reward above the accuracy)."""
    value = _float(text, "a number >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(
            f"must be a number >= 0, got {value:g} (0 ignores cost; a larger value prefers "
            f"cheaper candidates; a negative one would reward cost)")
    return value


def params_fraction(text: str) -> float:
    """A limit on params_ratio: a fraction of the base model's parameters, above 0."""
    value = _float(text, "a fraction above 0 (0.05 = 5%)")
    if value <= 0:
        raise argparse.ArgumentTypeError(
            f"must be a fraction above 0 (0.05 = 5% of the base model's parameters), got "
            f"{value:g}: no trial can train fewer than 0 parameters")
    return value


def study_name(text: str) -> str:
    from autopeft.names import study_name_problem

    problem = study_name_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def check_trial_budget(name: str, n_trials: int, finished: int) -> None:
    """`resume --trials N` may not set a budget below what the study already finished."""
    if n_trials < finished:
        raise UsageError(
            f"--trials {n_trials} is below the {finished} trial(s) study {name!r} has "
            f"already finished.\n  fix: pass --trials N with N >= {finished} (N > {finished} "
            f"runs more trials)")


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def duration(text: str) -> float:
    """A wall-clock budget: seconds, or a number with s, m or h (90, 90s, 20m, 1.5h)."""
    raw = text.strip().lower()
    unit = _UNITS.get(raw[-1:]) if raw else None
    number = raw[:-1] if unit else raw
    try:
        value = float(number) * (unit or 1.0)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(
            f"must be a positive duration such as 90s, 20m or 1.5h, got {text!r}")
    return value

