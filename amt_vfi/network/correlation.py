"""Bidirectional correlation lookups: the reference all-pairs volume and an exact on-demand equivalent.

Both answer the same question: for every source pixel p at 1/8 resolution and a centre position c(p),
the correlations <f_src(p), f_tgt(q)> / sqrt(D) at the 7x7 positions q around c(p) on each of four
average-pooled levels, sampled bilinearly with zeros outside the map. Offsets are ordered with the x
offset slow and the y offset fast (channel 7a + b), which is what the official weights were trained on.

Queries may carry several time steps of one feature batch: a query batch of N = T * B rows, row
t * B + b asking about feature sample b.
"""

from __future__ import annotations

import math
from typing import Literal, Protocol

import torch
import torch.nn.functional as F

CorrelationMode = Literal["auto", "all-pairs", "on-demand"]
CORRELATION_MODES: tuple[str, ...] = ("auto", "all-pairs", "on-demand")
LEVELS = 4
RADIUS = 3
WINDOW = 2 * RADIUS + 1
# The reference keeps the volume, its transpose and their pooled levels: about 8/3 volumes.
ALL_PAIRS_OVERHEAD = 8.0 / 3.0


class CorrelationLookup(Protocol):
    def __call__(self, centres_fwd: torch.Tensor, centres_bwd: torch.Tensor) -> torch.Tensor:
        """Correlation features (N x 392 x h x w) for frame-0 sources at `centres_fwd` in frame 1
        and frame-1 sources at `centres_bwd` in frame 0 (both N x 2 x h x w, x first, pixels)."""
        ...


def all_pairs_bytes(batch: int, height: int, width: int) -> int:
    """Bytes the all-pairs volumes hold for feature maps of this size (float32, both directions)."""
    return int(batch * (height * width) ** 2 * 4 * ALL_PAIRS_OVERHEAD)


def _pool_levels(x: torch.Tensor) -> list[torch.Tensor]:
    levels = [x]
    for _ in range(LEVELS - 1):
        levels.append(F.avg_pool2d(levels[-1], 2, stride=2))
    return levels


def _queries_per_sample(centres: torch.Tensor, batch: int) -> torch.Tensor:
    """N x 2 x h x w centres (N = T * B) -> B*h*w x T x 2, grouped by feature sample and pixel."""
    n, _, h, w = centres.shape
    steps = n // batch
    return centres.view(steps, batch, 2, h, w).permute(1, 3, 4, 0, 2).reshape(batch * h * w, steps, 2)


def _window_offsets(device: torch.device) -> torch.Tensor:
    """7 x 7 x 2 offsets (dx, dy): dx varies along the first (slow) axis."""
    steps = torch.arange(-RADIUS, RADIUS + 1, device=device, dtype=torch.float32)
    dx, dy = torch.meshgrid(steps, steps, indexing="ij")
    return torch.stack([dx, dy], dim=-1)


