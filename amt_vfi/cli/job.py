"""One interpolation job: a source streamed through the engine into a sink.

The same pieces serve the single-process CLI and the distributed runner: a job is a whole plan, and a
chunk is the part of it whose pairs start in a range of input frames.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from ..engine import Interpolator, PlannedFrame, cut_detector, multiplier_plan, retime_plan
from ..errors import InputError
from ..media import FrameSink, FrameSource
from .background import BackgroundWriter, prefetch


@dataclass(frozen=True)
class Timing:
    """How the output rate is chosen: an integer multiplier of the input rate, or a target rate."""

    multiplier: int | None = None
    fps: Fraction | None = None

    def output_fps(self, input_fps: Fraction) -> Fraction:
        return Fraction(input_fps) * self.multiplier if self.multiplier else Fraction(self.fps)

    def plan(self, frame_count: int, input_fps: Fraction) -> list[PlannedFrame]:
        """A multiplier keeps every original at every N-th position ((frames - 1) * N + 1 frames); a
        target rate places output frames over the input's whole duration, each at its exact time."""
        if self.multiplier:
            return multiplier_plan(frame_count, self.multiplier)
        return retime_plan(frame_count, Fraction(input_fps), self.output_fps(input_fps))


def to_tensor(frame: np.ndarray) -> torch.Tensor:
    """uint8/uint16 H x W x 3 -> float32 in [0, 1]."""
    scale = 255.0 if frame.dtype == np.uint8 else 65535.0
    return torch.from_numpy(frame).float().div_(scale)


def to_array(frame: torch.Tensor, bit_depth: int) -> np.ndarray:
    """float32 H x W x 3 in [0, 1] -> uint8 or uint16, rounded (originals round-trip exactly)."""
    if bit_depth == 16:
        return frame.mul(65535.0).round_().clamp_(0, 65535).numpy().astype(np.uint16)
    return frame.mul(255.0).round_().clamp_(0, 255).to(torch.uint8).numpy()


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


def render(
    engine: Interpolator,
    frames: Iterator[np.ndarray],
    plan: Sequence[PlannedFrame],
    sink: FrameSink,
    *,
    first_frame: int = 0,
    scene_threshold: float | None = None,
    on_frame: Callable[[], None] = lambda: None,
) -> int:
    """Write the frames of `plan` to `sink`; `frames` starts at input frame `first_frame`.

    Decoding runs ahead on one thread and encoding behind on another, so both overlap the network.
    Returns the number of frames written.
    """
    local_plan = [PlannedFrame(item.source - first_frame, item.time) for item in plan]
    is_cut = cut_detector(scene_threshold) if scene_threshold is not None else None
    tensors = (to_tensor(frame) for frame in frames)
    writer = BackgroundWriter(sink.write)
    written = 0
    try:
        for frame in engine.run(prefetch(tensors), local_plan, is_cut=is_cut):
            writer.put(to_array(frame, sink.bit_depth))
            written += 1
            on_frame()
    finally:
        writer.finish()
    return written


@dataclass(frozen=True)
class JobReport:
    input_frames: int
    output_frames: int
    output_fps: Fraction
    seconds: float
    output: Path


def plan_for(source: FrameSource, timing: Timing) -> tuple[int, list[PlannedFrame]]:
    if source.info.variable_frame_rate:
        raise InputError(
            f"{source.path} has a variable frame rate, which this tool does not retime; convert it to a "
            "constant rate first (e.g. ffmpeg -i IN -fps_mode cfr OUT)"
        )
    count = source.count_frames()
    return count, timing.plan(count, source.info.fps)


def elapsed_since(start: float) -> float:
    return time.perf_counter() - start
