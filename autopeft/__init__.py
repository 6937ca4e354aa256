"""autopeft: search which parameter-efficient fine-tuning setup to use.

Importing this package stays light on purpose: torch, ray, optuna, peft, adapters and
transformers are imported only inside the functions that need them, so that the DSL,
the CLI's `--help` and `autopeft space check` start fast and work without them.
"""
from autopeft.version import __version__

__all__ = ["__version__"]
