"""Hyperparameters of the released AMT variants, and how to recognise each from a state dict."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .update import UpdateWidths


@dataclass(frozen=True)
class VariantSpec:
    name: str
    context_channels: tuple[int, int, int, int]
    side_channels: int
    first_kernel: int
    fields: int
    feature_block: str  # "bottleneck" or "residual"
    feature_stem: int
    feature_stages: tuple[tuple[str, int, int], ...]
    feature_dim: int
    update: UpdateWidths
    high_res_updates: bool
    comb_kernel: int


AMT_S = VariantSpec(
    name="amt-s",
    context_channels=(20, 32, 44, 56),
    side_channels=20,
    first_kernel=3,
    fields=3,
    feature_block="bottleneck",
    feature_stem=32,
    feature_stages=(("layer1", 32, 1), ("layer2", 64, 2), ("layer3", 96, 2)),
    feature_dim=84,
    update=UpdateWidths(corr=64, corr2=None, flow=20, fused=68, hidden=76),
    high_res_updates=False,
    comb_kernel=3,
)

AMT_L = VariantSpec(
    name="amt-l",
    context_channels=(48, 64, 72, 128),
    side_channels=48,
    first_kernel=7,
    fields=5,
    feature_block="residual",
    feature_stem=64,
    feature_stages=(("layer1", 64, 1), ("layer2", 72, 2), ("layer3", 128, 2)),
    feature_dim=128,
    update=UpdateWidths(corr=256, corr2=160, flow=48, fused=124, hidden=128),
    high_res_updates=False,
    comb_kernel=7,
)

AMT_G = VariantSpec(
    name="amt-g",
    context_channels=(84, 96, 112, 128),
    side_channels=84,
    first_kernel=7,
    fields=5,
    feature_block="residual",
    feature_stem=64,
    feature_stages=(("layer1", 64, 1), ("layer2", 112, 2), ("layer3", 160, 2), ("layer3_2", 160, 1)),
    feature_dim=128,
    update=UpdateWidths(corr=256, corr2=192, flow=64, fused=188, hidden=192),
    high_res_updates=True,
    comb_kernel=7,
)

VARIANTS: dict[str, VariantSpec] = {spec.name: spec for spec in (AMT_S, AMT_L, AMT_G)}
# Official checkpoint names -> architecture; the GoPro weights use AMT-S unchanged.
CHECKPOINT_VARIANTS: dict[str, VariantSpec] = {
    "amt-s": AMT_S,
    "amt-l": AMT_L,
    "amt-g": AMT_G,
    "gopro_amt-s": AMT_S,
}


def detect_variant(state_dict: Mapping[str, object]) -> VariantSpec | None:
    """Recognise the architecture from key names and shapes (never from a file name)."""
    if "feat_encoder.layer3_2.0.conv1.weight" in state_dict or "update3_low.conv.weight" in state_dict:
        return AMT_G
    feature_head = state_dict.get("feat_encoder.conv2.weight")
    shape = tuple(getattr(feature_head, "shape", ()))
    if shape == (84, 96, 1, 1):
        return AMT_S
    if shape == (128, 128, 1, 1):
        return AMT_L
    return None
