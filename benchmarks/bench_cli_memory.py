"""Peak memory of the CLI on a short and a long clip: streaming means it must not grow with length.

    python benchmarks/bench_cli_memory.py [--frames 20 200] [--size 360x640]

Each run is `amt-vfi clip.mp4 -o out.mp4 --multiplier 2` in a fresh process on stand-in AMT-S weights;
prints the peak RSS of each and their ratio.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_engine import make_checkpoint, write_clip

# Runs the CLI in-process and reports that process's own peak RSS on exit. The high-water mark is reset
# first: a forked child starts out counting its parent's pages (here the parent made the clips).
MEASURE = """
import runpy, sys
with open("/proc/self/clear_refs", "w") as refs:
    refs.write("5")
sys.argv = ["amt-vfi", *sys.argv[1:]]
try:
    runpy.run_module("amt_vfi", run_name="__main__")
except SystemExit as done:
    assert not done.code, done.code
with open("/proc/self/status") as status:
    print(next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")))
"""


def peak_rss_of(arguments: list[str], env: dict[str, str]) -> float:
    """Peak RSS (GB) of a CLI run in a fresh process."""
    done = subprocess.run([sys.executable, "-c", MEASURE, *arguments], env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(done.stderr[-500:])
    return int(done.stdout.split()[-1]) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[20, 200])
    parser.add_argument("--size", default="360x640", help="HxW, as the other benchmarks")
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        make_checkpoint("amt-s", work)
        env = {**os.environ, "AMT_VFI_MODELS": str(work)}
        peaks = {}
        for count in args.frames:
            clip = work / f"clip{count}.mp4"
            write_clip(clip, count, height, width)
            peaks[count] = peak_rss_of([str(clip), "-o", str(work / f"out{count}.mp4"), "-q"], env)
            print(f"{count} frames {width}x{height}: peak RSS {peaks[count]:.3f} GB", flush=True)
    longest, shortest = max(peaks), min(peaks)
    print(f"ratio {longest} / {shortest} frames: {peaks[longest] / peaks[shortest]:.3f}")


if __name__ == "__main__":
    main()
