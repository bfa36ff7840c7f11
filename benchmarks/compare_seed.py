"""Time the seed "AMT VFI" node and our engine side by side, interleaved, on the same stand-in weights.

    SEED_RUN=".seedkit/run.sh" python benchmarks/compare_seed.py --repeats 3

SEED_RUN is a command that runs ../shared/bench/seed_node_run.py with AMT_REF / AMT_REF_NODE set to
public checkouts of MCG-NKU/AMT and the seed pack (they are only run, never part of this project).
Prints a Markdown table of medians: seconds per new frame, peak RSS, and our speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_engine import make_checkpoint, parse_case

HERE = Path(__file__).resolve().parent
CASES = ["256x448x4:2", "256x448x4:4", "720x1280x2:2"]


def run_seed(case: str, threads: int) -> dict:
    height, width, frames, multiplier = parse_case(case)
    command = shlex.split(os.environ.get("SEED_RUN", "python3 ../shared/bench/seed_node_run.py"))
    command += ["amt-s.pth", str(frames), str(height), str(width), str(multiplier), str(threads), "cpu"]
    done = subprocess.run(command, capture_output=True, text=True)
    line = next((x for x in done.stdout.splitlines() if x.startswith("seed ")), None)
    if line is None:
        raise RuntimeError(f"seed run failed: {done.stderr[-500:]}")
    return {key: float(value) for key, value in re.findall(r"(\w+)=([\d.]+)", line)}


def run_ours(case: str, threads: int, checkpoint: Path) -> dict:
    command = [sys.executable, str(HERE / "bench_engine.py"), "--one", "--case", case]
    command += ["--checkpoint", str(checkpoint), "--threads", str(threads)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"engine run failed: {done.stderr[-500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", action="append")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    cases = args.case or CASES
    seed: dict[str, list[dict]] = {case: [] for case in cases}
    ours: dict[str, list[dict]] = {case: [] for case in cases}
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = make_checkpoint("amt-s", Path(folder))
        for _ in range(args.repeats):
            for case in cases:
                seed[case].append(run_seed(case, args.threads))
                ours[case].append(run_ours(case, args.threads, checkpoint))
    print("| case (HxWxframes:mult) | seed s/new frame | ours s/new frame | speed-up | seed RSS GB | ours RSS GB |")
    print("|---|---|---|---|---|---|")
    for case in cases:
        seed_time = statistics.median(r["sec_per_new_frame"] for r in seed[case])
        our_time = statistics.median(r["sec_per_new_frame"] for r in ours[case])
        seed_rss = max(r["peak_rss_gb"] for r in seed[case])
        our_rss = max(r["peak_rss_gb"] for r in ours[case])
        speedup = seed_time / our_time
        print(f"| {case} | {seed_time:.3f} | {our_time:.3f} | {speedup:.2f}x | {seed_rss:.2f} | {our_rss:.2f} |")


if __name__ == "__main__":
    main()
