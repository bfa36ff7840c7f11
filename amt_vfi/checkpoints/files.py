"""Writing a checkpoint file so that a reader never sees half of it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from ..temp_files import new_sibling


@contextlib.contextmanager
def written_atomically(target: Path) -> Iterator[Path]:
    """A temp file next to `target` for the block to write; when the block succeeds it replaces `target`
    (readable like any new file, so a shared models folder stays shared), otherwise it is removed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = new_sibling(target, "partial", directory=False)
    try:
        yield temp
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
