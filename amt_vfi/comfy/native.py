"""AMT for ComfyUI core's native frame interpolation nodes.

Core (2026) has `FrameInterpolationModelLoader` -> FRAME_INTERPOLATION_MODEL -> `FrameInterpolate`, for
RIFE and FILM. `FrameInterpolate` receives a ModelPatcher, loads it with `load_model_gpu`, reads
`model_dtype()` (the wrapped module's `get_dtype()`), and drives the wrapped module by duck typing:

- `pad_align`: frames are padded (reflect, bottom/right) to a multiple of it when it is above 1;
- `extract_features(frame)` once per frame (1 x C x H x W), stored in a dict passed as `cache=`
  (`cache["img0"]`, `cache["img1"]`, the second reused as the next pair's first);
- `forward_multi_timestep(img0, img1, [t, ...], cache=...)` when present: all time steps of one pair,
  returning T x C x H x W; else `forward(img0, img1, timestep=T x 1 x H x W, cache=...)` on the pair
  expanded to T rows, in chunks that shrink on out-of-memory.

`AMTFrameInterpolationModel` implements that contract on the engine the AMT VFI node and the CLI use
(`Interpolator.interpolate_pair`): the pair is encoded once (both encoders and the correlation) and
decoded for every time step, with the engine's checks and out-of-memory fallbacks. AMT normalises a
pair by the joint mean of both frames, so nothing per frame can be precomputed: `extract_features`
returns the frame itself. `pad_align` is 1 because the adapter pads itself, the seed node's way (edge
replication, centred) and to the network's minimum size, so core's node gives the same frames as
"AMT VFI" for the same input (core's reflect padding to 16 would not cover frames below 128 px).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..checkpoints import load_model
from ..engine.devices import PRECISION_CHOICES, PRECISIONS, resolve_precision
from ..engine.interpolator import Interpolator
from ..engine.memory import check_correlation
from ..engine.padding import usable_scale_factor
from ..errors import InputError
from ..network import AMT
from . import host, models
from .inputs import QueueTimeValidation, correlation_input, scale_factor_input


def _row_times(timestep: object, rows: int) -> list[float]:
    """One time per row from a float, a sequence, or core's B x 1 x H x W (or B x 1 x 1 x 1) tensor."""
    if isinstance(timestep, torch.Tensor):
        flat = timestep.detach().float().reshape(timestep.shape[0], -1) if timestep.dim() else timestep.view(1, 1)
        values = flat.mean(dim=1).tolist()
        return values * rows if len(values) == 1 else values
    if isinstance(timestep, (list, tuple)):
        return [float(t) for t in timestep]
    return [float(timestep)] * rows


def _rows_identical(x: torch.Tensor) -> bool:
    return x.shape[0] == 1 or x.stride(0) == 0 or bool(torch.equal(x[:1].expand_as(x), x))


def _precision_name(dtype: torch.dtype) -> str:
    return next(name for name, value in PRECISIONS.items() if value == dtype)


