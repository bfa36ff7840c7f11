"""Keeping freed memory in the process, so CPU interpolation does not page-fault all the time.

At 720p a decoder layer allocates tensors of tens of MB. glibc returns blocks that large to the kernel
when they are freed (mmap, heap trimming), so every new one is page-faulted and zeroed again: about a
third of the CPU time of a 720p frame, half at 4K. Serving them from the heap and keeping the heap
measured 1.5x faster at 720p and 1.8x at 1080p, for 10-20% more peak memory (more above 1080p: 6.7 instead
of 4.9 GB for a 4K pair, so the engine only keeps memory up to 1080p). This is process-wide: callers
that own the process switch it on for good (the CLI and Ray workers, through `Interpolator(autotune=True)`);
other callers' streams (`Interpolator.run`, so the ComfyUI node) keep memory only while they run and
hand it back at the end.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from collections.abc import Iterator

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_KEPT = {"trim": 2**31 - 1, "mmap_max": 0}
_DEFAULT = {"trim": 128 * 1024, "mmap_max": 65536}  # glibc's own defaults
DISABLE_VARIABLE = "AMT_VFI_RETURN_FREED_MEMORY"
# Frames up to this many pixels (padded 1080p) are interpolated with freed memory kept.
KEEP_FREED_MEMORY_PIXELS = 1088 * 1920

_requested = False  # what the process asked for through keep_freed_memory()
_state: bool | None = None  # what glibc is set to now (None: never touched)


def _libc() -> ctypes.CDLL | None:
    if os.environ.get(DISABLE_VARIABLE) == "1" or not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None)
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None  # glibc; not musl


def _apply(keep: bool) -> bool:
    global _state
    if _state == keep or (_state is None and not keep):
        return keep
    libc = _libc()
    if libc is None:
        return False
    settings = _KEPT if keep else _DEFAULT
    applied = bool(libc.mallopt(_M_MMAP_MAX, settings["mmap_max"])) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, settings["trim"])
    )
    if not keep:
        libc.malloc_trim(0)
    _state = keep if applied else None
    return keep and applied


def keep_freed_memory(keep: bool = True) -> bool:
    """For the whole process: ask glibc to serve large blocks from its heap and keep freed memory for
    reuse (`keep`), or to go back to its defaults and hand what it holds back to the system.

    Returns whether freed memory is kept now: never on other C libraries or systems, nor when the
    environment variable AMT_VFI_RETURN_FREED_MEMORY=1 asks for the default behaviour.
    """
    global _requested
    _requested = keep
    return _apply(keep)


@contextlib.contextmanager
def freed_memory_kept() -> Iterator[bool]:
    """Keep freed memory while the block runs (a stream of frames), then return to what the process
    asked for, handing the kept memory back to the system. Yields whether memory is kept."""
    kept = _apply(True)
    try:
        yield kept
    finally:
        _apply(_requested)
