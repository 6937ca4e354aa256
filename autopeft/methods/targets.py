"""Moved to autopeft.moduletypes.targets (the module types' validation needs it below this
layer); re-exported here for existing callers."""
from autopeft.moduletypes.targets import (ADAPTERS_FFN_FLAGS, FAMILY_TARGETS, FUSED, HAS_BIASES,
                                          KNOWN_FAMILIES, LAYER_PATTERNS, module_names,
                                          partial_fused, relative_names, split_name)

__all__ = ["ADAPTERS_FFN_FLAGS", "FAMILY_TARGETS", "FUSED", "HAS_BIASES", "KNOWN_FAMILIES",
           "LAYER_PATTERNS", "module_names", "partial_fused", "relative_names", "split_name"]
