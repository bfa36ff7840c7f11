"""The two image encoders: the context pyramid and the correlation feature encoder."""

from __future__ import annotations

import torch
from torch import nn

from .layers import conv, conv_prelu


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


class InstanceNorm(nn.Module):
    """Instance normalisation without parameters or running statistics (so no checkpoint keys).

    Written out rather than `nn.InstanceNorm2d`, which hands channels-last input back as channels-first
    and is about twice as slow on it: the memory layout stays as it came.
    """

    eps = 1e-5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - x.mean(dim=(2, 3), keepdim=True)
        variance = (centred * centred).mean(dim=(2, 3), keepdim=True)
        return centred.mul_(torch.rsqrt(variance + self.eps))


def _shortcut(in_ch: int, out_ch: int, stride: int) -> nn.Module:
    if stride == 1:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride), InstanceNorm())


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with instance norm (the 'basic' encoder block)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = conv(in_ch, out_ch, 3, stride)
        self.conv2 = conv(out_ch, out_ch, 3)
        self.norm1 = InstanceNorm()
        self.norm2 = InstanceNorm()
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_ch, out_ch, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.norm1(self.conv1(x)))
        y = self.relu(self.norm2(self.conv2(y)))
        return self.relu(self.downsample(x) + y)


class BottleneckBlock(nn.Module):
    """1x1 -> 3x3 -> 1x1 at a quarter of the width (the 'small' encoder block)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        inner = out_ch // 4
        self.conv1 = nn.Conv2d(in_ch, inner, 1)
        self.conv2 = conv(inner, inner, 3, stride)
        self.conv3 = nn.Conv2d(inner, out_ch, 1)
        self.norm1 = InstanceNorm()
        self.norm2 = InstanceNorm()
        self.norm3 = InstanceNorm()
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_ch, out_ch, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.norm1(self.conv1(x)))
        y = self.relu(self.norm2(self.conv2(y)))
        y = self.relu(self.norm3(self.conv3(y)))
        return self.relu(self.downsample(x) + y)


class CorrelationFeatureEncoder(nn.Module):
    """Encodes a frame into D-dimensional features at 1/8 resolution for the correlation.

    `stages` lists (name, width, stride) per stage; each stage is two blocks, the first with the stride.
    """

    def __init__(
        self,
        block: type[ResidualBlock] | type[BottleneckBlock],
        stem_width: int,
        stages: tuple[tuple[str, int, int], ...],
        out_dim: int,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, stem_width, 7, 2, 3)
        self.norm1 = InstanceNorm()
        self.relu1 = nn.ReLU(inplace=True)
        self.stage_names = [name for name, _, _ in stages]
        width = stem_width
        for name, out_width, stride in stages:
            self.add_module(name, nn.Sequential(block(width, out_width, stride), block(out_width, out_width, 1)))
            width = out_width
        self.conv2 = nn.Conv2d(width, out_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.norm1(self.conv1(x)))
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return self.conv2(x)
