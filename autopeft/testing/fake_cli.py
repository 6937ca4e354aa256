"""The autopeft command line with a fake evaluator, for tests that need a real process.

    python -m autopeft.testing.fake_cli analytic search --space default.yaml ...

The first argument picks one of the fakes shipped in autopeft.testing (FAKES, a fixed
table: no name typed here or written in a file is ever imported); the rest is the
ordinary `autopeft` command line. In-process tests call
`autopeft.cli.main(argv, evaluator_factory=...)` directly instead.
"""
from __future__ import annotations

import sys

from autopeft.testing import ray_fakes, study_fakes

FAKES = {
    "analytic": study_fakes.analytic,
    "deterministic": ray_fakes.deterministic,
    "failing": ray_fakes.failing,
    "fatal": ray_fakes.fatal,
    "broken": ray_fakes.broken,
    "self_killing": ray_fakes.self_killing,
    "cpu_bound": ray_fakes.cpu_bound,
    "broken_setup": ray_fakes.broken_setup,
}


def main(argv: list[str] | None = None) -> int:
    from autopeft.cli import main as cli_main

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in FAKES:
        print(f"usage: python -m autopeft.testing.fake_cli {{{','.join(FAKES)}}} "
              f"COMMAND ...", file=sys.stderr)
        return 64
    return cli_main(argv[1:], evaluator_factory=FAKES[argv[0]])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
