"""Convert an AMT checkpoint to .safetensors after verifying it: `python -m amt_vfi.convert SRC DST`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .checkpoints import convert_to_safetensors
from .errors import AmtVfiError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m amt_vfi.convert", description=__doc__)
    parser.add_argument("source", type=Path, help="an AMT checkpoint (.pth or .safetensors)")
    parser.add_argument("destination", type=Path, help="the .safetensors file to write")
    parser.add_argument("--overwrite", action="store_true", help="replace DESTINATION if it exists")
    args = parser.parse_args(argv)
    try:
        spec = convert_to_safetensors(args.source, args.destination, overwrite=args.overwrite)
    except AmtVfiError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {args.destination} ({spec.name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
