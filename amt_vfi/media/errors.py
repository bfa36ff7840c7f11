"""Errors raised by the media layer.

Every failure that reaches the CLI is a :class:`MediaError` whose message names the path involved and
says what to do, so raw PyAV/Pillow exceptions never surface to users.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import av

from ..errors import AmtVfiError


class MediaError(AmtVfiError):
    """Base class of every error raised by ``amt_vfi.media``."""


class InputNotFoundError(MediaError, FileNotFoundError):
    """The input path does not exist."""


class UnreadableInputError(MediaError):
    """The input exists but cannot be decoded as video or images."""


class NotEnoughFramesError(MediaError):
    """Interpolation needs at least two frames."""


class InconsistentFramesError(MediaError):
    """Frames of one input differ in size."""


class OutputExistsError(MediaError, FileExistsError):
    """The output exists and overwriting was not requested."""


class UnsupportedOutputError(MediaError):
    """The requested output format or codec cannot be written."""


class OutputWriteError(MediaError):
    """Encoding, muxing or the final rename failed."""


# Exceptions the libraries (and the file system) raise for bad or unsupported data.
LIBRARY_ERRORS = (av.FFmpegError, OSError, ValueError, EOFError)


@contextmanager
def translate_errors(error: type[MediaError], message: str) -> Iterator[None]:
    """Re-raise library errors as ``error`` with ``message`` plus the library's reason."""
    try:
        yield
    except MediaError:
        raise
    except LIBRARY_ERRORS as exc:
        raise error(f"{message} ({exc})") from exc