class AllPairsCorrelation:
    """The reference scheme: every source pixel owns a pooled pyramid of its full correlation plane.

    Memory grows with (h*w)^2; use it for small frames, where it is the fastest.
    """

    def __init__(self, fmap0: torch.Tensor, fmap1: torch.Tensor) -> None:
        batch, dim, h, w = fmap0.shape
        self.batch, self.h, self.w = batch, h, w
        volume = torch.bmm(fmap0.float().flatten(2).transpose(1, 2), fmap1.float().flatten(2))
        volume.div_(math.sqrt(dim))
        forward = volume.view(batch * h * w, 1, h, w)
        backward = volume.transpose(1, 2).reshape(batch * h * w, 1, h, w)
        self.levels_fwd = _pool_levels(forward)
        self.levels_bwd = _pool_levels(backward)
        self.offsets = _window_offsets(fmap0.device)

    def _lookup(self, levels: list[torch.Tensor], centres: torch.Tensor) -> torch.Tensor:
        steps = centres.shape[0] // self.batch
        queries = _queries_per_sample(centres.float(), self.batch)
        sampled = []
        for level, plane in enumerate(levels):
            level_h, level_w = plane.shape[-2:]
            positions = queries[:, :, None, None, :] / 2**level + self.offsets
            scale = positions.new_tensor([2.0 / (level_w - 1), 2.0 / (level_h - 1)])
            grid = (positions * scale - 1.0).reshape(queries.shape[0], steps * WINDOW, WINDOW, 2)
            values = F.grid_sample(plane, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
            sampled.append(values.view(self.batch, self.h, self.w, steps, WINDOW * WINDOW))
        stacked = torch.cat(sampled, dim=-1)
        return stacked.permute(3, 0, 4, 1, 2).reshape(steps * self.batch, -1, self.h, self.w)

    def __call__(self, centres_fwd: torch.Tensor, centres_bwd: torch.Tensor) -> torch.Tensor:
        return torch.cat([self._lookup(self.levels_fwd, centres_fwd), self._lookup(self.levels_bwd, centres_bwd)], 1)


class OnDemandCorrelation:
    """Computes only the sampled correlations, straight from pooled feature maps: O(D*h*w) memory.

    Exact by linearity: pooling the correlation plane equals correlating with pooled features, and a
    bilinear sample of correlations equals the correlation with the bilinearly sampled feature. All 49
    positions of a window share one fractional part, so each level needs the dot products at only the
    8 x 8 integer positions around the centre, blended with one set of bilinear weights.
    """

    def __init__(self, fmap0: torch.Tensor, fmap1: torch.Tensor) -> None:
        scale = 1.0 / math.sqrt(fmap0.shape[1])
        self.batch = fmap0.shape[0]
        self.sources = (fmap0.float() * scale, fmap1.float() * scale)
        self.targets = (_pool_levels(fmap1.float()), _pool_levels(fmap0.float()))

    @staticmethod
    def _integer_window(source: torch.Tensor, target: torch.Tensor, x0: torch.Tensor, y0: torch.Tensor) -> torch.Tensor:
        """Dot products at the (WINDOW + 1)^2 integer positions x0 - R .. x0 + R + 1 (same for y), zero outside."""
        n, dim, h, w = source.shape
        level_h, level_w = target.shape[-2:]
        flat_target = target.flatten(2)
        flat_source = source.flatten(2).unsqueeze(2)
        span = torch.arange(-RADIUS, RADIUS + 2, device=source.device)
        ys = y0.flatten(1).unsqueeze(1) + span.view(1, -1, 1)
        y_valid = (ys >= 0) & (ys < level_h)
        rows = []
        for dx in span.tolist():
            xs = x0.flatten(1).unsqueeze(1) + dx
            valid = y_valid & (xs >= 0) & (xs < level_w)
            index = (ys.clamp(0, level_h - 1) * level_w + xs.clamp(0, level_w - 1)).view(n, 1, -1)
            gathered = flat_target.gather(2, index.expand(n, dim, -1)).view(n, dim, span.numel(), h * w)
            rows.append((gathered * flat_source).sum(1) * valid)
        return torch.stack(rows, dim=1).view(n, span.numel(), span.numel(), h, w)

    def _lookup(self, source: torch.Tensor, targets: list[torch.Tensor], centres: torch.Tensor) -> torch.Tensor:
        steps = centres.shape[0] // self.batch
        source = source.repeat(steps, 1, 1, 1)
        centres = centres.float().nan_to_num(nan=-1e4)
        sampled = []
        for level, target in enumerate(targets):
            target = target.repeat(steps, 1, 1, 1)
            level_h, level_w = target.shape[-2:]
            pos = centres / 2**level
            # Far outside the map every sample is zero; clamping keeps the integer maths in range.
            x = pos[:, 0].clamp(-2 * WINDOW, level_w + 2 * WINDOW)
            y = pos[:, 1].clamp(-2 * WINDOW, level_h + 2 * WINDOW)
            x0, y0 = x.floor(), y.floor()
            fx, fy = (x - x0).unsqueeze(1).unsqueeze(1), (y - y0).unsqueeze(1).unsqueeze(1)
            grid = self._integer_window(source, target, x0.long(), y0.long())
            blended = (
                (1 - fx) * (1 - fy) * grid[:, :-1, :-1]
                + fx * (1 - fy) * grid[:, 1:, :-1]
                + (1 - fx) * fy * grid[:, :-1, 1:]
                + fx * fy * grid[:, 1:, 1:]
            )
            sampled.append(blended.flatten(1, 2))
        return torch.cat(sampled, dim=1)

    def __call__(self, centres_fwd: torch.Tensor, centres_bwd: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [
                self._lookup(self.sources[0], self.targets[0], centres_fwd),
                self._lookup(self.sources[1], self.targets[1], centres_bwd),
            ],
            dim=1,
        )


def build_correlation(
    fmap0: torch.Tensor, fmap1: torch.Tensor, mode: CorrelationMode = "auto", budget_bytes: int = 1 << 30
) -> CorrelationLookup:
    """Pick the all-pairs volume when it fits `budget_bytes`, else the on-demand lookup."""
    if mode not in CORRELATION_MODES:
        raise ValueError(f"correlation mode must be one of {', '.join(CORRELATION_MODES)}, not {mode!r}")
    if mode == "auto":
        batch, _, h, w = fmap0.shape
        mode = "all-pairs" if all_pairs_bytes(batch, h, w) <= budget_bytes else "on-demand"
    if mode == "all-pairs":
        return AllPairsCorrelation(fmap0, fmap1)
    return OnDemandCorrelation(fmap0, fmap1)
