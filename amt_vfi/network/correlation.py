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

    Memory grows with (h*w)^2; use it for small frames, where it is the fastest. The pooled levels are
    products with pooled features (pooling the plane equals correlating with the pooled map), which is
    exact and much cheaper than pooling the huge level-0 volume.
    """

    def __init__(self, fmap0: torch.Tensor, fmap1: torch.Tensor) -> None:
        batch, dim, h, w = fmap0.shape
        self.batch, self.h, self.w = batch, h, w
        # float16 features keep their dtype on a GPU (tensor cores, half the traffic); elsewhere float32
        # (bfloat16 has too few mantissa bits to address sample positions).
        dtype = torch.float16 if fmap0.is_cuda and fmap0.dtype == torch.float16 else torch.float32
        fmap0, fmap1 = fmap0.to(dtype), fmap1.to(dtype)
        self.levels_fwd = self._volumes(fmap0, _pool_levels(fmap1))
        self.levels_bwd = self._volumes(fmap1, _pool_levels(fmap0))
        self.offsets = _window_offsets(fmap0.device)

    @staticmethod
    def _volumes(source: torch.Tensor, targets: list[torch.Tensor]) -> list[torch.Tensor]:
        batch, dim, h, w = source.shape
        rows = source.flatten(2).transpose(1, 2)
        scale = 1.0 / math.sqrt(dim)
        return [
            torch.bmm(rows, target.flatten(2)).mul_(scale).view(batch * h * w, 1, *target.shape[-2:])
            for target in targets
        ]

    def _lookup(self, levels: list[torch.Tensor], centres: torch.Tensor) -> torch.Tensor:
        steps = centres.shape[0] // self.batch
        queries = _queries_per_sample(centres.float(), self.batch)
        sampled = []
        for level, plane in enumerate(levels):
            level_h, level_w = plane.shape[-2:]
            positions = queries[:, :, None, None, :] / 2**level + self.offsets
            scale = positions.new_tensor([2.0 / (level_w - 1), 2.0 / (level_h - 1)])
            grid = (positions * scale - 1.0).reshape(queries.shape[0], steps * WINDOW, WINDOW, 2)
            grid = grid.to(plane.dtype)
            values = F.grid_sample(plane, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
            sampled.append(values.view(self.batch, self.h, self.w, steps, WINDOW * WINDOW))
        stacked = torch.cat(sampled, dim=-1).float()
        return stacked.permute(3, 0, 4, 1, 2).reshape(steps * self.batch, -1, self.h, self.w)

    def __call__(self, centres_fwd: torch.Tensor, centres_bwd: torch.Tensor) -> torch.Tensor:
        return torch.cat([self._lookup(self.levels_fwd, centres_fwd), self._lookup(self.levels_bwd, centres_bwd)], 1)


def _rows(x: torch.Tensor) -> torch.Tensor:
    """B x D x H x W -> B x (H*W) x D: one contiguous feature vector per pixel, cheap to gather."""
    return x.flatten(2).transpose(1, 2).contiguous()


class OnDemandCorrelation:
    """Computes only the sampled correlations, straight from pooled feature maps: O(D*h*w) memory.

    Exact by linearity: pooling the correlation plane equals correlating with pooled features, and a
    bilinear sample of correlations equals the correlation with the bilinearly sampled feature. All 49
    positions of a window share one fractional part, so each level needs the dot products at only the
    8 x 8 integer positions around the centre, blended with one set of bilinear weights. The dot products
    are gathered and reduced in pixel chunks small enough to stay in cache.
    """

    # Pixels per gather: cache-sized on a CPU; on a GPU large enough to keep the kernels busy.
    CHUNK_PIXELS = {"cpu": 256}
    DEFAULT_CHUNK_PIXELS = 16384

    def __init__(self, fmap0: torch.Tensor, fmap1: torch.Tensor) -> None:
        batch, dim, h, w = fmap0.shape
        scale = 1.0 / math.sqrt(dim)
        self.batch, self.h, self.w = batch, h, w
        self.sources = (_rows(fmap0.float() * scale), _rows(fmap1.float() * scale))
        self.targets = tuple(
            [(_rows(level), tuple(level.shape[-2:])) for level in _pool_levels(fmap.float())] for fmap in (fmap1, fmap0)
        )
        self.span = torch.arange(-RADIUS, RADIUS + 2, device=fmap0.device)

    def _window_dots(self, source: torch.Tensor, target: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Dot products of each source row with the target rows named in `index` (rows x positions)."""
        dim = source.shape[-1]
        positions = index.shape[1]
        chunk = self.CHUNK_PIXELS.get(source.device.type, self.DEFAULT_CHUNK_PIXELS)
        dots = source.new_empty(index.shape)
        for start in range(0, index.shape[0], chunk):
            stop = start + chunk
            gathered = target.index_select(0, index[start:stop].reshape(-1)).view(-1, positions, dim)
            # A batched dot product (not bmm: tiny matrix-vector products are 3x slower through BLAS).
            dots[start:stop] = torch.linalg.vecdot(gathered, source[start:stop].unsqueeze(1))
        return dots

    def _lookup(
        self, source: torch.Tensor, targets: list[tuple[torch.Tensor, tuple[int, int]]], centres: torch.Tensor
    ) -> torch.Tensor:
        queries = centres.shape[0]
        steps = queries // self.batch
        pixels = self.h * self.w
        source = source.repeat(steps, 1, 1).view(queries * pixels, -1)
        sample = (torch.arange(queries, device=centres.device) % self.batch).view(-1, 1, 1, 1)
        centres = centres.float().nan_to_num(nan=-1e4).flatten(2)
        size = self.span.numel()
        sampled = []
        for level, (rows, (level_h, level_w)) in enumerate(targets):
            pos = centres / 2**level
            # Far outside the map every sample is zero; clamping keeps the integer maths in range.
            x = pos[:, 0].clamp(-2 * WINDOW, level_w + 2 * WINDOW)
            y = pos[:, 1].clamp(-2 * WINDOW, level_h + 2 * WINDOW)
            x0, y0 = x.floor(), y.floor()
            xs = x0.long().view(queries, pixels, 1, 1) + self.span.view(1, 1, -1, 1)
            ys = y0.long().view(queries, pixels, 1, 1) + self.span.view(1, 1, 1, -1)
            valid = (xs >= 0) & (xs < level_w) & (ys >= 0) & (ys < level_h)
            index = sample * (level_h * level_w) + ys.clamp(0, level_h - 1) * level_w + xs.clamp(0, level_w - 1)
            dots = self._window_dots(source, rows.view(-1, rows.shape[-1]), index.view(queries * pixels, -1))
            dots = (dots.view_as(valid) * valid).view(queries, pixels, size, size)
            fx = (x - x0).view(queries, pixels, 1, 1)
            fy = (y - y0).view(queries, pixels, 1, 1)
            blended = (
                (1 - fx) * (1 - fy) * dots[..., :-1, :-1]
                + fx * (1 - fy) * dots[..., 1:, :-1]
                + (1 - fx) * fy * dots[..., :-1, 1:]
                + fx * fy * dots[..., 1:, 1:]
            )
            sampled.append(blended.reshape(queries, pixels, WINDOW * WINDOW))
        return torch.cat(sampled, dim=2).transpose(1, 2).reshape(queries, -1, self.h, self.w)

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
