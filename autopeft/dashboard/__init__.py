"""`autopeft dashboard`: watch and steer a search in the browser, from the study's own
database (read-only). See autopeft.dashboard.app for the pages, .data for what they read
and .ranking for re-ranking under another λ and other limits.

Needs the `dashboard` extra (Starlette, uvicorn, Jinja2 and plotly for its bundled
plotly.min.js); importing this package imports none of them.
"""
from __future__ import annotations

from typing import Any

from autopeft.exceptions import MissingDependencyError

NEEDS = ("starlette", "uvicorn", "jinja2", "plotly")


def require_deps() -> None:
    """Raise MissingDependencyError naming the extra if a web dependency is missing."""
    import importlib.util

    missing = [m for m in NEEDS if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingDependencyError(
            f"the dashboard needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
            f"not installed.\n  fix: pip install 'autopeft[dashboard]'  (or run `make venv` "
            f"in a checkout)")


def create_app(storage_url: str | None = None, **kw: Any) -> Any:
    require_deps()
    from autopeft.dashboard.app import create_app as _create

    return _create(storage_url, **kw)
