"""AMT video frame interpolation: the network, checkpoint handling, and a memory-bounded engine.

import amt_vfi
model = amt_vfi.load_model("amt-s.pth")                  # any official checkpoint, .pth or .safetensors
middle = model(img0, img1, torch.full((1, 1, 1, 1), 0.5))  # B x 3 x H x W, H and W multiples of 16

engine = amt_vfi.Interpolator("amt-s", device="auto")   # any frame size, batching, fallbacks
frames = engine.interpolate_pair(frame0, frame1, [0.25, 0.5, 0.75])  # H x W x C in, T x H x W x 3 out
"""

from .checkpoints import (
    OFFICIAL_CHECKPOINTS,
    convert_to_safetensors,
    load_model,
    resolve_checkpoint,
    standin_state_dict,
)
from .engine import (
    Interpolator,
    PlannedFrame,
    multiplier_plan,
    release_models,
    retime_plan,
    schedule_plan,
    skip_predicate,
)
from .errors import AmtVfiError, CheckpointError, CheckpointNotFoundError, InputError, OutOfMemoryError
from .network import AMT, VARIANTS

__version__ = "0.1.0"

__all__ = [
    "AMT",
    "AmtVfiError",
    "CheckpointError",
    "CheckpointNotFoundError",
    "InputError",
    "Interpolator",
    "OFFICIAL_CHECKPOINTS",
    "OutOfMemoryError",
    "PlannedFrame",
    "VARIANTS",
    "convert_to_safetensors",
    "load_model",
    "multiplier_plan",
    "release_models",
    "resolve_checkpoint",
    "retime_plan",
    "schedule_plan",
    "skip_predicate",
    "standin_state_dict",
]
