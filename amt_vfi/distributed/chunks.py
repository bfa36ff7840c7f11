"""Cutting one clip's plan into chunks that workers render independently without changing the result.

A chunk owns the plan items whose source frame lies in its range of input frames, and decodes one frame
past that range when its last pair needs it: the pair across a boundary is interpolated exactly once,
by the chunk on its left. The engine is deterministic per pair (cut decisions included), so the chunks
laid end to end are the single-process output.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from ..engine import PlannedFrame

DEFAULT_CHUNK_FRAMES = 600


@dataclass(frozen=True)
class Chunk:
    """Plan items `items`, written as output frames `first_output`...; decodes input `first_frame`..`last_frame`."""

    index: int
    first_frame: int
    last_frame: int
    first_output: int
    items: tuple[PlannedFrame, ...]

    @property
    def frames(self) -> int:
        return len(self.items)


def scan_ranges(frame_count: int, chunk_frames: int) -> list[tuple[int, int]]:
    """(first, last) input frames, both included, of the pieces that the cut scan splits a clip into:
    neighbouring pieces share a frame so every pair is scored once."""
    return [(first, min(first + chunk_frames, frame_count - 1)) for first in range(0, frame_count - 1, chunk_frames)]


def choose_boundaries(frame_count: int, chunk_frames: int, cuts: Sequence[int] = ()) -> list[int]:
    """Input frames where chunks 1, 2, ... start: each chunk spans at most `chunk_frames` pairs and ends at
    a scene cut when one falls in the second half of that span (the encoder restarts where the picture
    does anyway); otherwise it is cut at the full length. `cuts` are the first frames of new scenes."""
    cuts = sorted(cuts)
    boundaries: list[int] = []
    start = 0
    while frame_count - 1 - start > chunk_frames:
        low, high = start + (chunk_frames + 1) // 2, start + chunk_frames
        at = bisect.bisect_right(cuts, high)
        start = cuts[at - 1] if at and cuts[at - 1] >= low else high
        boundaries.append(start)
    return boundaries


def split_plan(plan: Sequence[PlannedFrame], boundaries: Sequence[int]) -> list[list[PlannedFrame]]:
    """Cut a plan at input frames `boundaries` (ascending): each part holds the items whose source lies
    in [boundary_k, boundary_k+1); the first part starts at 0 and the last runs to the end."""
    edges = [0, *boundaries]
    parts: list[list[PlannedFrame]] = [[] for _ in edges]
    part = 0
    for item in plan:
        while part + 1 < len(edges) and item.source >= edges[part + 1]:
            part += 1
        parts[part].append(item)
    return parts


def make_chunks(plan: Sequence[PlannedFrame], boundaries: Sequence[int]) -> list[Chunk]:
    """The non-empty parts of `plan` cut at `boundaries`, each with the input frames it reads."""
    chunks: list[Chunk] = []
    first_output = 0
    for items in split_plan(plan, boundaries):
        if not items:
            continue
        last = max(item.source + (0 if item.is_original else 1) for item in items)
        chunks.append(Chunk(len(chunks), items[0].source, last, first_output, tuple(items)))
        first_output += len(items)
    return chunks
