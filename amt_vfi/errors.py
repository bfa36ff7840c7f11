"""Exceptions the front ends turn into clear messages (no traceback for the user)."""

from __future__ import annotations

from collections.abc import Sequence


def some_of(names: Sequence[str], limit: int = 4) -> str:
    """The first `limit` of `names` for a message, and how many more there are."""
    shown = ", ".join(names[:limit])
    return f"{shown} (+{len(names) - limit} more)" if len(names) > limit else shown


def first_line(error: BaseException) -> str:
    """An exception's message cut to its first non-empty line (at most 200 characters) for a one-line
    error, or its type's name where it has no message."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[0][:200] if lines else type(error).__name__


def _package_module(module: str) -> str:
    """'/home/me/ComfyUI/custom_nodes/amt-vfi.amt_vfi.errors' (the package as ComfyUI imports a node folder)
    -> 'amt_vfi.errors': ComfyUI names an error by its class's module, and a path there reads like a crash."""
    _, found, rest = module.rpartition(".amt_vfi.")
    return f"amt_vfi.{rest}" if found else module


class AmtVfiError(Exception):
    """Base class: anything the user can fix from the message alone."""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls.__module__ = _package_module(cls.__module__)


AmtVfiError.__module__ = _package_module(AmtVfiError.__module__)


class CheckpointError(AmtVfiError, ValueError):
    """A checkpoint file that cannot be used: unreadable, unsafe, or not an AMT checkpoint."""


class CheckpointNotFoundError(AmtVfiError, FileNotFoundError):
    """No checkpoint where we looked, and it could not be downloaded."""


class InputError(AmtVfiError, ValueError):
    """Frames, time steps or options that cannot be interpolated as given."""


class OutOfMemoryError(AmtVfiError, MemoryError):
    """Even the smallest batch and the on-demand correlation did not fit on the device."""
