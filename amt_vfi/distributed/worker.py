"""The worker: one per GPU (or a share of the CPUs), holding the model for its whole life.

Workers open the input themselves and seek to their chunk, so frames never travel through the driver;
they write each chunk next to the final output (a path every node must reach). The class is plain
Python: the runner turns it into a Ray actor, which keeps this module importable without Ray.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import torch

from ..engine import cut_detector
from ..errors import AmtVfiError
from ..pipeline import JobSettings, frames_at, keyframes_of, render, to_tensor
from .chunks import Chunk
from .manifest import fingerprint


@dataclass(frozen=True)
class DataFault:
    """A chunk that cannot be made from this input (unreadable frames, ...): returned, not raised, so the
    driver tells a bad clip from a dead worker and Ray does not retry it."""

    message: str


@dataclass(frozen=True)
class ChunkDone:
    frames: int
    fingerprint: dict[str, Any]


class ChunkWorker:
    """Loads the model once; then scans clips for cuts or repeats and renders chunks, one call at a time."""

    def __init__(self, settings: JobSettings, threads: int | None = None) -> None:
        if threads:
            torch.set_num_threads(threads)
        self.settings = settings
        self.engine = settings.engine()

    def describe(self) -> str:
        """Where this worker runs, for the job summary (and a readiness check: it returns once loaded)."""
        return f"{self.engine.device} on {socket.gethostname()} (pid {os.getpid()})"

    def scan(self, input_path: Path, first: int, last: int) -> list[int] | DataFault:
        """Input frames in (first, last] that start a new scene, by the engine's own cut test."""
        is_cut = cut_detector(self.settings.scene_threshold)
        try:
            with self.settings.open_source(input_path) as source:
                frames = (to_tensor(frame) for frame in islice(source.frames_from(first), last - first + 1))
                previous = next(frames, None)
                cuts = []
                for index, frame in enumerate(frames, first + 1):
                    if is_cut(previous, frame):
                        cuts.append(index)
                    previous = frame
                return cuts
        except AmtVfiError as error:
            return DataFault(str(error))

    def keyframes(self, input_path: Path) -> list[int] | DataFault:
        """The clip's frames that are not repeats (`--dedup`): one pass over the whole clip, since each
        frame is compared with the last one kept."""
        assert self.settings.dedup_threshold is not None
        try:
            with self.settings.open_source(input_path) as source:
                return keyframes_of(source, self.settings.dedup_threshold)
        except AmtVfiError as error:
            return DataFault(str(error))

    def render_chunk(
        self, input_path: Path, chunk: Chunk, output: Path, input_frames: list[int] | None = None
    ) -> ChunkDone | DataFault:
        """Write `chunk`'s frames to `output` (a file or folder replaced atomically, so a retry after a
        crash simply writes it again). `input_frames` are the input frames that the chunk's frames
        `first_frame`..`last_frame` stand for, when they are not those input frames themselves (`--dedup`)."""
        first, last = (input_frames[0], input_frames[-1]) if input_frames else (chunk.first_frame, chunk.last_frame)
        try:
            with self.settings.open_source(input_path) as source:
                frames = islice(source.frames_from(first), last - first + 1)
                if input_frames:
                    frames = frames_at(frames, [index - first for index in input_frames])
                with self.settings.open_output(output, source, overwrite=True, with_tracks=False) as sink:
                    written = render(
                        self.engine,
                        frames,
                        chunk.items,
                        sink,
                        first_frame=chunk.first_frame,
                        scene_threshold=self.settings.scene_threshold,
                    )
        except AmtVfiError as error:
            return DataFault(str(error))
        return ChunkDone(written, fingerprint(output, written))
