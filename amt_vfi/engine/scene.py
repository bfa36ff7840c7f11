"""A cheap scene-cut score, so frames are never blended across an edit."""

from __future__ import annotations

import torch
import torch.nn.functional as F

THUMBNAIL = 64
DEFAULT_CUT_THRESHOLD = 0.3


def _thumbnail(frame: torch.Tensor) -> torch.Tensor:
    """H x W x C in [0, 1] -> a small luma image, normalised to zero mean and unit spread."""
    luma = frame[..., :3].float().mean(dim=-1)[None, None]
    small = F.adaptive_avg_pool2d(luma, (THUMBNAIL, THUMBNAIL))[0, 0]
    return (small - small.mean()) / (small.std() + 1e-3)


def cut_score(frame0: torch.Tensor, frame1: torch.Tensor) -> float:
    """0 for the same picture, about 1 for unrelated pictures: 1 - correlation of the thumbnails / 2,
    plus the change in mean brightness. Camera motion scores low, an edit high."""
    a, b = _thumbnail(frame0), _thumbnail(frame1)
    correlation = float((a * b).mean())
    brightness = float((frame0[..., :3].float().mean() - frame1[..., :3].float().mean()).abs())
    return (1.0 - correlation) / 2.0 + brightness


def cut_detector(threshold: float = DEFAULT_CUT_THRESHOLD):
    """A predicate `(frame0, frame1) -> bool` for the interpolator's `is_cut`."""

    def is_cut(frame0: torch.Tensor, frame1: torch.Tensor) -> bool:
        return cut_score(frame0, frame1) > threshold

    return is_cut
