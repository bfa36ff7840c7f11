"""Inputs with scene cuts, folder and video readers, and a way to kill Ray workers, for test_distributed.py."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import av
import numpy as np
from media_helpers import pattern
from PIL import Image


def scene_frame(index: int, cuts: tuple[int, ...], width: int, height: int) -> np.ndarray:
    """Frame `index` of a clip whose scenes start at `cuts`: each scene is a different picture family
    (cut scores above 0.5 at the edits, below 0.15 inside a scene)."""
    scene = sum(index >= cut for cut in cuts) % 3
    if scene == 1:
        return (255 - pattern(index, width, height)[::-1]) // 3
    if scene == 2:
        return np.ascontiguousarray(np.rot90(pattern(index, height, width)))
    return pattern(index, width, height)


def write_folder(path: Path, frames: list[np.ndarray]) -> Path:
    path.mkdir(parents=True)
    for index, frame in enumerate(frames):
        Image.fromarray(frame).save(path / f"f{index:03d}.png")
    return path


def read_folder(path: Path) -> dict[str, np.ndarray]:
    return {file.name: np.asarray(Image.open(file)) for file in sorted(path.iterdir())}


def decode(path: Path) -> tuple[list[np.ndarray], list[float]]:
    """Decoded RGB frames and their presentation times in seconds."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        return [frame.to_ndarray(format="rgb24") for frame in frames], [float(frame.time) for frame in frames]


def kill_ray_workers() -> list[int]:
    """SIGKILL every process Ray titled as a ChunkWorker (what a crashed node or the OOM killer does)."""
    killed = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if title.startswith(b"ray::ChunkWorker"):
            os.kill(int(entry.name), signal.SIGKILL)
            killed.append(int(entry.name))
    return killed
