"""Shared fixtures: stand-in checkpoints on disk and the golden reference data kept in tests/data."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from amt_vfi.checkpoints import standin_state_dict

DATA = Path(__file__).parent / "data"

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def standin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder holding stand-in amt-s.pth and amt-l.pth (recipe amt-golden-v1)."""
    folder = tmp_path_factory.mktemp("models")
    for name in ("amt-s", "amt-l"):
        torch.save({"state_dict": standin_state_dict(name)}, folder / f"{name}.pth")
    return folder


@pytest.fixture(autouse=True, scope="session")
def _isolated_checkpoint_lookup(standin_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """Name lookups find the stand-ins, and nothing is ever written to the real user cache."""
    saved = {key: os.environ.get(key) for key in ("AMT_VFI_MODELS", "AMT_VFI_CACHE")}
    os.environ["AMT_VFI_MODELS"] = str(standin_dir)
    os.environ["AMT_VFI_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def amt_s_path(standin_dir: Path) -> Path:
    return standin_dir / "amt-s.pth"


@pytest.fixture(scope="session")
def golden_cases() -> dict:
    return json.loads((DATA / "cases.json").read_text())


def load_golden(case_id: str) -> dict[str, torch.Tensor]:
    return load_file(str(DATA / f"{case_id}.safetensors"))
