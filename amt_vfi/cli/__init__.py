"""The `amt-vfi` command line.

`main` loads the command itself (and with it torch, which takes a moment) only when it is called, so a
Ctrl-C during that start still ends in one line instead of a traceback.
"""

from __future__ import annotations

import sys

#: The exit status of a job stopped by Ctrl-C or SIGTERM (128 + SIGINT, as shells report it).
INTERRUPTED = 130


def interrupted(kept: str = "no output was written") -> int:
    """Say that the job was stopped and what is left of it; the exit status to return."""
    print(f"amt-vfi: interrupted; {kept}", file=sys.stderr)
    return INTERRUPTED


def main(argv: list[str] | None = None) -> int:
    """Run `amt-vfi` with `argv` (default: the process's arguments) and return its exit status."""
    try:
        from .app import main as run
    except KeyboardInterrupt:
        return interrupted()
    return run(argv)


def __getattr__(name: str) -> object:
    """`build_parser` (the command's arguments, e.g. for documentation tools), loaded on first use."""
    if name == "build_parser":
        from .app import build_parser

        return build_parser
    raise AttributeError(f"module 'amt_vfi.cli' has no attribute {name!r}")


__all__ = ["build_parser", "main"]
