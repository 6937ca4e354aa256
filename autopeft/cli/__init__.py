"""The `autopeft` command line: a registry of subcommands.

Each subcommand lives in its own module under autopeft.cli with two functions:

    def register(subparsers) -> None     # adds its parser, sets func=run
    def run(args) -> int                  # does the work, returns an exit code

The CLI is the only place that configures logging and prints. Errors derived from
AutoPeftError are printed as one clear message and mapped to their fixed exit codes
(see autopeft.exceptions); anything else is a bug and shows its traceback.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Any, Callable, Mapping

from autopeft.cli.args import USAGE_EXIT_CODE, UsageParser
from autopeft.exceptions import AutoPeftError
from autopeft.version import __version__

# 128 + SIGPIPE: what a shell reports for a writer whose reader closed the pipe.
BROKEN_PIPE_EXIT_CODE = 141

# Subcommand modules, in the order `autopeft --help` lists them.
COMMANDS = (
    "autopeft.cli.search_cmd",   # search, resume
    "autopeft.cli.inspect_cmd",  # ls, show
    "autopeft.cli.export_cmd",   # export, report, finalize, train
    "autopeft.cli.calibrate_cmd",  # calibrate
    "autopeft.cli.space_cmd",    # space check
    "autopeft.cli.db_cmd",       # db upgrade
    "autopeft.cli.dashboard_cmd",  # dashboard
)


def build_parser() -> argparse.ArgumentParser:
    parser = UsageParser(
        prog="autopeft",
        description="Search which parameter-efficient fine-tuning setup to use.",
    )
    parser.add_argument("--version", action="version", version=f"autopeft {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # not written yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None, *,
         evaluator_factory: Callable[[Mapping[str, Any]], Any] | None = None) -> int:
    """Run one command; returns its exit code (usage errors included: no SystemExit).

    `evaluator_factory` (experiment dict -> Evaluator) replaces the proxy trainer for
    `search`/`resume`: how tests and library users bring their own evaluator. It exists
    only in Python, so no file or database row can make autopeft import code.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage error (64), or --help / --version (0)
        return exc.code if isinstance(exc.code, int) else USAGE_EXIT_CODE
    args.evaluator_factory = evaluator_factory
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if args.verbose < 2:
        # The ML libraries log chatty notes at WARNING ("Some weights ... newly initialized"
        # for the classifier head we are about to train); keep them for -vv.
        # transformers resets its logger's level from this variable when it first loads.
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        for noisy in ("transformers", "adapters", "peft", "datasets", "ray", "alembic",
                      "huggingface_hub"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
    if not getattr(args, "func", None):
        parser.print_help()
        return USAGE_EXIT_CODE
    try:
        return int(args.func(args) or 0)
    except AutoPeftError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`autopeft show NAME | head`): stop quietly, as cat does.
        # Point stdout at /dev/null so the interpreter's final flush cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return BROKEN_PIPE_EXIT_CODE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