class AMTFrameInterpolationModel(nn.Module):
    """AMT as the FRAME_INTERPOLATION_MODEL core's FrameInterpolate drives (see the module docstring)."""

    pad_align = 1  # padding happens inside, as the seed node pads

    def __init__(self, amt: AMT, correlation: str = "auto", scale_factor: float = 1.0) -> None:
        super().__init__()
        check_correlation(correlation)
        self.amt = amt
        self.correlation = correlation
        self.scale_factor = usable_scale_factor(scale_factor)
        self._engine: Interpolator | None = None

    def get_dtype(self) -> torch.dtype:
        return self.amt.comb_block[0].weight.dtype

    def extract_features(self, img: torch.Tensor) -> torch.Tensor:
        """Nothing to precompute per frame (AMT needs both frames of a pair): the frame itself."""
        return img

    def forward(
        self, img0: torch.Tensor, img1: torch.Tensor, timestep: object = 0.5, cache: dict | None = None
    ) -> torch.Tensor:
        """Rows of (img0, img1, time) -> B x C x H x W. Rows of one pair (core expands the pair) share
        one encoding."""
        rows = img0.shape[0]
        times = _row_times(timestep, rows)
        if len(times) != rows:
            raise ValueError(f"{len(times)} time steps for {rows} frame pairs")
        if _rows_identical(img0) and _rows_identical(img1):
            return self._frames_at(img0[:1], img1[:1], times)
        return torch.cat([self._frames_at(img0[i : i + 1], img1[i : i + 1], [times[i]]) for i in range(rows)])

    def forward_multi_timestep(
        self, img0: torch.Tensor, img1: torch.Tensor, timesteps: Sequence[float], cache: dict | None = None
    ) -> torch.Tensor:
        """All `timesteps` between one pair (1 x C x H x W each) -> T x C x H x W, encoding the pair once.
        With several pairs, the result is pair-major (all times of pair 0 first)."""
        times = [float(t) for t in timesteps]
        return torch.cat([self._frames_at(img0[i : i + 1], img1[i : i + 1], times) for i in range(img0.shape[0])])

    def _interpolator(self, device: torch.device) -> Interpolator:
        """The engine on the frames' device (where ComfyUI loaded the model); it keeps what it learns,
        such as a smaller time-step batch after running out of memory."""
        if self._engine is None or self._engine.device != device:
            self._engine = Interpolator(
                self.amt,
                device=device,
                precision=_precision_name(self.get_dtype()),
                correlation=self.correlation,
                scale_factor=self.scale_factor,
                between_batches=host.throw_if_interrupted,
            )
        return self._engine

    def _frames_at(self, img0: torch.Tensor, img1: torch.Tensor, times: list[float]) -> torch.Tensor:
        """T x C x H x W float32 on the CPU: the engine hands its frames back there, and core's node
        collects them there (its offload device), so they are not copied back to the GPU in between."""
        if img0.dim() != 4 or img0.shape[1] < 3 or img0.shape != img1.shape:
            raise InputError(
                "expected two 1 x C x H x W frames (C >= 3) of one size, "
                f"got {tuple(img0.shape)} and {tuple(img1.shape)}"
            )
        if any(math.isnan(t) for t in times):
            raise InputError(f"time steps must be numbers from 0 to 1, got {times}")
        channels, height, width = img0.shape[1:]
        out = torch.empty((len(times), channels, height, width), dtype=torch.float32)
        inside = [i for i, t in enumerate(times) if 0.0 < t < 1.0]
        for i, t in enumerate(times):  # the ends are the inputs (AMT itself gives NaN at exactly 0 and 1)
            if t <= 0.0:
                out[i] = img0[0]
            elif t >= 1.0:
                out[i] = img1[0]
        if inside:
            inside_times = [times[i] for i in inside]
            engine = self._interpolator(img0.device)
            frames = engine.interpolate_pair(img0[0].movedim(0, -1), img1[0].movedim(0, -1), inside_times)
            out[inside, :3] = frames.movedim(-1, 1)
            if channels > 3:  # alpha and other extra channels: blended linearly
                weights = torch.tensor(inside_times, dtype=torch.float32).view(-1, 1, 1, 1)
                out[inside, 3:] = (1 - weights) * img0[:, 3:].float().cpu() + weights * img1[:, 3:].float().cpu()
        return out


class AMTModelLoader(QueueTimeValidation):
    """Loads an AMT checkpoint as a FRAME_INTERPOLATION_MODEL for core's "Frame Interpolate" node."""

    CATEGORY = "loaders"
    FUNCTION = "load"
    RETURN_TYPES = ("FRAME_INTERPOLATION_MODEL",)
    OUTPUT_TOOLTIPS = ("AMT for ComfyUI's native 'Frame Interpolate' node.",)

    DESCRIPTION = (
        "AMT (All-Pairs Multi-Field Transforms) for ComfyUI's native Frame Interpolate node, beside RIFE "
        "and FILM. Same checkpoints and folders as the AMT VFI node."
    )

    @classmethod
    def INPUT_TYPES(cls):  # noqa: N802
        return {
            "required": {
                "ckpt_name": (
                    models.checkpoint_names(),
                    {
                        "default": "amt-s.pth",
                        "tooltip": "AMT checkpoint (models/frame_interpolation/amt/); official ones are "
                        "downloaded on first use. The variant (S, L, G) is read from the weights.",
                    },
                ),
            },
            "optional": {
                "precision": (
                    list(PRECISION_CHOICES),
                    {
                        "default": "auto",
                        "tooltip": "auto: fp16 where ComfyUI finds half precision fast (most NVIDIA GPUs), "
                        "else fp32. fp32 matches the AMT VFI node's default results.",
                    },
                ),
                "correlation": correlation_input(),
                "scale_factor": scale_factor_input(),
            },
        }

    def load(
        self, ckpt_name: str, precision: str = "auto", correlation: str = "auto", scale_factor: float = 1.0
    ) -> tuple[Any]:
        """The checkpoint as core's FRAME_INTERPOLATION_MODEL (a ModelPatcher inside ComfyUI)."""
        path = models.resolve(ckpt_name)
        load_device = host.torch_device()
        offload = host.offload_device()
        if precision == "auto":
            dtype = torch.float16 if host.prefers_fp16(load_device) else torch.float32
        else:
            dtype = resolve_precision(precision, load_device)
        adapter = AMTFrameInterpolationModel(
            load_model(path, device=offload, dtype=dtype), correlation=correlation, scale_factor=scale_factor
        )
        return (host.wrap_model(adapter, load_device, offload),)
