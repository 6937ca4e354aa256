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

from autopeft.exceptions import AutoPeftError
from autopeft.version import __version__

# Subcommand modules, in the order `autopeft --help` lists them.
COMMANDS = (
    "autopeft.cli.search_cmd",   # search, resume
    "autopeft.cli.inspect_cmd",  # ls, show
    "autopeft.cli.export_cmd",   # export, report, finalize, train
    "autopeft.cli.calibrate_cmd",  # calibrate
    "autopeft.cli.space_cmd",    # space check
    "autopeft.cli.db_cmd",       # db upgrade
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if args.verbose < 2:
        # The ML libraries log chatty notes at WARNING ("Some weights ... newly initialized"
        # for the classifier head we are about to train); keep them for -vv.
        # transformers resets its logger's level from this variable when it first loads.
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        for noisy in ("transformers", "adapters", "peft", "datasets", "ray", "alembic"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except AutoPeftError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
