"""Throughput of the Ray runner with 1 and 2 local workers, next to one process on the same machine.

python benchmarks/bench_ray.py [--frames 48] [--size 144x256] [--chunk-frames 12] [--checkpoint amt-s.pth]

Without --checkpoint the stand-in amt-s weights are used (same network, same cost). Job times include
starting the workers and loading the model in each; the local Ray start is timed separately.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import ray
from bench_engine import make_checkpoint, write_clip

from amt_vfi.distributed import interpolate_distributed
from amt_vfi.media import open_source
from amt_vfi.pipeline import JobSettings, Timing, plan_for, render


def one_process(clip: Path, output: Path, settings: JobSettings) -> float:
    """The single-process CLI's work: model load, decode, network, encode."""
    start = time.perf_counter()
    with settings.open_source(clip) as source:
        _, plan = plan_for(source, settings.timing)
        with settings.open_output(output, source, overwrite=True) as sink:
            render(settings.engine(), source.frames(), plan, sink, scene_threshold=settings.scene_threshold)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--size", default="144x256", help="HxW")
    parser.add_argument("--chunk-frames", type=int, default=12)
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        checkpoint = args.checkpoint or make_checkpoint("amt-s", work)
        settings = JobSettings(timing=Timing(multiplier=2), checkpoint=checkpoint, device=args.device)
        clip = work / "clip.mp4"
        write_clip(clip, args.frames, height, width, step=(1, 2))  # slow enough to hold no scene cut
        with open_source(clip) as source:
            output_frames = len(plan_for(source, settings.timing)[1])
        rows = [("1 process", "-", one_process(clip, work / "single.mp4", settings))]
        start = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level=logging.WARNING)
        ray_start = time.perf_counter() - start
        try:
            for workers in (1, 2):
                report = interpolate_distributed(
                    clip, work / f"ray{workers}.mp4", settings, workers=workers, chunk_frames=args.chunk_frames
                )
                name = f"Ray, {workers} worker{'s' * (workers > 1)}"
                rows.append((name, str(report.clips[0].chunks), report.seconds))
        finally:
            ray.shutdown()
    print(f"{args.frames} frames {height}x{width} -> {output_frames} (x2), {os.cpu_count()} CPUs, device {args.device}")
    print(f"local Ray start: {ray_start:.1f} s (not included below)")
    print("| run | chunks | seconds | output frames/s | vs 1 worker |")
    print("|---|---|---|---|---|")
    one_worker = rows[1][2]
    for name, chunks, seconds in rows:
        print(f"| {name} | {chunks} | {seconds:.1f} | {output_frames / seconds:.2f} | {one_worker / seconds:.2f}x |")


if __name__ == "__main__":
    main()
