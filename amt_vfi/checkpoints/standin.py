"""Deterministic stand-in weights (recipe "amt-golden-v1") with the official keys and shapes.

The official checkpoints are not reachable everywhere; these weights make the network compute exactly
what the reference computed on the same recipe, which is how golden outputs are checked.
"""

from __future__ import annotations

import math
import zlib

import torch

from ..network import VARIANTS, state_dict_shapes


def standin_tensor(key: str, shape: tuple[int, ...]) -> torch.Tensor:
    generator = torch.Generator().manual_seed(zlib.crc32(key.encode("utf-8")))
    uniform = torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1
    if key.endswith("weight") and len(shape) >= 2:
        value = uniform / math.sqrt(shape[1] * math.prod(shape[2:]))
    elif key.endswith("weight"):
        value = 0.25 + 0.05 * uniform
    else:
        value = 0.05 * uniform
    return value.float()


def standin_state_dict(variant: str) -> dict[str, torch.Tensor]:
    """Stand-in weights for `variant` ('amt-s', 'amt-l', 'amt-g'; 'gopro_amt-s' equals 'amt-s')."""
    spec = VARIANTS["amt-s" if variant == "gopro_amt-s" else variant]
    return {key: standin_tensor(key, shape) for key, shape in state_dict_shapes(spec).items()}
