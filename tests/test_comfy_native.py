"""AMT behind ComfyUI core's FRAME_INTERPOLATION_MODEL contract ("AMT Model Loader" -> "Frame Interpolate").

The ComfyUI snapshot in ../shared/comfyui predates core's frame interpolation nodes, so
`core_frame_interpolate` below replays, step by step, how core's `FrameInterpolate.execute`
(comfy_extras/nodes_frame_interpolation.py, 2026) drives the model it receives: `load_model_gpu` on
the ModelPatcher, `model_dtype()`, `pad_align`, `extract_features` per frame into a cache dict whose
"img1" becomes the next pair's "img0", then `forward_multi_timestep(img0, img1, [t...], cache=)` or, for
models without it, `model(img0.expand(b), img1.expand(b), timestep=b x 1 x H x W, cache=)` in chunks.
A last test runs it with the real ModelPatcher and model management of the harness's ComfyUI.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from comfy_pack import PACK, ROOT, _cpu_outside_comfyui, load_pack, pack, smooth_frames
from conftest import load_golden

HARNESS = Path(__file__).resolve().parents[2] / "shared" / "comfyui"


def core_frame_interpolate(patcher, images, multiplier, model_management, use_multi=True, batch=None):
    """Core's FrameInterpolate call sequence on an IMAGE batch (N x H x W x C) -> IMAGE batch."""
    if images.shape[0] < 2 or multiplier < 2:
        return images
    model_management.load_model_gpu(patcher)
    device, dtype, net = patcher.load_device, patcher.model_dtype(), patcher.model
    frames = images.movedim(-1, 1).to(dtype=dtype, device="cpu")
    height, width = frames.shape[-2:]
    align = getattr(net, "pad_align", 1)
    if align > 1:  # core pads bottom/right by reflection to a multiple of pad_align
        frames = F.pad(frames, (0, -width % align, 0, -height % align), mode="reflect")
    steps = multiplier - 1
    times = [j / multiplier for j in range(1, multiplier)]
    pairs = frames.shape[0] - 1
    result = torch.empty((pairs * multiplier + 1, *frames.shape[1:]), dtype=dtype)
    result[0] = frames[0]
    written = 1
    time_maps = torch.tensor(times, device=device, dtype=dtype).reshape(steps, 1, 1, 1)
    time_maps = time_maps.expand(-1, 1, *frames.shape[-2:])
    multi = getattr(net, "forward_multi_timestep", None) if use_multi else None
    cache = {}
    for i in range(pairs):
        img0 = frames[i : i + 1].to(device)
        img1 = frames[i + 1 : i + 2].to(device)
        cache["img0"] = cache.pop("next") if "next" in cache else net.extract_features(img0)
        cache["img1"] = net.extract_features(img1)
        cache["next"] = cache["img1"]
        if multi is not None:
            middle = multi(img0, img1, times, cache=cache)
            result[written : written + steps].copy_(middle.to(dtype=dtype))
            written += steps
        else:
            done = 0
            chunk = batch or steps
            while done < steps:
                size = min(chunk, steps - done)
                middle = net(
                    img0.expand(size, -1, -1, -1),
                    img1.expand(size, -1, -1, -1),
                    timestep=time_maps[done : done + size],
                    cache=cache,
                )
                result[written : written + size].copy_(middle.to(dtype=dtype))
                written += size
                done += size
        result[written].copy_(frames[i + 1])
        written += 1
    return result[:, :, :height, :width].movedim(1, -1).clamp_(0.0, 1.0).float()


class FakeModelManagement:
    """`load_model_gpu` as ComfyUI does it for a model that fits: move the patcher's model to its device."""

    def __init__(self) -> None:
        self.loaded = []

    def load_model_gpu(self, patcher) -> None:
        self.loaded.append(patcher)
        patcher.model.to(patcher.load_device)


@pytest.fixture(scope="module")
def loader(pack):
    return pack.NODE_CLASS_MAPPINGS["AMT Model Loader"]()


@pytest.fixture(scope="module")
def patcher(loader):
    (model,) = loader.load("amt-s.pth", precision="fp32")
    return model


@pytest.fixture(scope="module")
def small_case(pack):
    frames = smooth_frames(3, 60, 80, seed=3)
    (expected,) = pack.NODE_CLASS_MAPPINGS["AMT VFI"]().vfi("amt-s.pth", frames, 1, 3)
    return frames, expected


