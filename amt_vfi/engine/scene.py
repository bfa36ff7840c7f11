"""Cheap frame comparisons: scene cuts, so frames are never blended across an edit, and duplicates, so
repeated frames (animation on twos, padded frame rates) can be left out and interpolated instead."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F

THUMBNAIL = 64
DEFAULT_CUT_THRESHOLD = 0.3
DUPLICATE_THUMBNAIL = 128
# Mean absolute luma difference (0..1) below which two frames count as one picture: under one 8-bit step,
# above the coding noise of repeats in H.264 at crf 18 (up to 0.0012 measured), far below a picture moving
# a few pixels (0.037 for a 6-pixel pan of a smooth pattern).
DEFAULT_DUPLICATE_THRESHOLD = 0.003


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


def _luma(frame: torch.Tensor, size: int) -> torch.Tensor:
    return F.adaptive_avg_pool2d(frame[..., :3].float().mean(dim=-1)[None, None], (size, size))[0, 0]


def duplicate_score(frame0: torch.Tensor, frame1: torch.Tensor) -> float:
    """The mean absolute difference of the two frames' luma at 128 x 128: 0 for a repeated frame."""
    return float((_luma(frame0, DUPLICATE_THUMBNAIL) - _luma(frame1, DUPLICATE_THUMBNAIL)).abs().mean())


def distinct_frames(frames: Iterable[torch.Tensor], threshold: float = DEFAULT_DUPLICATE_THRESHOLD) -> list[int]:
    """Indices of the frames that differ from the last one kept (the first frame always counts), plus the
    last frame, so a timeline built on them still spans the whole clip."""
    kept: list[int] = []
    reference = None
    index = -1
    for index, frame in enumerate(frames):
        if reference is None or duplicate_score(reference, frame) > threshold:
            kept.append(index)
            reference = frame
    if kept and kept[-1] != index:
        kept.append(index)
    return kept
