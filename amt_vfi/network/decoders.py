"""Coarse-to-fine decoders: each refines the bidirectional flows and the intermediate feature.

Flows are kept in float32 whatever the network's precision: in bfloat16 a flow of 300 px is only
resolved to 2 px, in float16 one of 1000 px to half a pixel; they meet the half-precision weights only
as convolution inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import cpu_kernels
from .layers import SideChannelResBlock, cat_channels, channels_like, conv_prelu, upconv, upsample_flow, warp


def _convblock(in_ch: int, mid_ch: int, out_ch: int, side: int) -> nn.Sequential:
    return nn.Sequential(conv_prelu(in_ch, mid_ch), SideChannelResBlock(mid_ch, side), upconv(mid_ch, out_ch))


class InitialDecoder(nn.Module):
    """From the coarsest context features and the time step to flows and a feature at 1/8 resolution."""

    def __init__(self, context_ch: int, out_feature_ch: int, side: int) -> None:
        super().__init__()
        self.convblock = _convblock(2 * context_ch + 1, 2 * context_ch, out_feature_ch + 4, side)

    def forward(
        self, feat0: torch.Tensor, feat1: torch.Tensor, embt: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch, _, h, w = feat0.shape
        time_plane = embt.to(feat0.dtype).expand(batch, 1, h, w)
        out = self.convblock(torch.cat([feat0, feat1, time_plane], dim=1))
        return out[:, 0:2].float(), out[:, 2:4].float(), out[:, 4:]


def _warped_inputs(
    feature: torch.Tensor, context: torch.Tensor, flow0: torch.Tensor, flow1: torch.Tensor, mps_safe: bool
) -> torch.Tensor:
    """The decoder input: feature, both frames' context (stacked, 2N) warped by their flows, the flows."""
    if not cpu_kernels.usable(feature, context, flow0, flow1):
        warped0, warped1 = warp(context, torch.cat([flow0, flow1]), mps_safe).chunk(2)
        return cat_channels([feature, warped0, warped1, flow0, flow1])
    batch, feature_ch = feature.shape[:2]
    context_ch = context.shape[1]
    inputs = channels_like(feature, feature_ch + 2 * context_ch + 4)
    inputs[:, :feature_ch] = feature
    warped = inputs[:, feature_ch : feature_ch + 2 * context_ch]
    cpu_kernels.warp(context[:batch], flow0, warped[:, :context_ch])  # straight into place
    cpu_kernels.warp(context[batch:], flow1, warped[:, context_ch:])
    inputs[:, -4:-2] = flow0
    inputs[:, -2:] = flow1
    return inputs


class RefiningDecoder(nn.Module):
    """Warps the next finer context features by the current flows and doubles the resolution."""

    def __init__(self, feature_ch: int, out_feature_ch: int, side: int) -> None:
        super().__init__()
        self.convblock = _convblock(3 * feature_ch + 4, 3 * feature_ch, out_feature_ch + 4, side)
        self.mps_safe = False

    def forward(
        self, feature: torch.Tensor, context: torch.Tensor, flow0: torch.Tensor, flow1: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.convblock(_warped_inputs(feature, context, flow0, flow1, self.mps_safe))
        return out[:, 0:2].float() + upsample_flow(flow0), out[:, 2:4].float() + upsample_flow(flow1), out[:, 4:]


class MultiFieldDecoder(nn.Module):
    """Last decoder: `fields` flow pairs, blending masks and RGB residuals at full resolution."""

    def __init__(self, feature_ch: int, fields: int, side: int) -> None:
        super().__init__()
        self.fields = fields
        self.convblock = _convblock(3 * feature_ch + 4, 3 * feature_ch, 8 * fields, side)
        self.mps_safe = False

    def predict(
        self, feature: torch.Tensor, context: torch.Tensor, flow0: torch.Tensor, flow1: torch.Tensor
    ) -> torch.Tensor:
        """All of it in one B x 8n x H x W tensor: corrections of the upsampled flows t->0 (2n channels)
        and t->1 (2n), mask logits (n), RGB residuals (3n)."""
        return self.convblock(_warped_inputs(feature, context, flow0, flow1, self.mps_safe))

    def predict_phases(
        self, feature: torch.Tensor, context: torch.Tensor, flow0: torch.Tensor, flow1: torch.Tensor
    ) -> torch.Tensor:
        """`predict` before the transposed convolution's output is interleaved: B x 4*8n x (h+1) x (w+1)
        for h x w inputs, channel 4c + 2py + px of window (j, i) holding channel c of output pixel
        (2j + py - 1, 2i + px - 1). The same sums as one 2x2 convolution, which oneDNN runs faster than the
        transposed one on a CPU (twice as fast alone, about 15% within a frame), and the fused kernels' Winograd
        transform faster again; the fused composition reads this layout directly, so nothing is interleaved."""
        hidden = self.convblock[:-1](_warped_inputs(feature, context, flow0, flow1, self.mps_safe))
        weight, bias = self._phase_parameters()
        if hidden.is_contiguous(memory_format=torch.channels_last) and cpu_kernels.usable(hidden, weight, bias):
            # (the weights change with the transposed convolution's: transformed for every call, 0.1 ms)
            return cpu_kernels.winograd_conv(hidden, *cpu_kernels.winograd_weights(weight, bias), weight.shape[0])
        return F.conv2d(hidden, weight, bias, padding=1)

    def _phase_parameters(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The 2x2 convolution of `predict_phases`, from the transposed convolution's 4x4 kernel: window
        j covers input rows j-1 and j; output row 2j-1 takes kernel rows 2 and 0 from them, row 2j rows 3
        and 1; columns alike. (Made for every call: a few microseconds, and never stale.)"""
        upconv = self.convblock[-1]
        taps = torch.tensor([[2, 0], [3, 1]], device=upconv.weight.device)  # [phase][row in window]
        kernel = upconv.weight[:, :, taps][..., taps]  # in x out x py x row x px x column
        weight = kernel.permute(1, 2, 4, 0, 3, 5).reshape(-1, kernel.shape[0], 2, 2)
        if upconv.weight.is_contiguous(memory_format=torch.channels_last):
            weight = weight.contiguous(memory_format=torch.channels_last)
        return weight, upconv.bias.repeat_interleave(4)

    def split(
        self, prediction: torch.Tensor, flow0: torch.Tensor, flow1: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The flows t->0 and t->1 (the corrected upsampled `flow0` and `flow1`), masks and residuals of
        a prediction, as new tensors: the large prediction can be freed once they are made."""
        n = self.fields
        flows0 = prediction[:, 0 : 2 * n].float() + upsample_flow(flow0).repeat(1, n, 1, 1)
        flows1 = prediction[:, 2 * n : 4 * n].float() + upsample_flow(flow1).repeat(1, n, 1, 1)
        masks = torch.sigmoid(prediction[:, 4 * n : 5 * n])
        residuals = prediction[:, 5 * n :].clone()
        return flows0, flows1, masks, residuals

    def forward(
        self, feature: torch.Tensor, context: torch.Tensor, flow0: torch.Tensor, flow1: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.split(self.predict(feature, context, flow0, flow1), flow0, flow1)
