"""Atomic outputs: build the result in a hidden temp next to the destination, rename it into place at the end.

A crash or Ctrl-C therefore never leaves a half-written video or folder under the requested name, and an
existing output is only replaced once the new one is complete. Temps are named ``.NAME.partial-XXXXXXXX``
in the destination's folder so the final rename stays on one file system.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

from ..errors import some_of
from ..temp_files import new_sibling
from .errors import OutputExistsError, OutputWriteError, translate_errors
from .naming import is_frame_file


def is_vacant(path: Path) -> bool:
    """True when writing to ``path`` destroys nothing: it is absent or an empty folder."""
    if not os.path.lexists(path):
        return True
    return path.is_dir() and not path.is_symlink() and not any(path.iterdir())


# Files that file managers leave in any folder they show (macOS, Windows).
_SYSTEM_CLUTTER = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})


def _foreign_entries(folder: Path) -> list[str]:
    """What in `folder` is neither a frame of an earlier output nor a file manager's clutter."""
    return sorted(
        entry.name
        for entry in folder.iterdir()
        if not (
            entry.is_file()
            and (is_frame_file(entry.name) or entry.name in _SYSTEM_CLUTTER or entry.name.startswith("._"))
        )
    )


def check_destination(path: Path, overwrite: bool) -> None:
    """Refuse to clobber an existing output unless the user asked for it, and even then a folder holding
    anything but frames: `-o ~/Videos --overwrite` must not delete the videos."""
    if is_vacant(path):
        return
    if not overwrite:
        raise OutputExistsError(f"Output {path} already exists; use --overwrite (overwrite=True) to replace it")
    if path.is_dir() and not path.is_symlink():
        foreign = _foreign_entries(path)
        if foreign:
            raise OutputExistsError(
                f"Output folder {path} holds files amt-vfi did not write ({some_of(foreign, 3)}); it replaces a "
                "folder only when it holds nothing but the frame_NNNNNN.png (or .dpx) pictures of an earlier "
                "output: choose a new or empty folder"
            )


def make_temp(path: Path, *, directory: bool) -> Path:
    """Create the temp that stands in for ``path`` (a folder or a file) until :func:`commit`."""
    message = f"Cannot create a temporary output next to {path}; check permissions"
    with translate_errors(OutputWriteError, message):
        path.parent.mkdir(parents=True, exist_ok=True)
        return new_sibling(path, "partial", directory=directory)


def discard(temp: Path) -> None:
    """Remove a temp file or folder; used on failure, so it never raises."""
    if temp.is_dir() and not temp.is_symlink():
        shutil.rmtree(temp, ignore_errors=True)
    else:
        temp.unlink(missing_ok=True)


@contextlib.contextmanager
def signals_held(deliver: bool = True) -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM, delivered as soon as the block ends (or dropped, without `deliver`):
    between the renames of a swap, an interruption would leave neither the old output nor the new one in
    place. Only the main thread can change signal handlers, and only it receives Python's signals."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    # A handler installed outside Python (getsignal gives None) is left alone: it could not be put back.
    handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    previous = {number: handler for number, handler in handlers.items() if handler is not None}
    for number in previous:
        signal.signal(number, lambda received, frame: held.append(received))
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if held and deliver:
            signal.raise_signal(held[0])


def commit(temp: Path, path: Path, *, overwrite: bool) -> None:
    """Move ``temp`` to ``path``, replacing an existing output only when ``overwrite`` is set.

    ``rename`` replaces a file or an empty folder atomically; a non-empty folder (or a file replaced by a
    folder and vice versa) is first moved aside, so the old output is restored if the swap fails.
    """
    check_destination(path, overwrite)
    with (
        translate_errors(OutputWriteError, f"Cannot move the finished output into place at {path}"),
        signals_held(),
    ):
        same_kind = path.is_file() if temp.is_file() else is_vacant(path)
        if not os.path.lexists(path) or same_kind:
            os.replace(temp, path)
            return
        aside = new_sibling(path, "old", directory=True)
        os.rename(path, aside / path.name)
        try:
            os.rename(temp, path)
        except BaseException:
            os.rename(aside / path.name, path)
            aside.rmdir()
            raise
        shutil.rmtree(aside, ignore_errors=True)


@contextlib.contextmanager
def atomic_output(path: Path, *, overwrite: bool, directory: bool) -> Iterator[Path]:
    """A temp to build ``path`` in: moved into place when the block ends normally, removed otherwise."""
    check_destination(path, overwrite)
    temp = make_temp(path, directory=directory)
    try:
        yield temp
        commit(temp, path, overwrite=overwrite)
    except BaseException:
        discard(temp)
        raise
