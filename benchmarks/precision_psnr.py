"""PSNR of reduced precisions against float32, and float32 against the golden outputs, per device.

    python benchmarks/precision_psnr.py --device cuda

Uses the golden model cases in tests/data (stand-in weights, recipe amt-golden-v1).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from safetensors.torch import load_file

import amt_vfi

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
CASES = {"m1": "amt-s", "m2": "amt-l"}


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.float() - b.float()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    precisions = ["fp32", "bf16"] + (["fp16"] if args.device != "cpu" else [])
    for case, variant in CASES.items():
        data = load_file(str(DATA / f"{case}.safetensors"))
        frames = [data[k][0].permute(1, 2, 0) for k in ("img0", "img1")]
        times = [float(t) for t in data["embt"].flatten()]
        outputs = {}
        for precision in precisions:
            # A network of its own for each precision: the engine converts the one it is given in place, so
            # a shared one would reach fp16 through bf16-rounded weights.
            model = amt_vfi.AMT(amt_vfi.VARIANTS[variant])
            model.load_state_dict(amt_vfi.standin_state_dict(variant))
            engine = amt_vfi.Interpolator(model, device=args.device, precision=precision)
            outputs[precision] = engine.interpolate_pair(*frames, times)
        golden = data["imgt_pred"][0].permute(1, 2, 0)
        diff = (outputs["fp32"][0] - golden).abs()
        print(f"{case} {variant} {args.device} fp32 vs golden: max {diff.max():.2e} mean {diff.mean():.2e}")
        for precision in precisions[1:]:
            value = psnr(outputs[precision], outputs["fp32"])
            print(f"{case} {variant} {args.device} {precision} vs fp32: PSNR {value:.1f} dB")


if __name__ == "__main__":
    main()
