"""The repository root imported as ComfyUI imports a custom-node folder, and fixtures for its tests."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PACK = "amt-vfi-pack"  # a folder name with dashes, as custom-node folders often have


def load_pack() -> types.ModuleType:
    """Import the repository root as ComfyUI does: a package from its folder's __init__.py."""
    if PACK in sys.modules:
        return sys.modules[PACK]
    spec = importlib.util.spec_from_file_location(PACK, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pack() -> types.ModuleType:
    return load_pack()


@pytest.fixture(scope="module", autouse=True)
def _cpu_outside_comfyui(pack: types.ModuleType):
    """Outside ComfyUI the nodes pick CUDA when there is one; these tests compare numbers on the CPU."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pack.amt_vfi.comfy.host, "resolve_device", lambda device="auto": torch.device("cpu"))
        yield


def smooth_frames(count: int, height: int, width: int, seed: int = 0, channels: int = 3) -> torch.Tensor:
    """count x H x W x C frames of smooth random texture (what the network can find motion in)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, channels, max(2, height // 8), max(2, width // 8), generator=generator)
    full = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    return full.permute(0, 2, 3, 1).contiguous()
