"""Loaded networks kept per (file, device, dtype), so repeated runs do not re-read checkpoints."""

from __future__ import annotations

import threading
from pathlib import Path

import torch

from ..checkpoints import load_model
from ..network import AMT

_models: dict[tuple, AMT] = {}
_lock = threading.Lock()


def _key(path: Path, device: torch.device, dtype: torch.dtype) -> tuple:
    stat = path.stat()
    # The inode and change time too: a file replaced by one of the same size and copied mtime is new.
    return (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_ctime_ns, str(device), dtype)


def cached_model(path: str | Path, device: torch.device, dtype: torch.dtype) -> AMT:
    """The network for this checkpoint on this device and dtype; a changed file is read again."""
    path = Path(path)
    key = _key(path, device, dtype)
    with _lock:
        model = _models.get(key)
        if model is None:
            stale = [k for k in _models if k[0] == key[0] and k[1:3] != key[1:3]]
            for old in stale:
                del _models[old]
            model = _models[key] = load_model(path, device=device, dtype=dtype)
        return model


def release_models() -> int:
    """Drop every cached network (frees its memory once nothing else holds it); returns how many."""
    with _lock:
        count = len(_models)
        _models.clear()
    return count