def test_loader_declaration_and_contract_attributes(pack, patcher) -> None:
    node = pack.NODE_CLASS_MAPPINGS["AMT Model Loader"]
    assert node.RETURN_TYPES == ("FRAME_INTERPOLATION_MODEL",)
    inputs = node.INPUT_TYPES()
    assert list(inputs["required"]) == ["ckpt_name"]
    assert inputs["required"]["ckpt_name"][0][:4] == ["amt-s.pth", "amt-l.pth", "amt-g.pth", "gopro_amt-s.pth"]
    net = patcher.model
    assert isinstance(net, torch.nn.Module)
    assert net.pad_align == 1
    assert callable(net.extract_features) and callable(net.forward_multi_timestep)
    assert patcher.model_dtype() == torch.float32 == net.get_dtype()
    assert patcher.load_device == torch.device("cpu")


def test_core_sequence_gives_the_frames_of_the_amt_vfi_node(patcher, small_case) -> None:
    frames, expected = small_case
    mm = FakeModelManagement()
    output = core_frame_interpolate(patcher, frames, 3, mm)
    assert mm.loaded == [patcher]
    assert output.shape == expected.shape == (7, 60, 80, 3)
    assert (output - expected).abs().max() <= 1e-6
    assert torch.isfinite(output).all()


