"""Deferred imports of heavy optional dependencies, with an install hint on failure."""
from __future__ import annotations

import importlib
from types import ModuleType

from autopeft.exceptions import MissingDependencyError

# module name -> the extra of autopeft that installs it
_EXTRA = {
    "torch": "ml",
    "transformers": "ml",
    "peft": "ml",
    "adapters": "ml",
    "datasets": "ml",
    "optuna": "search",
    "ray": "search",
    "sqlalchemy": "storage",
    "alembic": "storage",
    "matplotlib": "report",
}


def require(name: str) -> ModuleType:
    """Import `name` or raise MissingDependencyError saying how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        top = name.split(".")[0]
        extra = _EXTRA.get(top, "all")
        raise MissingDependencyError(
            f"{name} is needed here but could not be imported ({exc}).\n"
            f"  fix: pip install 'autopeft[{extra}]'  (or run `make venv` in a checkout)"
        ) from exc
