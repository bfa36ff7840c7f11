"""Bidirectional correlation lookups, from precomputed all-pairs volumes or computed on demand.

The question is always the same: for every source pixel p at 1/8 resolution and a centre position c(p),
the correlations <f_src(p), f_tgt(q)> / sqrt(D) at the 7x7 positions q around c(p) on each of four
average-pooled levels, sampled bilinearly with zeros outside the map. Offsets are ordered with the x
offset slow and the y offset fast (channel 7a + b), which is what the official weights were trained on.

All 49 positions of a window share one fractional part, so a level needs the correlations at only the
8 x 8 integer positions around the centre, blended with one set of separable bilinear weights (which
also carry the zero padding). Those 64 values come either from a precomputed volume (one row per source
pixel: (h*w)^2 values at level 0, a sixteenth of that at level 1, ...) or from dot products with the
pooled feature map computed as needed. Pooling the volume equals correlating with the pooled map, so
both are exact; a level keeps a volume when memory allows and it pays off, coarsest levels first, since
they are cheap.

Queries may carry several time steps of one feature batch: a query batch of N = T * B rows, row
t * B + b asking about feature sample b.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from . import cpu_kernels
from .layers import device_constant

CorrelationMode = Literal["auto", "all-pairs", "on-demand"]
CORRELATION_MODES: tuple[str, ...] = ("auto", "all-pairs", "on-demand")
LEVELS = 4
RADIUS = 3
WINDOW = 2 * RADIUS + 1
SPAN = WINDOW + 1  # integer positions per window side
# Devices whose index_select reads overlapping strided views in place (see _gather_runs).
STRIDED_GATHER_DEVICES = ("cpu", "cuda")


def _level_sizes(height: int, width: int) -> list[tuple[int, int]]:
    return [(height >> level, width >> level) for level in range(LEVELS)]


def volume_bytes(batch: int, height: int, width: int, levels: int = LEVELS) -> int:
    """Bytes the volumes of the `levels` coarsest levels take for h x w feature maps (float32, both
    directions)."""
    coarsest = _level_sizes(height, width)[LEVELS - levels :]
    return 2 * batch * height * width * sum(h * w for h, w in coarsest) * 4


# On a CPU, one level's volume (a GEMM) costs about what looking the level up on demand costs for
# area / CPU_VOLUME_AREA_PER_TIME_STEP time steps (3 lookups of 64 positions each per time step; the GEMM
# does about 16 times more products per second than the gathers). A GPU computes volumes so fast that
# only memory limits them.
CPU_VOLUME_AREA_PER_TIME_STEP = 3072


def volume_levels(
    mode: CorrelationMode,
    batch: int,
    height: int,
    width: int,
    budget_bytes: int,
    time_steps: int = 1,
    device_type: str = "cpu",
) -> int:
    """How many of the coarsest levels get a precomputed volume: all for 'all-pairs', none for
    'on-demand'; for 'auto' as many as fit in `budget_bytes` and, on a CPU, pay for themselves over the
    `time_steps` that will be decoded."""
    if mode not in CORRELATION_MODES:
        raise ValueError(f"correlation mode must be one of {', '.join(CORRELATION_MODES)}, not {mode!r}")
    if mode == "all-pairs":
        return LEVELS
    if mode == "on-demand":
        return 0
    sizes = _level_sizes(height, width)
    chosen = 0
    for count in range(1, LEVELS + 1):
        level_h, level_w = sizes[LEVELS - count]
        worth_it = device_type != "cpu" or level_h * level_w <= CPU_VOLUME_AREA_PER_TIME_STEP * time_steps
        if not worth_it or volume_bytes(batch, height, width, count) > budget_bytes:
            break
        chosen = count
    return chosen


def _gather_runs(table: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
    """Runs of SPAN consecutive rows of `table` (rows x width) starting at `starts` -> n x SPAN x width.

    On CPUs and CUDA one index per run reads an overlapping strided view; elsewhere (MPS may copy such a
    view first) every row is indexed on its own.
    """
    rows, width = table.shape
    if table.device.type in STRIDED_GATHER_DEVICES:
        runs = table.as_strided((rows - SPAN + 1, SPAN * width), (width, 1))
        return runs.index_select(0, starts).view(-1, SPAN, width)
    offsets = torch.arange(SPAN, device=starts.device)
    return table.index_select(0, (starts.unsqueeze(-1) + offsets).view(-1)).view(-1, SPAN, width)


def _rows(x: torch.Tensor) -> torch.Tensor:
    """B x D x H x W -> (B*H*W) x D: one contiguous feature vector per pixel, cheap to gather."""
    return x.flatten(2).transpose(1, 2).reshape(-1, x.shape[1])


@dataclass
class _LevelGroup:
    """Levels looked up together: their sizes as (G x 1 x 1 x 1) tensors and where each level and
    direction starts in the group's table of volumes (flat) or of pooled target features (rows)."""

    levels: list[int]
    heights: torch.Tensor
    widths: torch.Tensor
    scales: torch.Tensor
    starts: torch.Tensor  # G x 2 x 1 x 1 offsets into `table`
    table: torch.Tensor  # flat volumes, or (rows x D) pooled target features, with SPAN zeros at both ends
    precomputed: bool
    parts: list[torch.Tensor]  # the table's part for each level and direction (level-major), without margins


