"""Profile one engine pass on CUDA (where the time of a 1080p pair goes).

python benchmarks/profile_gpu.py [--precision fp16] [--no-channels-last] [--correlation on-demand]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, where amt_vfi is not installed

import torch  # noqa: E402
from bench_engine import make_checkpoint, moving_texture  # noqa: E402

import amt_vfi  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--precision", default="fp16")
    parser.add_argument("--size", default="1080x1920")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--correlation", default="auto")
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as folder:
        engine = amt_vfi.Interpolator(
            make_checkpoint("amt-s", Path(folder)),
            device="cuda",
            precision=args.precision,
            channels_last=args.channels_last,
            correlation=args.correlation,
            autotune=True,
        )
    frames = moving_texture(8, height, width)
    plan = amt_vfi.multiplier_plan(8, 2)
    for _ in range(2):
        torch.cuda.synchronize()
        start = time.perf_counter()
        list(engine.run(iter(frames), plan))
        torch.cuda.synchronize()
        seconds = (time.perf_counter() - start) / 7
        print(f"{args.precision} channels_last={args.channels_last} {args.correlation}: {seconds:.4f} s/pair")
    activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=activities) as profile:
        list(engine.run(iter(frames[:3]), amt_vfi.multiplier_plan(3, 2)))
        torch.cuda.synchronize()
    print(profile.key_averages().table(sort_by="cuda_time_total", row_limit=18, max_name_column_width=40))
    print(profile.key_averages().table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=40))


if __name__ == "__main__":
    main()
