"""Reading and writing frames: video files (PyAV) and folders of images (Pillow/PyAV), torch-free.

``open_source`` streams RGB frames from a video or an image folder; ``open_sink`` writes them to a video
or a folder of PNGs (or DPX files). Sinks build their output in a hidden temp (``.NAME.partial-XXXXXXXX``) next to the
destination and rename it into place only when the ``with`` block ends without an exception, so an
existing output is never touched unless ``overwrite`` is set and the new one is complete.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

from .base import IMAGE_EXTENSIONS, PNG, VIDEO_EXTENSIONS, FrameSink, FrameSource, PictureFormat, SourceInfo, as_rate
from .errors import (
    InconsistentFramesError,
    InputNotFoundError,
    MediaError,
    NotEnoughFramesError,
    OutputExistsError,
    OutputWriteError,
    UnreadableInputError,
    UnsupportedOutputError,
)
from .images import ImageFolderSink, ImageFolderSource
from .naming import frame_file_name
from .video import DEFAULT_CODEC, VideoSink, VideoSource, display_rotation

__all__ = [
    "DEFAULT_CODEC",
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "FrameSink",
    "FrameSource",
    "ImageFolderSink",
    "ImageFolderSource",
    "InconsistentFramesError",
    "InputNotFoundError",
    "MediaError",
    "NotEnoughFramesError",
    "OutputExistsError",
    "OutputWriteError",
    "PictureFormat",
    "SourceInfo",
    "UnreadableInputError",
    "UnsupportedOutputError",
    "VideoSink",
    "VideoSource",
    "absolute_path",
    "frame_file_name",
    "is_video_output",
    "open_sink",
    "open_source",
]


def absolute_path(path: str | Path) -> Path:
    """Absolute path without resolving symlinks, so ``.`` and ``out/`` still have a file name."""
    return Path(os.path.abspath(os.path.expanduser(path)))


def is_video_output(path: str | Path) -> bool:
    """Outputs with a video extension are video files; anything else (or an existing folder) is a folder."""
    target = Path(path)
    return target.suffix.lower() in VIDEO_EXTENSIONS and not target.is_dir()


def open_source(path: str | Path, fps: Fraction | float | None = None) -> FrameSource:
    """Open a video file or an image folder for streaming; ``fps`` overrides the rate the source reports."""
    source = absolute_path(path)
    if not source.exists():
        raise InputNotFoundError(f"Input {source} does not exist; check the path")
    rate = None if fps is None else as_rate(fps)
    if source.is_dir():
        return ImageFolderSource(source, rate)
    if source.suffix.lower() in IMAGE_EXTENSIONS:
        raise NotEnoughFramesError(
            f"Input {source} is a single image; interpolation needs at least 2 frames, "
            "so pass the folder that holds the images"
        )
    return VideoSource(source, rate)


def open_sink(
    path: str | Path,
    *,
    fps: Fraction | float,
    width: int,
    height: int,
    bit_depth: int = 8,
    overwrite: bool = False,
    crf: int = 18,
    codec: str = DEFAULT_CODEC,
    tracks_from: str | Path | None = None,
    metadata_from: str | Path | VideoSource | None = None,
    picture_format: PictureFormat = PNG,
) -> FrameSink:
    """Create the writer for ``path``: a video for video extensions, else a folder of numbered PNGs.

    ``tracks_from`` is a video whose audio and subtitle tracks a video output gets. ``metadata_from``
    gives a video output the rotation and colour tags of that video; a folder output, which has nowhere to
    keep a rotation tag, gets its frames turned upright instead. It may be the open :class:`VideoSource`
    itself, which spares probing the file. ``picture_format`` is how a folder output stores its frames
    (a source's ``info.picture_format`` keeps DPX sequences DPX).
    Raises :class:`OutputExistsError` when ``path`` exists (an empty folder does not count) and
    ``overwrite`` is false, or when it is a folder holding anything but an earlier output's frames.
    """
    target = absolute_path(path)
    if not is_video_output(target):
        rotation = display_rotation(metadata_from) if metadata_from is not None else 0
        return ImageFolderSink(
            target,
            width=width,
            height=height,
            bit_depth=bit_depth,
            overwrite=overwrite,
            rotation=rotation,
            picture_format=picture_format,
        )
    return VideoSink(
        target,
        fps=fps,
        width=width,
        height=height,
        bit_depth=bit_depth,
        overwrite=overwrite,
        crf=crf,
        codec=codec,
        tracks_from=None if tracks_from is None else absolute_path(tracks_from),
        metadata_from=absolute_path(metadata_from) if isinstance(metadata_from, (str, Path)) else metadata_from,
    )
