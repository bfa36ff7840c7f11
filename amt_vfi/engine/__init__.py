"""The interpolation engine: pairs, time-step plans, padding, batching, precision, memory, caching."""

from .devices import DEVICE_CHOICES, PRECISION_CHOICES, resolve_device, resolve_precision
from .interpolator import Interpolator, frames_in_order
from .model_cache import cached_model, release_models
from .padding import padding_for
from .plan import (
    PlannedFrame,
    exact_rate,
    multiplier_plan,
    plan_groups,
    resample_plan,
    retime_plan,
    retime_positions,
    schedule_plan,
    skip_predicate,
)
from .scene import (
    DEFAULT_CUT_THRESHOLD,
    DEFAULT_DUPLICATE_THRESHOLD,
    cut_detector,
    distinct_frames,
    duplicate_score,
)

__all__ = [
    "DEFAULT_CUT_THRESHOLD",
    "DEFAULT_DUPLICATE_THRESHOLD",
    "DEVICE_CHOICES",
    "Interpolator",
    "PRECISION_CHOICES",
    "PlannedFrame",
    "cached_model",
    "cut_detector",
    "distinct_frames",
    "duplicate_score",
    "exact_rate",
    "frames_in_order",
    "multiplier_plan",
    "padding_for",
    "plan_groups",
    "release_models",
    "resolve_device",
    "resolve_precision",
    "resample_plan",
    "retime_plan",
    "retime_positions",
    "schedule_plan",
    "skip_predicate",
]
