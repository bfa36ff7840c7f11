"""What the nodes take from ComfyUI when they run inside it, and plain-torch stand-ins when they do not.

Nothing here imports ComfyUI at module import time: every helper looks the host module up when it is
called, so the pack imports anywhere (tests, the CLI's environment) and a test can put minimal fakes of
`comfy.model_management` / `comfy.utils` / `folder_paths` into `sys.modules` at any moment.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import torch

from ..engine.devices import release_cached_memory, resolve_device

#: Core's model-folder key for frame interpolation models (ComfyUI 2026); registered when missing.
FOLDER_KEY = "frame_interpolation"
#: AMT files live in this sub-folder of every `frame_interpolation` folder.
AMT_SUBFOLDER = "amt"
#: Folder names the seed pack is installed under (git clone / registry install).
SEED_PACK_FOLDERS = ("ComfyUI-Frame-Interpolation", "comfyui-frame-interpolation")
#: The repository root, i.e. this pack's folder in `custom_nodes/`.
PACK_ROOT = Path(__file__).resolve().parents[2]


def host_module(name: str) -> ModuleType | None:
    """The host module `name` if it can be imported (ComfyUI is running), else None."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _model_management() -> ModuleType | None:
    return host_module("comfy.model_management")


# -- devices and memory -----------------------------------------------------------------------------


def torch_device() -> torch.device:
    """ComfyUI's device choice (honours --cpu, --directml, ...), else CUDA, MPS or the CPU."""
    mm = _model_management()
    if mm is not None and hasattr(mm, "get_torch_device"):
        return torch.device(mm.get_torch_device())
    return resolve_device("auto")


def offload_device() -> torch.device:
    """Where ComfyUI parks models it is not using (the CPU unless --highvram/--gpu-only)."""
    mm = _model_management()
    if mm is not None and hasattr(mm, "unet_offload_device"):
        return torch.device(mm.unet_offload_device())
    return torch.device("cpu")


def prefers_fp16(device: torch.device) -> bool:
    """ComfyUI's judgement whether half precision is fast on `device`; CUDA only outside ComfyUI."""
    mm = _model_management()
    if mm is not None and hasattr(mm, "should_use_fp16"):
        try:
            return bool(mm.should_use_fp16(device))
        except TypeError:
            return bool(mm.should_use_fp16())
    return device.type == "cuda"


def soft_empty_cache(device: torch.device | None = None) -> None:
    """Return cached allocator memory to the system (ComfyUI's own call when it is running)."""
    mm = _model_management()
    if mm is not None and hasattr(mm, "soft_empty_cache"):
        mm.soft_empty_cache()
    elif device is not None:
        release_cached_memory(device)


def make_room(device: torch.device, memory_bytes: int) -> None:
    """Ask ComfyUI to unload other models from `device` until `memory_bytes` are free, as core nodes get
    through `load_models_gpu`: AMT at 4K would not fit beside a loaded diffusion model. Nothing on a CPU
    or outside ComfyUI."""
    mm = _model_management()
    if device.type != "cpu" and mm is not None and hasattr(mm, "free_memory"):
        mm.free_memory(memory_bytes, device)


def throw_if_interrupted() -> None:
    """Raise ComfyUI's interrupt exception if the user pressed Cancel; nothing outside ComfyUI."""
    mm = _model_management()
    if mm is None:
        return
    check = getattr(mm, "throw_exception_if_processing_interrupted", None)
    if check is not None:
        check()
        return
    interrupted = getattr(mm, "processing_interrupted", None)
    if interrupted is not None and interrupted():
        raise mm.InterruptProcessingException()


class Progress(Protocol):
    def update(self, value: int) -> None: ...


class _NoProgress:
    def update(self, value: int) -> None:
        """Outside ComfyUI nobody watches the node's progress."""


def progress_bar(total: int) -> Progress:
    """`comfy.utils.ProgressBar(total)` inside ComfyUI (the bar on the node), else a silent counter."""
    utils = host_module("comfy.utils")
    if utils is not None and hasattr(utils, "ProgressBar"):
        return utils.ProgressBar(total)
    return _NoProgress()


def wrap_model(model: torch.nn.Module, load_device: torch.device, offload: torch.device) -> Any:
    """A `comfy.model_patcher.ModelPatcher` around `model` (what core's FRAME_INTERPOLATION_MODEL is),
    or a minimal object with the attributes core's FrameInterpolate reads outside ComfyUI."""
    patcher = host_module("comfy.model_patcher")
    if patcher is not None and hasattr(patcher, "ModelPatcher"):
        return patcher.ModelPatcher(model, load_device=load_device, offload_device=offload)
    return PlainModelHandle(model, load_device, offload)


