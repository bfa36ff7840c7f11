"""Reading a checkpoint file safely and checking it is an AMT network before anything uses it."""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import zipfile
from pathlib import Path

import torch

from ..errors import CheckpointError, CheckpointNotFoundError, InputError, first_line, some_of
from ..network import AMT, VariantSpec, detect_variant, state_dict_shapes
from .files import written_atomically

PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
SAFETENSORS_SUFFIX = ".safetensors"


SAFE_MODULES = ("torch", "collections", "_codecs", "numpy")
# Pickles read one after another from a file (the old torch.save format writes four).
_MOST_PICKLES = 8


def _pickle_bytes(path: Path) -> bytes:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            member = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
            return archive.read(member) if member else b""
    return path.read_bytes()


def _foreign_imports(path: Path) -> list[str]:
    """Callables outside torch that the pickle would import (and could call), read without unpickling."""
    imports, strings = [], []
    try:
        stream = io.BytesIO(_pickle_bytes(path))
        # The old (pre-zip) format is several pickles in a row (magic number, protocol, system info, the
        # object), then raw tensor bytes, where reading stops.
        for _ in range(_MOST_PICKLES):
            for opcode, arg, _ in pickletools.genops(stream):
                if opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                    strings.append(arg)
                elif opcode.name == "GLOBAL":
                    imports.append(str(arg).replace(" ", "."))
                elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                    imports.append(f"{strings[-2]}.{strings[-1]}")
    except (ValueError, EOFError, zipfile.BadZipFile, KeyError, OSError):
        pass
    return [name for name in imports if not name.startswith(SAFE_MODULES)]


def _read_pickle(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        foreign = _foreign_imports(path)
        if foreign:
            raise CheckpointError(
                f"refused to load {path}: unpickling it would run code ({', '.join(sorted(set(foreign))[:3])}); "
                "it is not a plain weights file. Use an official AMT checkpoint or a .safetensors file."
            ) from None
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint (no plain pickle of tensors); re-download it"
        ) from None
    except Exception as error:  # a damaged or foreign file fails anywhere inside the unpickler
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint ({type(error).__name__}: {first_line(error)}); re-download it"
        ) from None


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path} is not a readable .safetensors file ({error}); re-download it") from None


# Prefixes that wrappers add to every key: DataParallel / DDP, torch.compile.
_KEY_PREFIXES = ("module.", "_orig_mod.")


def _unwrap(content: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(content, dict) and isinstance(content.get("state_dict"), dict):
        content = content["state_dict"]
    if not isinstance(content, dict) or not all(isinstance(v, torch.Tensor) for v in content.values()):
        found = f"; it holds {some_of([str(key) for key in content])}" if isinstance(content, dict) else ""
        raise CheckpointError(
            f"{path} holds no state dict of tensors (the official files keep them under 'state_dict'){found}: "
            "it is not an AMT checkpoint"
        )
    state_dict = {}
    for key, value in content.items():
        for prefix in _KEY_PREFIXES:
            key = key.removeprefix(prefix)
        state_dict[key] = value
    return state_dict


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The flat state dict of a `.pth` (official `{"state_dict": ...}` or bare) or `.safetensors` file."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder, not a checkpoint file; give the file inside it")
    if not path.is_file():
        raise CheckpointNotFoundError(f"checkpoint file not found: {path}")
    if not os.access(path, os.R_OK):
        raise CheckpointError(f"checkpoint {path} cannot be read (permission denied); fix the file's permissions")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes), a download or copy that failed; get it again")
    if path.suffix.lower() == SAFETENSORS_SUFFIX:
        return _unwrap(_read_safetensors(path), path)
    return _unwrap(_read_pickle(path), path)


def verify_state_dict(state_dict: dict[str, torch.Tensor], path: str | Path) -> VariantSpec:
    """The variant these weights belong to; raises CheckpointError naming what does not fit."""
    if not state_dict:
        raise CheckpointError(f"{path} holds no tensors: it is not an AMT checkpoint")
    spec = detect_variant(state_dict)
    if spec is None:
        sample = some_of(sorted(state_dict))
        raise CheckpointError(f"{path} is not an AMT checkpoint (AMT-S/L/G); its keys look like: {sample}")
    expected = state_dict_shapes(spec)
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    reshaped = sorted(
        f"{key} {tuple(state_dict[key].shape)} != {shape}"
        for key, shape in expected.items()
        if key in state_dict and tuple(state_dict[key].shape) != shape
    )
    problems = []
    if missing:
        problems.append(f"missing keys: {some_of(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {some_of(unexpected)}")
    if reshaped:
        problems.append(f"wrong shapes: {some_of(reshaped, 2)}")
    if problems:
        raise CheckpointError(f"{path} looks like {spec.name} but does not fit it; " + "; ".join(problems))
    damaged = sorted(key for key, tensor in state_dict.items() if _has_non_finite_values(tensor))
    if damaged:
        raise CheckpointError(
            f"{path} holds NaN or infinite weights ({some_of(damaged)}): the file is damaged or came from a "
            "training run that diverged; get it again"
        )
    return spec


def _has_non_finite_values(tensor: torch.Tensor) -> bool:
    """NaN or infinity in dense floating-point weights (every frame would come out NaN)."""
    if not tensor.is_floating_point() or tensor.is_meta or tensor.layout != torch.strided:
        return False
    return not bool(torch.isfinite(tensor).all())


def load_model(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> AMT:
    """An AMT network in eval mode with the weights of `path`; the variant is read from the weights."""
    from ..engine.devices import resolve_device  # imported here: the engine imports this module

    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise InputError(f"dtype must be torch.float32, torch.float16 or torch.bfloat16, got {dtype!r}")
    device = resolve_device(device)
    state_dict = read_state_dict(path)
    spec = verify_state_dict(state_dict, path)
    # Ordinary tensors also when called in inference mode (as ComfyUI runs nodes): the network keeps
    # weight-derived data that it remakes when a weight's version changes, which inference tensors lack.
    with torch.inference_mode(False):
        model = AMT(spec)
        try:
            model.load_state_dict(state_dict, strict=True)
        except RuntimeError as error:  # tensors that cannot be copied: meta, sparse, ...
            raise CheckpointError(f"{path} holds tensors that cannot be loaded ({first_line(error)})") from None
        model.requires_grad_(False)
        return model.eval().to(device=device, dtype=dtype)


def convert_to_safetensors(source: str | Path, destination: str | Path, overwrite: bool = False) -> VariantSpec:
    """Write a verified `.pth` checkpoint as `.safetensors` (no pickle needed to read it again); an
    existing destination is only replaced with `overwrite`."""
    from safetensors.torch import save_file

    destination = Path(destination)
    if destination.suffix.lower() != SAFETENSORS_SUFFIX:
        raise CheckpointError(f"the converted file must end in {SAFETENSORS_SUFFIX}, got {destination.name}")
    if Path(source).resolve() == destination.resolve():
        raise CheckpointError(f"{destination} is the checkpoint being converted; write to another file")
    if destination.exists() and not overwrite:
        raise CheckpointError(f"{destination} exists; use --overwrite (overwrite=True) to replace it")
    state_dict = read_state_dict(source)
    spec = verify_state_dict(state_dict, source)
    try:
        with written_atomically(destination) as temp:
            # A tensor of its own for each key: safetensors refuses tensors that share memory (tied weights).
            save_file({key: value.contiguous().clone() for key, value in state_dict.items()}, str(temp))
    except Exception as error:  # OSError, or safetensors' own error for the same causes
        raise CheckpointError(f"cannot write {destination} ({first_line(error)}); check the folder") from None
    return spec
