"""Cheap frame comparisons: scene cuts, so frames are never blended across an edit, and duplicates, so
repeated frames (animation on twos, padded frame rates) can be left out and interpolated instead."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F

# Cut detection compares luma thumbnails of this side, aligned on the camera's pan when it is at most a
# quarter of the frame per frame.
THUMBNAIL = 128
DEFAULT_CUT_THRESHOLD = 0.3
DUPLICATE_THUMBNAIL = 128
# Mean absolute luma difference (0..1) below which two frames count as one picture: under one 8-bit step,
# above the coding noise of repeats in H.264 at crf 18 (up to 0.0012 measured), far below a picture moving
# a few pixels (0.037 for a 6-pixel pan of a smooth pattern).
DEFAULT_DUPLICATE_THRESHOLD = 0.003
# A thumbnail whose values spread less than this (a quarter of an 8-bit step) is a flat picture.
_FLAT = 1e-3


def _luma(frame: torch.Tensor, size: int) -> torch.Tensor:
    """H x W x C in [0, 1] -> its luma averaged down to size x size."""
    return F.adaptive_avg_pool2d(frame[..., :3].float().mean(dim=-1)[None, None], (size, size))[0, 0]


def _cut_features(frame: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A frame's luma thumbnail and the mean of each colour channel."""
    pixels = frame[..., :3].float()
    return _luma(pixels, THUMBNAIL), pixels.mean(dim=(0, 1))


def _active_span(first: torch.Tensor, second: torch.Tensor, dim: int) -> slice:
    """The rows (dim 0) or columns (dim 1) between the flat bands both thumbnails share at their edges
    (letterbox bars would otherwise make any two pictures correlate)."""
    varied = torch.nonzero((first.std(dim=1 - dim) > _FLAT) | (second.std(dim=1 - dim) > _FLAT))
    if varied.numel() == 0:
        return slice(None)
    return slice(int(varied[0]), int(varied[-1]) + 1)


def _pan(first: torch.Tensor, second: torch.Tensor) -> tuple[int, int]:
    """The shift (rows, columns) that moves `second` onto `first`, found by phase correlation; (0, 0) when
    it exceeds a quarter of the picture."""
    height, width = first.shape
    window = torch.outer(
        torch.hann_window(height, periodic=False, device=first.device),
        torch.hann_window(width, periodic=False, device=first.device),
    )
    cross = torch.fft.rfft2((first - first.mean()) * window) * torch.fft.rfft2((second - second.mean()) * window).conj()
    peaks = torch.fft.irfft2(cross / (cross.abs() + 1e-12), s=(height, width))
    rows, columns = divmod(int(peaks.argmax()), width)
    rows -= height if rows > height // 2 else 0
    columns -= width if columns > width // 2 else 0
    return (rows, columns) if abs(rows) <= height // 4 and abs(columns) <= width // 4 else (0, 0)


def _span(shift: int, size: int) -> tuple[slice, slice]:
    """The rows (or columns) of the first and the second picture that overlap when shifted by `shift`."""
    if shift >= 0:
        return slice(shift, size), slice(0, size - shift)
    return slice(0, size + shift), slice(-shift, size)


def _correlation(first: torch.Tensor, second: torch.Tensor) -> float:
    """Normalised correlation of two thumbnails (1 for two flat ones: their colours tell those apart)."""
    first, second = first - first.mean(), second - second.mean()
    flat = [float(x.std()) < _FLAT if x.numel() > 1 else True for x in (first, second)]
    if any(flat):
        return 1.0 if all(flat) else 0.0
    return float((first * second).sum() / (first.norm() * second.norm()))


def _score(first: tuple[torch.Tensor, torch.Tensor], second: tuple[torch.Tensor, torch.Tensor]) -> float:
    """0 for the same picture, about 0.5 for unrelated pictures: (1 - correlation) / 2 of the thumbnails
    inside shared letterbox bars, aligned on the camera's pan where that matches better, plus the largest
    change of a colour channel's mean. A pan, however fast, scores low (unaligned, a 40-pixel pan of a
    640 x 360 scene scored as high as an edit)."""
    rows, columns = (_active_span(first[0], second[0], dim) for dim in (0, 1))
    a, b = first[0][rows, columns], second[0][rows, columns]
    (shift_rows, shift_columns), (height, width) = _pan(a, b), a.shape
    (rows_a, rows_b), (columns_a, columns_b) = _span(shift_rows, height), _span(shift_columns, width)
    correlation = max(_correlation(a, b), _correlation(a[rows_a, columns_a], b[rows_b, columns_b]))
    return (1.0 - correlation) / 2.0 + float((first[1] - second[1]).abs().max())


def cut_detector(threshold: float = DEFAULT_CUT_THRESHOLD) -> Callable[[torch.Tensor, torch.Tensor], bool]:
    """A predicate `(frame0, frame1) -> bool` for the interpolator's `is_cut`.

    Streams ask about consecutive pairs, so the second frame of one call is usually the first of the
    next: its features are kept and reused rather than computed again.
    """
    last: list = [None, None]  # the frame of the previous call's second position, and its features

    def features(frame: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
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
