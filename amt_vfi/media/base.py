"""Types shared by the video and image-folder back ends: source metadata, source and sink base classes."""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import numpy as np

from ..engine.plan import exact_rate
from . import atomic
from .errors import MediaError
from .naming import FRAME_SUFFIXES

VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mkv", ".mov", ".webm", ".avi", ".gif"})
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp", ".dpx"})


def dtype_for(bit_depth: int) -> type[np.unsignedinteger]:
    """Frames are uint8 for 8-bit media and uint16 (full 0..65535 range) for deeper media."""
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, not {bit_depth}")
    return np.uint8 if bit_depth == 8 else np.uint16


def as_rate(fps: Fraction | int | float) -> Fraction:
    """A positive frame rate as a Fraction; floats such as 29.97 become 2997/100."""
    rate = exact_rate(fps).limit_denominator(1_000_000)
    if rate <= 0:
        raise ValueError(f"fps must be positive, not {fps}")
    return rate


def rgb_format(bit_depth: int) -> str:
    """The packed RGB pixel format PyAV converts to and from uint8 or uint16 H x W x 3 arrays."""
    return "rgb24" if dtype_for(bit_depth) == np.uint8 else "rgb48le"


def is_high_bit_depth(pixel_format: av.VideoFormat) -> bool:
    """True when a decoded pixel format has more than 8 bits per component, so reading needs uint16."""
    return max(component.bits for component in pixel_format.components) > 8


@dataclass(frozen=True)
class PictureFormat:
    """How an image-folder output stores its frames: FFmpeg's image encoder, the pixel format it writes
    (None: RGB of each frame's bit depth) and the file suffix."""

    codec: str = "png"
    pixel_format: str | None = None
    suffix: str = ".png"

    def __post_init__(self) -> None:
        if self.suffix not in FRAME_SUFFIXES:  # what `--overwrite` later recognises as an earlier output
            raise ValueError(f"picture suffix must be one of {', '.join(FRAME_SUFFIXES)}, not {self.suffix!r}")


PNG = PictureFormat()


@dataclass(frozen=True)
class SourceInfo:
    """What a consumer needs to know about an input before decoding it."""

    width: int
    height: int
    fps: Fraction
    frame_count: int | None
    bit_depth: int
    has_audio: bool
    is_video: bool
    variable_frame_rate: bool
    rotation: int
    picture_format: PictureFormat = PNG  # of an image-folder output: DPX sequences stay DPX


class FrameSource:
    """A streaming reader of RGB frames; subclasses implement :meth:`_iter_from`.

    Each call to :meth:`frames` or :meth:`frames_from` starts an independent pass; closing the source
    (or leaving its ``with`` block) closes passes still running so their files are released.
    """

    def __init__(self, path: Path, info: SourceInfo) -> None:
        self.path = path
        self.info = info
        self._passes: weakref.WeakSet[Iterator[np.ndarray]] = weakref.WeakSet()

    def frames(self) -> Iterator[np.ndarray]:
        """All frames in order as H x W x 3 RGB arrays (uint8, or uint16 when ``info.bit_depth`` is 16)."""
        return self.frames_from(0)

    def frames_from(self, start_index: int) -> Iterator[np.ndarray]:
        """Frames ``start_index``, ``start_index + 1``, ... (nothing when past the end)."""
        if start_index < 0:
            raise ValueError(f"start_index must be >= 0, not {start_index}")
        frames = self._iter_from(start_index)
        self._passes.add(frames)
        return frames

    def _iter_from(self, start_index: int) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def count_frames(self) -> int:
        """The exact number of frames (``info.frame_count`` when the container knew it)."""
        if self.info.frame_count is None:
            raise NotImplementedError
        return self.info.frame_count

    def close(self) -> None:
        """Stop every pass still running."""
        for frames in list(self._passes):
            frames.close()

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FrameSink:
    """A writer that builds its output in a hidden temp and only renames it into place on success.

    Subclasses implement :meth:`_open`, :meth:`_write`, :meth:`_finish` (flush and close files) and
    :meth:`_cancel` (close files after a failure, never raising).
    """

    def __init__(
        self, path: Path, *, width: int, height: int, bit_depth: int, overwrite: bool, directory: bool
    ) -> None:
        if width <= 0 or height <= 0:
            raise ValueError(f"frame size must be positive, not {width}x{height}")
        self.path = path
        self.width = width
        self.height = height
        self.bit_depth = bit_depth
        self.frames_written = 0
        self._dtype = dtype_for(bit_depth)
        self._overwrite = overwrite
        self._closed = False
        atomic.check_destination(path, overwrite)
        self._temp = atomic.make_temp(path, directory=directory)
        try:
            self._open()
        except BaseException:
            self._cancel()
            atomic.discard(self._temp)
            raise

    def _open(self) -> None:
        raise NotImplementedError

    def _write(self, frame: np.ndarray) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        raise NotImplementedError

    def _cancel(self) -> None:
        raise NotImplementedError

    def write(self, frame: np.ndarray) -> None:
        """Append one H x W x 3 RGB frame (uint8, or uint16 for a 16-bit sink)."""
        if self._closed:
            raise MediaError(f"Output {self.path} is already closed")
        expected = (self.height, self.width, 3)
        if frame.shape != expected or frame.dtype != self._dtype:
            wanted = np.dtype(self._dtype).name
            raise ValueError(f"frame must be {wanted} with shape {expected}, got {frame.dtype} {frame.shape}")
        self._write(frame)
        self.frames_written += 1

    def close(self) -> None:
        """Finish the output and move it into place; on any failure the temp is removed."""
        if self._closed:
            return
        self._closed = True
        try:
            self._finish()
            atomic.commit(self._temp, self.path, overwrite=self._overwrite)
        except BaseException:
            self._cancel()
            atomic.discard(self._temp)
            raise

    def abort(self) -> None:
        """Drop the output: nothing is written under :attr:`path`."""
        if self._closed:
            return
        self._closed = True
        try:
            self._cancel()
        finally:
            atomic.discard(self._temp)

    def __enter__(self) -> FrameSink:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
