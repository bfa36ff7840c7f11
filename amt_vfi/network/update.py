"""Update blocks: one correction of flows and feature from the correlation and the current motion."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .correlation import LEVELS, WINDOW
from .layers import conv, resize

CORRELATION_CHANNELS = 2 * LEVELS * WINDOW * WINDOW


@dataclass(frozen=True)
class UpdateWidths:
    corr: int  # first correlation layer
    corr2: int | None  # second correlation layer (basic blocks only)
    flow: int  # motion branch output (its first layer has twice this)
    fused: int
    hidden: int


def _leaky(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.1)


def _head(in_ch: int, hidden: int, out_ch: int) -> nn.Sequential:
    # Index 1 is the (parameter-free) activation, matching the checkpoint's `.0` / `.2` keys.
    return nn.Sequential(conv(in_ch, hidden), nn.LeakyReLU(0.1), conv(hidden, out_ch))


class UpdateBlock(nn.Module):
    """Predicts (feature delta, flow delta); with `rescale` it runs at 1/8 resolution and upsamples."""

    def __init__(self, feature_ch: int, widths: UpdateWidths, rescale: int | None = None) -> None:
        super().__init__()
        self.rescale = rescale
        self.convc1 = conv(CORRELATION_CHANNELS, widths.corr, 1)
        corr_out = widths.corr
        if widths.corr2 is not None:
            self.convc2 = conv(widths.corr, widths.corr2, 3)
            corr_out = widths.corr2
        self.convf1 = conv(4, 2 * widths.flow, 7)
        self.convf2 = conv(2 * widths.flow, widths.flow, 3)
        self.conv = conv(corr_out + widths.flow, widths.fused, 3)
        self.gru = _head(widths.fused + 4 + feature_ch, widths.hidden, widths.hidden)
        self.feat_head = _head(widths.hidden, widths.hidden, feature_ch)
        self.flow_head = _head(widths.hidden, widths.hidden, 4)

    def forward(
        self, feature: torch.Tensor, motion: torch.Tensor, corr: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        motion = motion.to(feature.dtype)  # flows are float32 (see decoders), the weights may be half
        if self.rescale:
            feature = resize(feature, 1.0 / self.rescale)
        c = _leaky(self.convc1(corr))
        if hasattr(self, "convc2"):
            c = _leaky(self.convc2(c))
        m = _leaky(self.convf2(_leaky(self.convf1(motion))))
        fused = _leaky(self.conv(torch.cat([c, m], dim=1)))
        hidden = self.gru(torch.cat([fused, motion, feature], dim=1))
        delta_feature = self.feat_head(hidden)
        delta_motion = self.flow_head(hidden)
        if self.rescale:
            delta_feature = resize(delta_feature, self.rescale)
            delta_motion = self.rescale * resize(delta_motion, self.rescale)
        return delta_feature, delta_motion
