"""The two image encoders: the context pyramid and the correlation feature encoder."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from . import cpu_kernels
from .layers import WinogradConv2d, conv_prelu


class ContextPyramid(nn.Module):
    """Four stride-2 stages giving context features at 1/2, 1/4, 1/8 and 1/16 resolution."""

    def __init__(self, channels: tuple[int, int, int, int], first_kernel: int) -> None:
        super().__init__()
        widths = (3, *channels)
        for level in range(4):
            kernel = first_kernel if level == 0 else 3
            stage = nn.Sequential(
                conv_prelu(widths[level], widths[level + 1], kernel, stride=2),
                conv_prelu(widths[level + 1], widths[level + 1]),
            )
            self.add_module(f"pyramid{level + 1}", stage)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        features = []
        x = image
        for level in range(4):
            x = getattr(self, f"pyramid{level + 1}")(x)
            features.append(x)
        return features


def instance_norm(x: torch.Tensor, relu: bool = False, eps: float = 1e-5) -> torch.Tensor:
    """Per-sample, per-channel normalisation over H x W (biased variance, no parameters), then ReLU if
    asked. `x` may be normalised in place (every caller passes a convolution's fresh output): on a CPU in
    float32 the fused kernel does it in two passes over memory. The statistics are taken in float32: in
    float16 a deviation of 256 already squares to infinity.

    Written out rather than `F.instance_norm`, which hands channels-last input back as channels-first and
    is about twice as slow on it: the memory layout stays as it came.
    """
    if x.dim() == 4 and cpu_kernels.usable(x):
        return cpu_kernels.instance_norm_(x, eps, relu)
    values = x.float()
    centred = values - values.mean(dim=(2, 3), keepdim=True)
    variance = (centred * centred).mean(dim=(2, 3), keepdim=True)
    normalised = centred.mul_(torch.rsqrt(variance + eps))
    return (normalised.relu_() if relu else normalised).to(x.dtype)


class InstanceNorm(nn.Module):
    """`instance_norm` as a module, for the projection shortcut (it owns no checkpoint keys)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return instance_norm(x)


class EncoderBlock(nn.Module):
    """A residual block of the correlation feature encoder: every convolution is followed by instance
    norm and ReLU, the sum with the shortcut by one more ReLU.

    `widths` lists the (kernel, out) of each convolution; the first 3x3 one carries the stride.
    A stride other than 1 gives the shortcut a strided 1x1 projection (checkpoint key `downsample.0`).
    """

    def __init__(self, in_ch: int, widths: list[tuple[int, int]], stride: int) -> None:
        super().__init__()
        channels, pending_stride = in_ch, stride
        for index, (kernel, out_ch) in enumerate(widths, start=1):
            step = pending_stride if kernel == 3 else 1
            pending_stride //= step
            self.add_module(f"conv{index}", WinogradConv2d(channels, out_ch, kernel, step, padding=kernel // 2))
            channels = out_ch
        self.layers = len(widths)
        self.downsample = (
            nn.Identity() if stride == 1 else nn.Sequential(nn.Conv2d(in_ch, channels, 1, stride), InstanceNorm())
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for index in range(1, self.layers + 1):
            y = instance_norm(getattr(self, f"conv{index}")(y), relu=True)
        return y.add_(self.downsample(x)).relu_()


def residual_block(in_ch: int, out_ch: int, stride: int) -> EncoderBlock:
    """Two 3x3 convolutions (the 'basic' encoder of AMT-L and AMT-G)."""
    return EncoderBlock(in_ch, [(3, out_ch), (3, out_ch)], stride)


def bottleneck_block(in_ch: int, out_ch: int, stride: int) -> EncoderBlock:
    """1x1 -> 3x3 -> 1x1 at a quarter of the width (the 'small' encoder of AMT-S)."""
    inner = out_ch // 4
    return EncoderBlock(in_ch, [(1, inner), (3, inner), (1, out_ch)], stride)


class CorrelationFeatureEncoder(nn.Module):
    """Encodes a frame into D-dimensional features at 1/8 resolution for the correlation.

    `stages` lists (name, width, stride) per stage; each stage is two blocks, the first with the stride.
    """

    def __init__(
        self,
        block: Callable[[int, int, int], EncoderBlock],
        stem_width: int,
        stages: tuple[tuple[str, int, int], ...],
        out_dim: int,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, stem_width, 7, 2, 3)
        self.stage_names = [name for name, _, _ in stages]
        width = stem_width
        for name, out_width, stride in stages:
            self.add_module(name, nn.Sequential(block(width, out_width, stride), block(out_width, out_width, 1)))
            width = out_width
        self.conv2 = nn.Conv2d(width, out_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = instance_norm(self.conv1(x), relu=True)
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return self.conv2(x)
