"""The `amt-vfi` command line.

`main` loads the command itself (and with it torch, which takes a moment) only when it is called, so a
Ctrl-C during that start still ends in one line instead of a traceback.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Run `amt-vfi` with `argv` (default: the process's arguments) and return its exit status."""
    try:
        from .app import main as run
    except KeyboardInterrupt:
        print("amt-vfi: interrupted; no output was written", file=sys.stderr)
        return 130
    return run(argv)


def __getattr__(name: str) -> object:
    """`build_parser` (the command's arguments, e.g. for documentation tools), loaded on first use."""
    if name == "build_parser":
        from .app import build_parser

        return build_parser
    raise AttributeError(f"module 'amt_vfi.cli' has no attribute {name!r}")


__all__ = ["build_parser", "main"]
