"""The AMT network (encoders, correlation, decoders, update blocks) and its released variants."""

from .correlation import CORRELATION_MODES, CorrelationMode, all_pairs_bytes, build_correlation
from .model import AMT, PairFeatures
from .variants import CHECKPOINT_VARIANTS, VARIANTS, VariantSpec, detect_variant

__all__ = [
    "AMT",
    "CHECKPOINT_VARIANTS",
    "CORRELATION_MODES",
    "CorrelationMode",
    "PairFeatures",
    "VARIANTS",
    "VariantSpec",
    "all_pairs_bytes",
    "build_correlation",
    "detect_variant",
]
