"""Moved to autopeft.moduletypes.init (plug-ins apply it); re-exported for existing callers."""
from autopeft.moduletypes.init import Projection, apply_init, expected_std

__all__ = ["Projection", "apply_init", "expected_std"]