@pytest.mark.parametrize("batch", [1, 2])
def test_core_forward_path_gives_the_same_frames_and_encodes_each_call_once(
    patcher, small_case, monkeypatch: pytest.MonkeyPatch, batch: int
) -> None:
    frames, expected = small_case
    amt = patcher.model.amt
    encodes = []
    real_encode = amt.encode
    monkeypatch.setattr(amt, "encode", lambda *a, **k: encodes.append(1) or real_encode(*a, **k))
    output = core_frame_interpolate(patcher, frames, 3, FakeModelManagement(), use_multi=False, batch=batch)
    assert (output - expected).abs().max() <= 1e-6
    assert len(encodes) == 2 * (2 // batch)  # two pairs; the rows of one call share an encoding


def test_core_sequence_reproduces_the_golden_node_case(patcher) -> None:
    data = load_golden("n1")  # 4 frames of 130x200, x2, no skip list
    output = core_frame_interpolate(patcher, data["frames"], 2, FakeModelManagement())
    diff = (output - data["output"]).abs()
    assert diff.max() <= 5e-4 and diff.mean() <= 2e-5


def test_rgba_through_core_keeps_four_channels_with_blended_alpha(patcher, small_case) -> None:
    frames, expected = small_case
    alpha = torch.stack([torch.full(frames.shape[1:3], value) for value in (0.0, 0.6, 0.3)]).unsqueeze(-1)
    output = core_frame_interpolate(patcher, torch.cat([frames, alpha], dim=-1), 3, FakeModelManagement())
    assert output.shape == (7, 60, 80, 4)
    assert (output[..., :3] - expected).abs().max() <= 1e-6
    assert torch.allclose(output[1:3, ..., 3].mean(dim=(1, 2)), torch.tensor([0.2, 0.4]), atol=1e-6)


def test_forward_handles_the_ends_and_unrelated_rows(patcher, small_case) -> None:
    frames, expected = small_case
    net = patcher.model
    images = frames.movedim(-1, 1)
    ends = net(images[:1], images[1:2], timestep=torch.tensor([0.0]).view(1, 1, 1, 1), cache=None)
    assert torch.equal(ends[0], images[0])
    ends = net.forward_multi_timestep(images[:1], images[1:2], [1.0, 1 / 3])
    assert torch.equal(ends[0], images[1])
    assert (ends[1] - expected[1].movedim(-1, 0)).abs().max() <= 1e-6
    rows = net(images[:2], images[1:], timestep=torch.full((2, 1, 60, 80), 1 / 3))  # two different pairs
    assert (rows[0] - expected[1].movedim(-1, 0)).abs().max() <= 1e-6
    assert (rows[1] - expected[4].movedim(-1, 0)).abs().max() <= 1e-6


def test_nan_frames_are_refused(pack, patcher) -> None:
    images = torch.rand(2, 3, 32, 32)
    images[1, 0, 5, 5] = float("nan")
    with pytest.raises(pack.amt_vfi.errors.InputError, match="NaN or infinite"):
        patcher.model.forward_multi_timestep(images[:1], images[1:], [0.5])
    with pytest.raises(pack.amt_vfi.errors.InputError, match="time steps must be numbers from 0 to 1"):
        patcher.model.forward_multi_timestep(images[:1], images[:1], [float("nan")])


def test_precision_choices(pack, loader) -> None:
    (bf16,) = loader.load("amt-s.pth", precision="bf16")
    assert bf16.model_dtype() == torch.bfloat16
    images = smooth_frames(2, 24, 24, seed=1)
    output = core_frame_interpolate(bf16, images, 2, FakeModelManagement())
    assert output.shape == (3, 24, 24, 3) and torch.isfinite(output).all()
    with pytest.raises(pack.amt_vfi.errors.InputError, match="fp16 is not supported on the CPU"):
        loader.load("amt-s.pth", precision="fp16")
    with pytest.raises(pack.amt_vfi.errors.InputError, match="scale factor"):
        loader.load("amt-s.pth", scale_factor=0.3)


def test_inside_comfyui_the_loader_returns_a_model_patcher(pack, loader, monkeypatch: pytest.MonkeyPatch) -> None:
    made = []

    class ModelPatcher:
        def __init__(self, model, load_device, offload_device):
            made.append(SimpleNamespace(model=model, load_device=load_device, offload_device=offload_device))

    comfy = types.ModuleType("comfy")
    mm = types.ModuleType("comfy.model_management")
    mm.get_torch_device = lambda: torch.device("cpu")
    mm.unet_offload_device = lambda: torch.device("cpu")
    mm.should_use_fp16 = lambda device=None: False
    model_patcher = types.ModuleType("comfy.model_patcher")
    model_patcher.ModelPatcher = ModelPatcher
    for name, module in (("comfy", comfy), ("comfy.model_management", mm), ("comfy.model_patcher", model_patcher)):
        monkeypatch.setitem(sys.modules, name, module)
    (result,) = loader.load("amt-s.pth")
    assert isinstance(result, ModelPatcher)
    (call,) = made
    assert call.load_device == call.offload_device == torch.device("cpu")
    assert call.model.get_dtype() == torch.float32  # auto: fp32 where ComfyUI says fp16 is not worth it


def _harness_python() -> Path | None:
    python = Path(os.environ.get("COMFY_VENV", "/tmp/comfyenv")) / "bin" / "python"
    return python if python.is_file() else None


def test_real_model_patcher_and_model_management_of_comfyui(tmp_path: Path) -> None:
    """core's sequence with ComfyUI's own ModelPatcher and load_model_gpu (the harness's ComfyUI)."""
    comfy_dir = Path(os.environ.get("COMFY_DIR", "/tmp/comfyui"))
    python = _harness_python()
    if python is None or not (comfy_dir / "comfy" / "model_patcher.py").is_file():
        pytest.skip(
            f"needs the ComfyUI harness: {HARNESS / 'setup.sh'} builds the venv ($COMFY_VENV, default "
            f"/tmp/comfyenv) and the source ($COMFY_DIR, default /tmp/comfyui); not found here"
        )
    script = (
        textwrap.dedent(
            f"""
        import importlib.util, json, sys
        sys.path.insert(0, {str(comfy_dir)!r})
        from comfy.cli_args import args
        args.cpu = True
        import torch
        import comfy.model_management as mm, comfy.model_patcher, comfy.utils, folder_paths
        import torch.nn.functional as F
        spec = importlib.util.spec_from_file_location("{PACK}", {str(ROOT / "__init__.py")!r})
        pack = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = pack
        spec.loader.exec_module(pack)
        """
        )
        + textwrap.dedent(inspect.getsource(core_frame_interpolate))
        + textwrap.dedent(
            """
        generator = torch.Generator().manual_seed(4)
        frames = F.interpolate(torch.rand(3, 3, 8, 10, generator=generator), size=(64, 80), mode="bilinear")
        frames = frames.permute(0, 2, 3, 1).contiguous()
        (patcher,) = pack.NODE_CLASS_MAPPINGS["AMT Model Loader"]().load("amt-s.pth", precision="auto")
        (expected,) = pack.NODE_CLASS_MAPPINGS["AMT VFI"]().vfi("amt-s.pth", frames, 1, 3)
        output = core_frame_interpolate(patcher, frames, 3, mm)
        print(json.dumps({
            "patcher": type(patcher).__module__ + "." + type(patcher).__name__,
            "dtype": str(patcher.model_dtype()),
            "loaded": any(m.model is patcher for m in mm.current_loaded_models),
            "shape": list(output.shape),
            "diff": float((output - expected).abs().max()),
            "folder_key": "frame_interpolation" in folder_paths.folder_names_and_paths,
        }))
        """
        )
    )
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = os.environ.get(  # the harness's bytecode cache: outside both source trees
        "COMFY_HARNESS_PYCACHE",
        str(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "comfy-harness" / "pycache"),
    )
    done = subprocess.run(
        [str(python), "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["patcher"] == "comfy.model_patcher.ModelPatcher"
    assert result["dtype"] == "torch.float32" and result["loaded"] and result["folder_key"]
    assert result["shape"] == [7, 64, 80, 3]
    assert result["diff"] <= 1e-6