class PlainModelHandle:
    """The parts of ComfyUI's ModelPatcher that core's FrameInterpolate uses, for use outside ComfyUI."""

    def __init__(self, model: torch.nn.Module, load_device: torch.device, offload: torch.device) -> None:
        self.model = model
        self.load_device = load_device
        self.offload_device = offload

    def model_dtype(self) -> torch.dtype:
        return self.model.get_dtype()

    def load(self) -> None:
        self.model.to(self.load_device)

    def offload(self) -> None:
        self.model.to(self.offload_device)


# -- model folders ----------------------------------------------------------------------------------


def _folder_paths() -> ModuleType | None:
    return host_module("folder_paths")


def register_model_folder() -> None:
    """Make sure ComfyUI knows `models/frame_interpolation` (core has the key since 2026)."""
    fp = _folder_paths()
    if fp is None:
        return
    names = getattr(fp, "folder_names_and_paths", None)
    if isinstance(names, dict) and FOLDER_KEY in names:
        return
    folder = os.path.join(fp.models_dir, FOLDER_KEY)
    extensions = set(getattr(fp, "supported_pt_extensions", ()))
    if isinstance(names, dict) and extensions:
        names[FOLDER_KEY] = ([folder], extensions)
    else:
        fp.add_model_folder_path(FOLDER_KEY, folder)


def _folder_paths_of(fp: ModuleType, key: str) -> list[Path]:
    try:
        return [Path(p) for p in fp.get_folder_paths(key)]
    except (KeyError, AttributeError):
        return []


def frame_interpolation_roots() -> list[Path]:
    """ComfyUI's `frame_interpolation` model folders (with extra_model_paths.yaml ones), in order."""
    fp = _folder_paths()
    if fp is None:
        return []
    register_model_folder()
    return _folder_paths_of(fp, FOLDER_KEY)


def checkpoint_dirs() -> list[Path]:
    """Folders searched for AMT checkpoints after $AMT_VFI_MODELS and before the user cache.

    Inside ComfyUI: every `frame_interpolation` folder's `amt/` (the first is where a missing official
    checkpoint is downloaded to), `models/amt/`, the seed pack's `ckpts/amt/`, this pack's own
    `ckpts/amt/`, then the `frame_interpolation` folders themselves. Outside ComfyUI: none.
    """
    return _checkpoint_dirs(frame_interpolation_roots())


def _seed_pack_folders(custom_nodes: Path) -> list[Path]:
    """The seed pack's folders in `custom_nodes`: installed, renamed to `<name>.disabled`, or moved into
    `.disabled/` by ComfyUI-Manager (as `<id>@<version>` in lower case, or under its own name)."""
    folders = [custom_nodes / name for name in SEED_PACK_FOLDERS]
    folders += [custom_nodes / f"{name}.disabled" for name in SEED_PACK_FOLDERS]
    parked = custom_nodes / ".disabled"
    try:
        entries = sorted(parked.iterdir()) if parked.is_dir() else []
    except OSError:
        entries = []
    ids = {name.lower() for name in SEED_PACK_FOLDERS}
    return folders + [entry for entry in entries if entry.name.lower().split("@")[0] in ids]


def _checkpoint_dirs(roots: list[Path]) -> list[Path]:
    fp = _folder_paths()
    if fp is None:
        return []
    dirs = [root / AMT_SUBFOLDER for root in roots]
    models_dir = getattr(fp, "models_dir", None)
    if models_dir:
        dirs.append(Path(models_dir) / AMT_SUBFOLDER)
    for custom_nodes in _folder_paths_of(fp, "custom_nodes"):
        dirs += [folder / "ckpts" / AMT_SUBFOLDER for folder in _seed_pack_folders(custom_nodes)]
    dirs.append(PACK_ROOT / "ckpts" / AMT_SUBFOLDER)
    dirs += roots
    return list(dict.fromkeys(dirs))


def listing_dirs() -> tuple[list[Path], list[Path]]:
    """(folders whose every checkpoint is an AMT one, shared folders where only names with "amt" count)."""
    roots = frame_interpolation_roots()
    return [d for d in _checkpoint_dirs(roots) if d not in roots], roots
