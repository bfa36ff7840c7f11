"""AMT video frame interpolation: the network, checkpoint handling, and a memory-bounded engine.

import amt_vfi
model = amt_vfi.load_model("amt-s.pth")                  # any official checkpoint, .pth or .safetensors
middle = model(img0, img1, 0.5)                          # B x 3 x H x W, H and W multiples of 16

engine = amt_vfi.Interpolator("amt-s", device="auto")   # any frame size, batching, fallbacks
frames = engine.interpolate_pair(frame0, frame1, [0.25, 0.5, 0.75])  # H x W x C in, T x H x W x 3 out
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .errors import AmtVfiError, CheckpointError, CheckpointNotFoundError, InputError, OutOfMemoryError

__version__ = "0.1.0"

# The rest of the public names, each imported from its module when first used: importing the package
# loads no torch, so the `amt-vfi` command can answer a Ctrl-C while torch loads (see cli/__init__.py).
_LAZY = {
    "OFFICIAL_CHECKPOINTS": ".checkpoints",
    "convert_to_safetensors": ".checkpoints",
    "load_model": ".checkpoints",
    "resolve_checkpoint": ".checkpoints",
    "standin_state_dict": ".checkpoints",
    "Interpolator": ".engine",
    "PlannedFrame": ".engine",
    "multiplier_plan": ".engine",
    "release_models": ".engine",
    "retime_plan": ".engine",
    "schedule_plan": ".engine",
    "skip_predicate": ".engine",
    "AMT": ".network",
    "VARIANTS": ".network",
}


# Sub-packages reachable as attributes (`amt_vfi.engine`), as they were when the package imported them all.
_SUBPACKAGES = frozenset({"checkpoints", "cli", "comfy", "distributed", "engine", "media", "network", "pipeline"})

if TYPE_CHECKING:  # what the names are, for type checkers and editors
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
    from .network import AMT, VARIANTS


def __getattr__(name: str) -> object:
    """A public name, or a sub-package such as `amt_vfi.engine`, imported on first use."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module 'amt_vfi' has no attribute {name!r}")
    globals()[name] = value  # once imported, an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, *_SUBPACKAGES})


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
