"""The AMT network (encoders, correlation, decoders, update blocks) and its released variants."""

from .correlation import CORRELATION_MODES, CorrelationMode, build_correlation, volume_bytes
from .model import AMT, PairFeatures, state_dict_shapes
from .variants import CHECKPOINT_VARIANTS, VARIANTS, VariantSpec, detect_variant

__all__ = [
    "AMT",
    "CHECKPOINT_VARIANTS",
    "CORRELATION_MODES",
    "CorrelationMode",
    "PairFeatures",
    "VARIANTS",
    "VariantSpec",
    "build_correlation",
    "detect_variant",
    "state_dict_shapes",
    "volume_bytes",
]
