"""Cheap frame comparisons: scene cuts, so frames are never blended across an edit, and duplicates, so
repeated frames (animation on twos, padded frame rates) can be left out and interpolated instead."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F

THUMBNAIL = 64
DEFAULT_CUT_THRESHOLD = 0.3
DUPLICATE_THUMBNAIL = 128
# Mean absolute luma difference (0..1) below which two frames count as one picture: under one 8-bit step,
# above the coding noise of repeats in H.264 at crf 18 (up to 0.0012 measured), far below a picture moving
# a few pixels (0.037 for a 6-pixel pan of a smooth pattern).
DEFAULT_DUPLICATE_THRESHOLD = 0.003


def _luma(frame: torch.Tensor, size: int) -> torch.Tensor:
    """H x W x C in [0, 1] -> its luma averaged down to size x size."""
    return F.adaptive_avg_pool2d(frame[..., :3].float().mean(dim=-1)[None, None], (size, size))[0, 0]


def _cut_features(frame: torch.Tensor) -> tuple[torch.Tensor, float]:
    """A frame's 64 x 64 luma normalised to zero mean and unit spread, and its mean brightness."""
    small = _luma(frame, THUMBNAIL)
    return (small - small.mean()) / (small.std() + 1e-3), float(frame[..., :3].float().mean())


def _score(first: tuple[torch.Tensor, float], second: tuple[torch.Tensor, float]) -> float:
    """0 for the same picture, about 1 for unrelated pictures: 1 - correlation of the thumbnails / 2, plus
    the change in mean brightness. Camera motion scores low, an edit high."""
    correlation = float((first[0] * second[0]).mean())
    return (1.0 - correlation) / 2.0 + abs(first[1] - second[1])


def cut_detector(threshold: float = DEFAULT_CUT_THRESHOLD) -> Callable[[torch.Tensor, torch.Tensor], bool]:
    """A predicate `(frame0, frame1) -> bool` for the interpolator's `is_cut`.

    Streams ask about consecutive pairs, so the second frame of one call is usually the first of the
    next: its features are kept and reused rather than computed again.
    """
    last: list = [None, None]  # the frame of the previous call's second position, and its features

    def features(frame: torch.Tensor) -> tuple[torch.Tensor, float]:
        return last[1] if frame is last[0] else _cut_features(frame)

    def is_cut(frame0: torch.Tensor, frame1: torch.Tensor) -> bool:
        first, second = features(frame0), features(frame1)
        last[:] = [frame1, second]
        return _score(first, second) > threshold

    return is_cut


def _luma_difference(luma0: torch.Tensor, luma1: torch.Tensor) -> float:
    return float((luma0 - luma1).abs().mean())


def duplicate_score(frame0: torch.Tensor, frame1: torch.Tensor) -> float:
    """The mean absolute difference of the two frames' luma at 128 x 128: 0 for a repeated frame."""
    return _luma_difference(_luma(frame0, DUPLICATE_THUMBNAIL), _luma(frame1, DUPLICATE_THUMBNAIL))


def distinct_frames(frames: Iterable[torch.Tensor], threshold: float = DEFAULT_DUPLICATE_THRESHOLD) -> list[int]:
    """Indices of the frames that differ from the last one kept (the first frame always counts), plus the
    last frame, so a timeline built on them still spans the whole clip."""
    kept: list[int] = []
    reference = None  # the luma of the last frame kept
    index = -1
    for index, frame in enumerate(frames):
        luma = _luma(frame, DUPLICATE_THUMBNAIL)
        if reference is None or _luma_difference(reference, luma) > threshold:
            kept.append(index)
            reference = luma
    if kept and kept[-1] != index:
        kept.append(index)
    return kept
