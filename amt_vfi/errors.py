"""Exceptions the front ends turn into clear messages (no traceback for the user)."""

from __future__ import annotations

from collections.abc import Sequence


def some_of(names: Sequence[str], limit: int = 4) -> str:
    """The first `limit` of `names` for a message, and how many more there are."""
    shown = ", ".join(names[:limit])
    return f"{shown} (+{len(names) - limit} more)" if len(names) > limit else shown


class AmtVfiError(Exception):
    """Base class: anything the user can fix from the message alone."""


class CheckpointError(AmtVfiError, ValueError):
    """A checkpoint file that cannot be used: unreadable, unsafe, or not an AMT checkpoint."""


class CheckpointNotFoundError(AmtVfiError, FileNotFoundError):
    """No checkpoint where we looked, and it could not be downloaded."""


class InputError(AmtVfiError, ValueError):
    """Frames, time steps or options that cannot be interpolated as given."""


class OutOfMemoryError(AmtVfiError, MemoryError):
    """Even the smallest batch and the on-demand correlation did not fit on the device."""
