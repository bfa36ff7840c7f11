"""Writing a checkpoint file so that a reader never sees half of it."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _new_file_mode() -> int:
    """The permissions a plain new file gets under the process's umask (temp files are private, 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def written_atomically(target: Path) -> Iterator[Path]:
    """A temp file next to `target` for the block to write; when the block succeeds it replaces `target`
    (readable like any new file, so a shared models folder stays shared), otherwise it is removed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    os.close(handle)
    temp = Path(name)
    try:
        yield temp
        os.chmod(temp, _new_file_mode())
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
