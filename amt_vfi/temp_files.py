"""Hidden temp files and folders next to a destination, so the final rename stays on one file system.

Shared by the checkpoint downloads and the media outputs; free of PyAV and torch so both can use it.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def new_sibling(path: Path, tag: str, *, directory: bool) -> Path:
    """Create a new, uniquely named hidden file or folder ``.NAME.TAG-XXXXXXXX`` next to ``path``, with the
    permissions any new file or folder gets (the umask's), not a private temp's."""
    while True:
        candidate = path.with_name(f".{path.name}.{tag}-{secrets.token_hex(4)}")
        try:
            if directory:
                candidate.mkdir()
            else:
                os.close(os.open(candidate, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            continue
        return candidate


def sibling_pattern(name: str, tag: str) -> str:
    """The glob pattern of the siblings `new_sibling` makes for a file called `name` (`*` for any file)."""
    return f".{name}.{tag}-*"
