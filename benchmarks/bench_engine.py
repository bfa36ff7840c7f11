"""Time the engine (and a naive baseline) on AMT stand-in weights; each case in a fresh process.

    python benchmarks/bench_engine.py                          # CPU table, AMT-S, 2 threads
    python benchmarks/bench_engine.py --device cuda --precision fp16 --case 1080x1920x16:2
    python benchmarks/bench_engine.py --naive --case 720x1280x2:2

A case is HxWxFRAMES:MULTIPLIER. Frames are a smooth random texture moving (3, 5) px per frame (seed 7),
the same kind of input ../shared/bench/seed_node_run.py times. Prints one JSON object per line and case,
with kind (engine or naive), case, seconds, new_frames, sec_per_new_frame, output_fps, peak_rss_gb
(and on a GPU peak_cuda_gb and the card's name).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import torch
import torch.nn.functional as F

DEFAULT_CASES = ["256x448x4:2", "256x448x4:4", "720x1280x2:2", "1080x1920x2:2", "2160x3840x2:2"]


def moving_texture(count: int, height: int, width: int, seed: int = 7, step: tuple[int, int] = (3, 5)) -> torch.Tensor:
    """count x H x W x 3 frames of one texture shifted by `step` pixels per frame."""
    generator = torch.Generator().manual_seed(seed)
    big_h, big_w = height + step[0] * count + 8, width + step[1] * count + 8
    base = torch.rand(1, 3, big_h // 4 + 2, big_w // 4 + 2, generator=generator)
    base = F.interpolate(base, size=(big_h, big_w), mode="bicubic", align_corners=False)
    base = base + 0.15 * torch.rand(1, 3, big_h, big_w, generator=generator)
    base = (base - base.min()) / (base.max() - base.min())
    crops = [base[0, :, i * step[0] : i * step[0] + height, i * step[1] : i * step[1] + width] for i in range(count)]
    return torch.stack(crops).permute(0, 2, 3, 1).contiguous()


def write_clip(path: Path, frames: int, height: int, width: int, step: tuple[int, int] = (3, 5)) -> None:
    """An H.264 clip of `moving_texture` at 24 fps (through the project's own sink)."""
    from amt_vfi.media import open_sink

    with open_sink(path, fps=Fraction(24), width=width, height=height) as sink:
        for frame in moving_texture(frames, height, width, step=step):
            sink.write(frame.mul(255).round().byte().numpy())


def parse_case(text: str) -> tuple[int, int, int, int]:
    size, multiplier = text.split(":")
    height, width, frames = (int(v) for v in size.split("x"))
    return height, width, frames, int(multiplier)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_engine(args: argparse.Namespace, checkpoint: Path, frames: torch.Tensor, multiplier: int) -> int:
    import amt_vfi

    engine = amt_vfi.Interpolator(
        checkpoint,
        device=args.device,
        precision=args.precision,
        correlation=args.correlation,
        scale_factor=args.scale,
        autotune=args.autotune,
        compile=args.compile,
    )
    plan = amt_vfi.multiplier_plan(frames.shape[0], multiplier)
    produced = 0
    for _ in engine.run(iter(frames), plan):
        produced += 1
    return produced


def run_naive(args: argparse.Namespace, checkpoint: Path, frames: torch.Tensor, multiplier: int) -> int:
    """One full forward per time step, all-pairs correlation, no batching: the reference's way."""
    import amt_vfi
    from amt_vfi.engine import padding_for, resolve_device

    device = resolve_device(args.device)
    model = amt_vfi.load_model(checkpoint, device=device)
    model.correlation_mode = "all-pairs"
    padding = padding_for(frames.shape[1], frames.shape[2])
    produced = 1
    with torch.inference_mode():
        for index in range(frames.shape[0] - 1):
            pair = [padding.apply(frames[i].permute(2, 0, 1)[None].to(device)) for i in (index, index + 1)]
            for step in range(1, multiplier):
                embt = torch.full((1, 1, 1, 1), step / multiplier, device=device)
                padding.crop(model(pair[0], pair[1], embt)).cpu()
                produced += 1
            produced += 1
    return produced


def one_case(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    height, width, count, multiplier = parse_case(args.case[0])
    frames = moving_texture(count, height, width)
    checkpoint = Path(args.checkpoint)
    runner = run_naive if args.naive else run_engine
    device = torch.device("cuda" if args.device == "cuda" else "cpu")
    if device.type == "cuda" and args.gpu_memory_gb:
        # A smaller card, simulated: the allocator refuses more, and the engine's budget follows.
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, args.gpu_memory_gb * 2**30 / total))
    if args.warmup:
        # One pair with the case's multiplier, so every layer shape of the timed run has been seen once.
        runner(args, checkpoint, frames[:2], multiplier)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    _sync(device)
    start = time.perf_counter()
    produced = runner(args, checkpoint, frames, multiplier)
    _sync(device)
    seconds = time.perf_counter() - start
    new_frames = (count - 1) * (multiplier - 1)
    result = {
        "kind": "naive" if args.naive else "engine",
        "case": args.case[0],
        "variant": args.variant,
        "precision": args.precision,
        "autotune": args.autotune,
        "compile": args.compile,
        "gpu_memory_gb": args.gpu_memory_gb,
        "seconds": round(seconds, 4),
        "output_frames": produced,
        "new_frames": new_frames,
        "sec_per_new_frame": round(seconds / new_frames, 4),
        "output_fps": round(produced / seconds, 2),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 3),
    }
    if device.type == "cuda":
        result["peak_cuda_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 3)
        result["gpu"] = torch.cuda.get_device_name()
    print(json.dumps(result), flush=True)


def make_checkpoint(variant: str, folder: Path) -> Path:
    from amt_vfi.checkpoints import standin_state_dict

    path = folder / f"{variant}.pth"
    torch.save({"state_dict": standin_state_dict(variant)}, path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", action="append", help=f"HxWxFRAMES:MULT (default {' '.join(DEFAULT_CASES)})")
    parser.add_argument("--variant", default="amt-s", choices=["amt-s", "amt-l", "amt-g"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--correlation", default="auto")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--naive", action="store_true", help="time the naive baseline instead of the engine")
    parser.add_argument("--warmup", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--autotune",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the CLI's process-wide switches: cuDNN autotuning, or on a CPU keeping freed memory for reuse",
    )
    parser.add_argument("--compile", action="store_true", help="run the engine's decoders through torch.compile")
    parser.add_argument("--gpu-memory-gb", type=float, help="let the process use no more of the GPU than this")
    parser.add_argument("--checkpoint", help="stand-in weights are made when omitted")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one_case(args)
        return
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = args.checkpoint or str(make_checkpoint(args.variant, Path(folder)))
        for case in args.case or DEFAULT_CASES:
            command = [sys.executable, __file__, "--one", "--case", case, "--checkpoint", checkpoint]
            for flag in ("variant", "device", "precision", "correlation", "scale", "threads"):
                command += [f"--{flag}", str(getattr(args, flag))]
            command += ["--naive"] if args.naive else []
            command += [] if args.warmup else ["--no-warmup"]
            command += [] if args.autotune else ["--no-autotune"]
            command += ["--compile"] if args.compile else []
            command += ["--gpu-memory-gb", str(args.gpu_memory_gb)] if args.gpu_memory_gb else []
            done = subprocess.run(command, capture_output=True, text=True)
            print(done.stdout.strip() or f'{{"case": "{case}", "error": {json.dumps(done.stderr[-400:])}}}', flush=True)


if __name__ == "__main__":
    main()
