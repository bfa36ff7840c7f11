"""Time our "AMT VFI" ComfyUI node as a workflow calls it, on the frames the seed node is timed on.

    python benchmarks/bench_node.py --case 1080x1920x16:2 --device cuda --precision fp32

The repository root is imported as ComfyUI imports a custom-node folder, outside ComfyUI (so the node
picks CUDA when there is one); the checkpoint is AMT-S stand-in weights in a temporary AMT_VFI_MODELS.
Prints one JSON object like bench_engine.py's, with kind "node". One warm-up call on the first pair.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch
from bench_engine import make_checkpoint, moving_texture, parse_case

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from comfy_pack import load_pack  # noqa: E402 - the root imported as ComfyUI imports a node folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", default="256x448x4:2", help="HxWxFRAMES:MULT")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (the node's own choice outside ComfyUI)")
    parser.add_argument("--precision", default="fp32", help="the node's precision input")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before torch touches CUDA: the node then runs on the CPU
    height, width, count, multiplier = parse_case(args.case)
    frames = moving_texture(count, height, width)
    with tempfile.TemporaryDirectory() as folder:
        make_checkpoint("amt-s", Path(folder))
        os.environ["AMT_VFI_MODELS"] = folder
        node = load_pack().NODE_CLASS_MAPPINGS["AMT VFI"]()
        warmup = time.perf_counter()
        node.vfi("amt-s.pth", frames[:2], 10, multiplier, precision=args.precision)
        warmup = time.perf_counter() - warmup  # loading the model, and on a GPU starting CUDA
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        (output,) = node.vfi("amt-s.pth", frames, 10, multiplier, precision=args.precision)
        seconds = time.perf_counter() - start  # the node returns CPU frames: nothing left to wait for
    new_frames = (count - 1) * (multiplier - 1)
    result = {
        "kind": "node",
        "case": args.case,
        "precision": args.precision,
        "warmup_seconds": round(warmup, 3),
        "seconds": round(seconds, 4),
        "output_frames": output.shape[0],
        "new_frames": new_frames,
        "sec_per_new_frame": round(seconds / new_frames, 4),
        "output_fps": round(output.shape[0] / seconds, 2),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 3),
    }
    if cuda:
        result["peak_cuda_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 3)
        result["gpu"] = torch.cuda.get_device_name()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
