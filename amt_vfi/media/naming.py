"""The names of an image-folder output's frames: ``frame_000000.png``, ``frame_000001.png``, ... (six
digits, zero-based, so the number is the frame index; more digits appear past 999999 and natural
sorting keeps the order), ``.dpx`` for DPX sequences."""

from __future__ import annotations

import re

FRAME_SUFFIXES = (".png", ".dpx")

_FRAME_FILE = re.compile(r"frame_\d{6,}(?:" + "|".join(re.escape(suffix) for suffix in FRAME_SUFFIXES) + ")")


def frame_file_name(index: int, suffix: str = ".png") -> str:
    return f"frame_{index:06d}{suffix}"


def is_frame_file(name: str) -> bool:
    """True for a name `frame_file_name` gives, the files an earlier output of amt-vfi consists of."""
    return _FRAME_FILE.fullmatch(name) is not None
