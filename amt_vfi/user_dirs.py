"""Folders named by environment variables, and the user cache shared by checkpoints and compiled kernels.

Free of torch and PyAV, so every part of the package can use it.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "AMT_VFI_CACHE"


def folder_from(variable: str) -> Path | None:
    """The folder an environment variable names, with `~` expanded (shells leave a quoted `~` alone)."""
    value = os.environ.get(variable)
    return Path(value).expanduser() if value else None


def user_cache_dir() -> Path:
    """`$AMT_VFI_CACHE`, else `$XDG_CACHE_HOME/amt-vfi` (an absolute one, as the XDG rules say), else
    `~/.cache/amt-vfi`."""
    chosen = folder_from(CACHE_ENV)
    if chosen is not None:
        return chosen
    xdg = folder_from("XDG_CACHE_HOME")
    return (xdg if xdg is not None and xdg.is_absolute() else Path.home() / ".cache") / "amt-vfi"
