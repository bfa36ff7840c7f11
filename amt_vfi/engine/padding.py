"""Padding frames to sizes the network accepts, and cropping results back."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import InputError

ALIGN = 16
# Below this the coarsest correlation level is a single pixel and the reference yields NaN.
MIN_WORKING_SIZE = 128


@dataclass(frozen=True)
class Padding:
    top: int
    bottom: int
    left: int
    right: int

    def apply(self, frames: torch.Tensor) -> torch.Tensor:
        """Edge-replicate N x C x H x W frames."""
        if not (self.top or self.bottom or self.left or self.right):
            return frames
        return F.pad(frames, (self.left, self.right, self.top, self.bottom), mode="replicate")

    def crop(self, frames: torch.Tensor) -> torch.Tensor:
        height, width = frames.shape[-2:]
        return frames[..., self.top : height - self.bottom, self.left : width - self.right]


def alignment_for(scale_factor: float) -> int:
    """Padded sizes must be multiples of 16 / scale so the working size is a multiple of 16."""
    try:  # Python, NumPy and one-element torch numbers; not text
        number = math.nan if isinstance(scale_factor, (bool, str, bytes)) else float(scale_factor)
    except (TypeError, ValueError, RuntimeError):
        number = math.nan
    if math.isnan(number):
        raise InputError(f"scale factor must be a number in (0, 1], got {scale_factor!r}")
    scale_factor = number
    if not 0 < scale_factor <= 1:
        raise InputError(f"scale factor must be in (0, 1], not {scale_factor}")
    align = round(ALIGN / scale_factor)
    if not math.isclose(align * scale_factor, ALIGN, rel_tol=0, abs_tol=1e-9):
        raise InputError(
            f"scale factor {scale_factor} is not usable: 16 / scale must be a whole number (e.g. 1, 0.5, 0.25, 0.8)"
        )
    return align


#: Below this the working size of most frames falls under the network's 128 px minimum, and the padding
#: that restores it makes a pass slower and larger instead of faster (0.01 padded 256x448 frames to 12800 px).
LEAST_SCALE_FACTOR = 0.25


def usable_scale_factor(scale_factor: float) -> float:
    """A scale factor the engine runs with: usable by the network (see `alignment_for`) and not below
    `LEAST_SCALE_FACTOR`."""
    alignment_for(scale_factor)
    scale_factor = float(scale_factor)
    if scale_factor < LEAST_SCALE_FACTOR:
        raise InputError(
            f"scale factor {scale_factor:g} is below {LEAST_SCALE_FACTOR}: smaller frames would be padded back up "
            "to the network's 128 px minimum, which is slower, not faster; use 0.5 or 0.25 for 4K"
        )
    return scale_factor


def _split(total: int) -> tuple[int, int]:
    return total // 2, total - total // 2


def padding_for(height: int, width: int, scale_factor: float = 1.0) -> Padding:
    """Pad like the seed node (to the alignment, extra on the bottom/right), then, only where the frame
    would still be too small for the network, further up to the minimum working size."""
    align = alignment_for(scale_factor)
    minimum = math.ceil(MIN_WORKING_SIZE / scale_factor / align) * align
    sizes = []
    for size in (height, width):
        padded = math.ceil(size / align) * align
        sizes.append(max(padded, minimum) - size)
    top, bottom = _split(sizes[0])
    left, right = _split(sizes[1])
    return Padding(top, bottom, left, right)
