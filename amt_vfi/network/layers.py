"""Small building blocks shared by every part of the AMT network.

Module attribute names follow the official checkpoint keys, so `state_dict()` loads unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import cpu_kernels
from .cpu_kernels import is_compiling


class WinogradConv2d(nn.Conv2d):
    """`nn.Conv2d` (same parameters) that runs a 3x3 stride-1 convolution of 16 or more input channels by
    the fused CPU kernel's Winograd transform where it can: 1.8-2.8x as fast as oneDNN on AMT's decoder and
    update layers, 1.25x on the 20-channel side layers, within 1e-5 of the output's scale; thinner layers
    are faster with oneDNN. The transformed weights are kept with the layer, made again whenever the
    weights change (weights made in inference mode have no version to tell: for them, every call;
    `load_model` makes ordinary ones)."""

    MIN_WINOGRAD_CHANNELS = 16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            (self.kernel_size, self.stride, self.padding, self.dilation, self.groups)
            == ((3, 3), (1, 1), (1, 1), (1, 1), 1)
            and self.in_channels >= self.MIN_WINOGRAD_CHANNELS
            and x.dim() == 4
            and x.is_contiguous(memory_format=torch.channels_last)
            and cpu_kernels.usable(x, self.weight, self.bias)
        ):
            return cpu_kernels.winograd_conv(x, *self._winograd_weights(), self.out_channels)
        return super().forward(x)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> WinogradConv2d:
        """Moved or converted (`.to`, `.cuda`, `.half`, ...): the transformed weights, 4x the size of the
        3x3 ones (450 MB for AMT-G), are dropped rather than kept in host memory for weights elsewhere."""
        self.__dict__.pop("_winograd", None)
        return super()._apply(fn, recurse)

    def _winograd_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.weight.is_inference() or self.bias.is_inference():  # no version counter: made for every call
            return cpu_kernels.winograd_weights(self.weight, self.bias)
        key = (self.weight.data_ptr(), self.weight._version, self.bias.data_ptr(), self.bias._version)
        cached = self.__dict__.get("_winograd")
        if cached is None or cached[0] != key:
            cached = (key, *cpu_kernels.winograd_weights(self.weight, self.bias))
            self.__dict__["_winograd"] = cached
        return cached[1], cached[2]


def conv(in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1) -> nn.Conv2d:
    """A 'same' convolution with bias: every convolution in AMT has one."""
    return WinogradConv2d(in_ch, out_ch, kernel, stride, padding=(kernel - 1) // 2, bias=True)


class PReLUInPlace(nn.PReLU):
    """`nn.PReLU` (same parameter), applied in place by the fused CPU kernel where it can be: every PReLU
    in AMT follows a layer whose output nothing else reads, and not allocating a second activation saves
    a pass over memory (2% of a CPU frame)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4 and cpu_kernels.usable(x, self.weight):
            return cpu_kernels.prelu_(x, self.weight)
        return super().forward(x)


