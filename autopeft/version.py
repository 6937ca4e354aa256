"""The package version and the versions of the libraries that shape results."""
from __future__ import annotations

import importlib.metadata

__version__ = "0.1.0"

# Libraries whose versions change what a trial measures; recorded as provenance with
# every study and every exported artifact.
TRACKED_LIBRARIES = (
    "torch",
    "transformers",
    "peft",
    "adapters",
    "optuna",
    "ray",
    "datasets",
    "sqlalchemy",
    "numpy",
)


def library_versions() -> dict[str, str]:
    """Installed versions of the tracked libraries (absent ones are left out)."""
    out: dict[str, str] = {"autopeft": __version__}
    for name in TRACKED_LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out