class WindowCorrelation:
    """The correlation lookup of a pair of D x h x w feature maps (see the module docstring).

    The `volume_levels` coarsest levels are precomputed; the others are computed on demand, in chunks of
    pixels small enough to stay in cache, in O(D*h*w) memory. Both directions and all levels of a group
    are looked up with one set of tensor operations (the lookup runs three times per time step).
    """

    # Pixels per on-demand gather: cache-sized on a CPU; on a GPU large enough to keep the kernels busy.
    CHUNK_PIXELS = {"cpu": 256}
    DEFAULT_CHUNK_PIXELS = 16384
    # Window positions handled per block of pixels (bounds the index tensors: 8 bytes each).
    BLOCK_POSITIONS = {"cpu": 1 << 21}
    DEFAULT_BLOCK_POSITIONS = 1 << 25

    def __init__(self, fmap0: torch.Tensor, fmap1: torch.Tensor, volume_levels: int = LEVELS) -> None:
        batch, dim, h, w = fmap0.shape
        self.batch, self.h, self.w = batch, h, w
        self.volume_levels = volume_levels
        device = fmap0.device
        # float16 volumes stay float16 on a GPU (tensor cores, half the traffic); elsewhere float32
        # (bfloat16 has too few mantissa bits for correlations that are blended again).
        volume_dtype = torch.float16 if fmap0.is_cuda and fmap0.dtype == torch.float16 else torch.float32
        scale = 1.0 / math.sqrt(dim)
        scaled = [fmap.float() * scale for fmap in (fmap0, fmap1)]
        # Direction 0: frame-0 sources in frame 1; direction 1: frame-1 sources in frame 0.
        self.sources = torch.cat([_rows(x) for x in scaled])
        pooled = [[fmap.float()] for fmap in (fmap1, fmap0)]
        for _ in range(LEVELS - 1):
            for levels in pooled:
                levels.append(F.avg_pool2d(levels[-1], 2, stride=2))
        split = LEVELS - volume_levels
        on_demand, precomputed = list(range(split)), list(range(split, LEVELS))
        # The CPU kernel reads direction 1's level-0 volume as direction 0's, transposed: one GEMM less.
        # The PyTorch lookup copies the transpose in first, should it run instead.
        self._level0_transposed = 0 in precomputed and cpu_kernels.usable(fmap0, fmap1)
        self.groups = []
        if on_demand:
            self.groups.append(self._group(on_demand, pooled, self._row_table(on_demand, pooled), False))
        if precomputed:
            table = self._volume_table(precomputed, pooled, scaled, volume_dtype)
            self.groups.append(self._group(precomputed, pooled, table, True))
        self.span = torch.arange(-RADIUS, RADIUS + 2, device=device)

    @staticmethod
    def _row_table(levels: list[int], pooled: list[list[torch.Tensor]]) -> tuple[torch.Tensor, list[int]]:
        """The pooled target features of `levels` (both directions) as one row table, and each part's length."""
        parts = [_rows(pooled[d][level]) for level in levels for d in (0, 1)]
        margin = parts[0].new_zeros(SPAN, parts[0].shape[1])
        return torch.cat([margin, *parts, margin]), [part.shape[0] for part in parts]

    def _volume_table(
        self, levels: list[int], pooled: list[list[torch.Tensor]], scaled: list[torch.Tensor], dtype: torch.dtype
    ) -> tuple[torch.Tensor, list[int]]:
        """The volumes of `levels` (both directions) in one flat table, and each volume's length."""
        pixels = self.h * self.w
        parts = [(level, d) for level in levels for d in (0, 1)]
        lengths = [self.batch * pixels * pooled[d][level].shape[-2:].numel() for level, d in parts]
        table = torch.empty(sum(lengths) + 2 * SPAN, dtype=dtype, device=scaled[0].device)
        table[:SPAN] = 0
        table[-SPAN:] = 0
        sources = [x.to(dtype).flatten(2).transpose(1, 2) for x in scaled]
        offset = SPAN
        for (level, d), size in zip(parts, lengths, strict=True):
            if not (self._level0_transposed and (level, d) == (0, 1)):
                target = pooled[d][level].to(dtype).flatten(2)
                torch.bmm(sources[d], target, out=table[offset : offset + size].view(self.batch, pixels, -1))
            offset += size
        return table, lengths

    def _transpose_level0(self) -> None:
        """Fill direction 1's level-0 volume, left out for the CPU kernel, for the PyTorch lookup."""
        if self._level0_transposed:
            group = next(group for group in self.groups if group.precomputed)
            shape = (self.batch, self.h * self.w, self.h * self.w)
            group.parts[1].view(shape).copy_(group.parts[0].view(shape).transpose(1, 2))
            self._level0_transposed = False

    @staticmethod
    def _group(
        levels: list[int],
        pooled: list[list[torch.Tensor]],
        table_and_lengths: tuple[torch.Tensor, list[int]],
        precomputed: bool,
    ) -> _LevelGroup:
        table, lengths = table_and_lengths
        device = table.device
        sizes = [tuple(pooled[0][level].shape[-2:]) for level in levels]
        offsets = list(itertools.accumulate([SPAN, *lengths[:-1]]))
        starts = device_constant(offsets, torch.int64, device)

        def column(values: list[float], dtype: torch.dtype) -> torch.Tensor:
            return device_constant(values, dtype, device).view(-1, 1, 1, 1)

        return _LevelGroup(
            levels=levels,
            heights=column([lh for lh, _ in sizes], torch.int64),
            widths=column([lw for _, lw in sizes], torch.int64),
            scales=column([0.5**level for level in levels], torch.float32),
            starts=starts.view(len(levels), 2, 1, 1),
            table=table,
            precomputed=precomputed,
            parts=[table[offset : offset + length] for offset, length in zip(offsets, lengths, strict=True)],
        )

    def _dots(self, rows: torch.Tensor, source_index: torch.Tensor, runs: torch.Tensor) -> torch.Tensor:
        """Dot products of source rows `source_index` (n) with the target rows of 8 runs of 8 consecutive
        rows starting at `runs` (n x 8) -> n x 64."""
        dim = rows.shape[-1]
        chunk = self.CHUNK_PIXELS.get(rows.device.type, self.DEFAULT_CHUNK_PIXELS)
        dots = rows.new_empty(runs.shape[0], SPAN * SPAN)
        for start in range(0, runs.shape[0], chunk):
            stop = start + chunk
            gathered = _gather_runs(rows, runs[start:stop].reshape(-1)).view(-1, SPAN * SPAN, dim)
            queries = self.sources.index_select(0, source_index[start:stop]).unsqueeze(1)
            # A batched dot product (not bmm: tiny matrix-vector products are 3x slower through BLAS).
            dots[start:stop] = torch.linalg.vecdot(gathered, queries)
        return dots

    def _window(self, group: _LevelGroup, centres: torch.Tensor, pixel: torch.Tensor) -> torch.Tensor:
        """The windows of `group`'s levels, G x 2 x N x 7 (y) x 7 (x) x n, for centres 2 x N x 2 x n at
        `pixel`. Pixels are the innermost dimension, so the per-pixel blends vectorise. Each window row of
        8 integer positions is one run of consecutive values (or feature rows), gathered at once; runs
        that stick out of a row read neighbouring values, which get zero weight."""
        queries, pixels = centres.shape[1], pixel.shape[0]
        pos = centres.unsqueeze(0) * group.scales.unsqueeze(-1)  # G x 2 x N x 2 x n
        # Far outside the map every sample is zero; clamping keeps the integer maths in range.
        x = pos[..., 0, :].clamp(-2 * WINDOW).minimum(group.widths + 2 * WINDOW)
        y = pos[..., 1, :].clamp(-2 * WINDOW).minimum(group.heights + 2 * WINDOW)
        x0, y0 = x.floor(), y.floor()
        span = self.span.view(-1, 1)
        xs = x0.long().unsqueeze(-2) + span  # G x 2 x N x 8 x n
        ys = y0.long().unsqueeze(-2) + span
        widths, heights = group.widths.unsqueeze(-1), group.heights.unsqueeze(-1)
        # Separable bilinear weights, zero for integer positions outside the map.
        inside_x = ((xs >= 0) & (xs < widths)).float()
        inside_y = ((ys >= 0) & (ys < heights)).float()
        fx, fy = (x - x0).unsqueeze(-2), (y - y0).unsqueeze(-2)
        low_x, high_x = (1 - fx) * inside_x[..., :-1, :], fx * inside_x[..., 1:, :]
        low_y, high_y = (1 - fy) * inside_y[..., :-1, :], fy * inside_y[..., 1:, :]
        first_x = torch.minimum(xs[..., 0, :].clamp(-SPAN), group.widths)
        runs = torch.minimum(ys.clamp(0), heights - 1) * widths + first_x.unsqueeze(-2)  # G x 2 x N x 8 x n
        sample = torch.arange(queries, device=centres.device).view(-1, 1) % self.batch
        area = group.heights * group.widths
        if group.precomputed:
            runs = runs + (group.starts + (sample * (self.h * self.w) + pixel) * area).unsqueeze(-2)
            values = _gather_runs(group.table.view(-1, 1), runs.view(-1)).view(*runs.shape, SPAN).transpose(-1, -2)
        else:
            runs = runs + (group.starts + sample * area).unsqueeze(-1)
            direction = torch.arange(2, device=centres.device).view(2, 1, 1)
            source = ((direction * self.batch + sample) * (self.h * self.w) + pixel).expand(*runs.shape[:3], pixels)
            dots = self._dots(group.table, source.reshape(-1), runs.transpose(-1, -2).reshape(-1, SPAN))
            values = dots.view(*source.shape, SPAN, SPAN).permute(0, 1, 2, 4, 5, 3)
        values = values.float().contiguous()  # G x 2 x N x 8 (y) x 8 (x) x n
        along_x = torch.addcmul(
            values[..., :-1, :] * low_x.unsqueeze(-3), values[..., 1:, :], high_x.unsqueeze(-3)
        )  # G x 2 x N x 8 x 7 x n
        return torch.addcmul(
            along_x[..., :-1, :, :] * low_y.unsqueeze(-2), along_x[..., 1:, :, :], high_y.unsqueeze(-2)
        )

    def __call__(self, centres_fwd: torch.Tensor, centres_bwd: torch.Tensor) -> torch.Tensor:
        """Correlation features (N x 392 x h x w) for frame-0 sources at `centres_fwd` in frame 1 and
        frame-1 sources at `centres_bwd` in frame 0 (both N x 2 x h x w, x first, pixels)."""
        if cpu_kernels.usable(centres_fwd, centres_bwd, self.sources):
            return self._fused_lookup(torch.stack([centres_fwd, centres_bwd]).contiguous())
        self._transpose_level0()
        queries, pixels = centres_fwd.shape[0], self.h * self.w
        centres = torch.stack([centres_fwd, centres_bwd]).float().nan_to_num(nan=-1e4).flatten(3)
        out = centres.new_empty(queries, 2, LEVELS, WINDOW, WINDOW, pixels)  # channel 7a + b: x offset a
        budget = self.BLOCK_POSITIONS.get(centres.device.type, self.DEFAULT_BLOCK_POSITIONS)
        for group in self.groups:
            block = max(1, budget // (len(group.levels) * 2 * queries * SPAN * SPAN))
            first, last = group.levels[0], group.levels[-1] + 1
            for start in range(0, pixels, block):
                stop = min(start + block, pixels)
                pixel = torch.arange(start, stop, device=centres.device)
                window = self._window(group, centres[..., start:stop], pixel)
                out[:, :, first:last, ..., start:stop] = window.permute(2, 1, 0, 4, 3, 5)
        return out.view(queries, -1, self.h, self.w)

    def _fused_lookup(self, centres: torch.Tensor) -> torch.Tensor:
        """The CPU kernel's lookup, written straight into the channels-last layout of the next convolution."""
        tables, modes = [], []
        for group in sorted(self.groups, key=lambda group: group.levels[0]):
            tables += group.parts
            modes += [cpu_kernels.VOLUME if group.precomputed else cpu_kernels.ON_DEMAND] * len(group.parts)
        if self._level0_transposed:
            tables[1], modes[1] = tables[0], cpu_kernels.TRANSPOSED
        shape = (centres.shape[1], 2 * LEVELS * WINDOW * WINDOW, self.h, self.w)
        out = torch.empty(shape, dtype=torch.float32, memory_format=torch.channels_last)
        cpu_kernels.correlation(centres, self.batch, tables, modes, self.sources, out)
        return out


def build_correlation(
    fmap0: torch.Tensor,
    fmap1: torch.Tensor,
    mode: CorrelationMode = "auto",
    budget_bytes: int = 1 << 30,
    time_steps: int = 1,
) -> WindowCorrelation:
    """The lookup for `mode` (see `volume_levels`)."""
    batch, _, h, w = fmap0.shape
    levels = volume_levels(mode, batch, h, w, budget_bytes, time_steps, fmap0.device.type)
    return WindowCorrelation(fmap0, fmap1, levels)