def conv_prelu(in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    """Convolution followed by a per-channel PReLU (checkpoint sub-keys `0` and `1`)."""
    return nn.Sequential(conv(in_ch, out_ch, kernel, stride), PReLUInPlace(out_ch))


def upconv(in_ch: int, out_ch: int) -> nn.ConvTranspose2d:
    """Transposed convolution that exactly doubles height and width."""
    return nn.ConvTranspose2d(in_ch, out_ch, 4, 2, 1, bias=True)


def resize(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Bilinear resize driven by the factor itself (not the size ratio), as the checkpoints expect."""
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)


def upsample_flow(flow: torch.Tensor, factor: float = 2.0) -> torch.Tensor:
    """Resize a flow field and rescale its pixel units accordingly."""
    return factor * resize(flow, factor)


class SideChannelResBlock(nn.Module):
    """Residual block whose last `side` channels get an extra convolution after each of the first two layers."""

    def __init__(self, channels: int, side: int) -> None:
        super().__init__()
        self.side = side
        self.conv1 = conv_prelu(channels, channels)
        self.conv2 = conv_prelu(side, side)
        self.conv3 = conv_prelu(channels, channels)
        self.conv4 = conv_prelu(side, side)
        self.conv5 = conv(channels, channels)
        self.prelu = PReLUInPlace(channels)

    def _refine_side(self, x: torch.Tensor, layer: nn.Module) -> torch.Tensor:
        """Replace the side channels of `x` in place: a copy of them feeds the convolution (which needs
        dense input anyway), and no new tensor of all the channels is written. Autograd allows it, as
        no layer keeps `x` for its backward pass."""
        side = x[:, x.shape[1] - self.side :]
        side.copy_(layer(side.clone()))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._refine_side(self.conv1(x), self.conv2)
        out = self._refine_side(self.conv3(out), self.conv4)
        return self.prelu(self.conv5(out).add_(x))


def channels_like(like: torch.Tensor, channels: int) -> torch.Tensor:
    """An empty tensor with `channels` channels and the batch, size, dtype, device and memory layout of `like`.

    Decoder inputs are assembled in the layout of their first part: `torch.cat` of mixed layouts
    (grid_sample returns channels-first) gives channels-first, which the next channels-last convolution
    would convert once more; copying each part straight into place is one pass.
    """
    layout = torch.channels_last if like.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    shape = (like.shape[0], channels, *like.shape[2:])
    return torch.empty(shape, dtype=like.dtype, device=like.device, memory_format=layout)


def cat_channels(tensors: list[torch.Tensor]) -> torch.Tensor:
    """`torch.cat` along the channels, in the memory layout of the first tensor (see `channels_like`)."""
    out = channels_like(tensors[0], sum(x.shape[1] for x in tensors))
    start = 0
    for x in tensors:
        out[:, start : start + x.shape[1]] = x
        start += x.shape[1]
    return out


@functools.lru_cache(maxsize=128)
def _constant(values: tuple[float, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    with torch.inference_mode(False):  # usable outside inference mode too
        if device.type != "cuda":
            return torch.tensor(values, dtype=dtype, device=device)
        # From pinned memory, queued behind the work already on the GPU instead of waiting for it.
        return torch.tensor(values, dtype=dtype).pin_memory().to(device, non_blocking=True)


def device_constant(values: Sequence[float], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A small constant tensor on `device`, made once per value (never modify it): a tensor made from
    Python numbers on a GPU waits for all the work queued there, which would stall the overlap of pairs,
    so on a GPU it is uploaded asynchronously, and reused while the same values come again."""
    if is_compiling():  # a constant of the compiled graph: no upload, no wait
        return torch.tensor(tuple(values), dtype=dtype, device=device)
    return _constant(tuple(values), dtype, torch.device(device))


def warp(image: torch.Tensor, flow: torch.Tensor, clamp_coordinates: bool = False) -> torch.Tensor:
    """Backward-warp `image` by `flow` (pixels; channel 0 = x) with edge replication outside the frame.

    `clamp_coordinates=True` clamps the sample positions itself and samples with zero padding, which is
    the same result without `padding_mode="border"` (unsupported or wrong on some MPS builds).
    Sampling runs in float32: half precision cannot address pixels of a 4K frame exactly.
    """
    _, _, height, width = image.shape
    # grid_sample's units (align_corners=True): -1 and 1 are the centres of the first and last pixels.
    xs = torch.linspace(-1.0, 1.0, width, device=flow.device)
    ys = torch.linspace(-1.0, 1.0, height, device=flow.device)
    base = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # H x W x (x, y)
    units = device_constant((2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)), torch.float32, flow.device)
    grid = torch.addcmul(base, flow.float().permute(0, 2, 3, 1), units)
    if clamp_coordinates:
        grid = grid.clamp_(-1.0, 1.0)
    padding = "zeros" if clamp_coordinates else "border"
    warped = F.grid_sample(image.float(), grid, mode="bilinear", padding_mode=padding, align_corners=True)
    return warped.to(image.dtype)


def in_row_bands(layer: nn.Module, x: torch.Tensor, halo: int, band_pixels: int = 1 << 20) -> torch.Tensor:
    """`layer(x)` computed a band of rows at a time, each band with `halo` extra rows on either side.

    Exact for a stack of 'same' convolutions and pointwise operations whose receptive radius is at most
    `halo`, and the peak memory is that of one band instead of the whole frame.
    """
    height, width = x.shape[-2:]
    rows = max(4 * halo, band_pixels // max(width, 1))
    if height <= rows:
        return layer(x)
    output = None
    for top in range(0, height, rows):
        bottom = min(top + rows, height)
        first, last = max(0, top - halo), min(height, bottom + halo)
        band = layer(x[..., first:last, :])[..., top - first : bottom - first, :]
        if output is None:
            output = band.new_empty(*band.shape[:-2], height, band.shape[-1])
        output[..., top:bottom, :] = band
    return output
