"""Checkpoint names offered by the nodes and their lookup inside (or outside) ComfyUI."""

from __future__ import annotations

from pathlib import Path

from ..checkpoints import OFFICIAL_CHECKPOINTS, available_checkpoints, resolve_checkpoint, search_dirs
from ..checkpoints.store import CHECKPOINT_SUFFIXES, MODELS_ENV, official_name
from ..errors import CheckpointNotFoundError, InputError
from . import host


def _amt_files_in_shared_folder(folder: Path) -> list[str]:
    """Checkpoint files directly in a folder shared with other model kinds (RIFE, FILM): only "amt" names."""
    if not folder.is_dir():
        return []
    return sorted(
        p.name
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in CHECKPOINT_SUFFIXES and "amt" in p.name.lower()
    )


def _files_in_subfolders(folder: Path) -> list[str]:
    """Checkpoint files in the subfolders of an AMT folder, named as ComfyUI's own loaders list them
    ("finetunes/anime.pth"); those of `amt/`, which are listed by file name, and hidden ones left out."""
    if not folder.is_dir():
        return []
    names = []
    for path in folder.rglob("*"):
        relative = path.relative_to(folder)
        if (
            path.suffix.lower() in CHECKPOINT_SUFFIXES
            and path.parent not in (folder, folder / "amt")
            and not any(part.startswith(".") for part in relative.parts)
            and path.is_file()
        ):
            names.append(relative.as_posix())
    return sorted(names)


def checkpoint_names() -> list[str]:
    """The combo entries: the four official names (in the seed's order), then every other checkpoint
    file found in the AMT folders, sorted. Files are listed, not opened."""
    names = list(OFFICIAL_CHECKPOINTS)
    amt_dirs, shared = host.listing_dirs()
    found: list[str] = []
    try:
        folders = search_dirs(amt_dirs)
        found += available_checkpoints(folders)
        found += [name for folder in folders for name in _files_in_subfolders(folder)]
        for folder in shared:
            found += _amt_files_in_shared_folder(folder)
    except OSError:
        pass
    names += sorted(set(found) - set(names))
    return names


def primary_folder() -> Path:
    """Where a user should put checkpoint files (and where missing official ones are downloaded to)."""
    return search_dirs(host.checkpoint_dirs())[0]


def resolve(name: object) -> Path:
    """The checkpoint file for a combo entry: looked up in $AMT_VFI_MODELS, ComfyUI's folders, the user
    cache; an official checkpoint that is nowhere is downloaded into `primary_folder()`."""
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"ckpt_name must be a checkpoint file name such as 'amt-s.pth', got {name!r}")
    name = name.strip()
    if Path(name).is_absolute() and Path(name).is_file():
        return Path(name)
    relative = Path(name.replace("\\", "/"))
    dirs = host.checkpoint_dirs()
    if len(relative.parts) > 1 and ".." not in relative.parts:  # listed from a subfolder
        for folder in search_dirs(dirs):
            if (folder / relative).is_file():
                return folder / relative
    base = relative.name  # "amt/amt-s.pth" (relative to the frame_interpolation folder) -> "amt-s.pth"
    try:
        return resolve_checkpoint(base, dirs)
    except CheckpointNotFoundError:
        if official_name(base):
            raise  # the download failed: the engine's message says which URL and where to put the file
        searched = search_dirs(dirs)
        available = ", ".join(checkpoint_names())
        raise CheckpointNotFoundError(
            f"AMT checkpoint {name!r} was not found. Available: {available}. Put AMT checkpoint files "
            f"(.pth or .safetensors) in {searched[0]} (or in the folder named by ${MODELS_ENV}); "
            f"searched: {', '.join(str(d) for d in searched)}"
        ) from None
