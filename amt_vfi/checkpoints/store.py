"""Where checkpoints live: lookup order, the official download, and an atomic, verified write."""

from __future__ import annotations

import contextlib
import http.client
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from ..errors import CheckpointError, CheckpointNotFoundError
from ..network import CHECKPOINT_VARIANTS
from ..temp_files import sibling_pattern
from ..user_dirs import folder_from, user_cache_dir
from .files import written_atomically
from .reader import PICKLE_SUFFIXES, SAFETENSORS_SUFFIX, read_state_dict, verify_state_dict

OFFICIAL_CHECKPOINTS: tuple[str, ...] = tuple(f"{name}.pth" for name in CHECKPOINT_VARIANTS)
DOWNLOAD_URL = "https://huggingface.co/lalala125/AMT/resolve/main/{name}"
MODELS_ENV = "AMT_VFI_MODELS"
CHECKPOINT_SUFFIXES = (*PICKLE_SUFFIXES, SAFETENSORS_SUFFIX)


# Partial downloads older than this are left-overs of a killed process, not another one's download.
STALE_PARTIAL_SECONDS = 24 * 3600


def search_dirs(host_dirs: Iterable[str | Path] = ()) -> list[Path]:
    """Lookup order: `$AMT_VFI_MODELS`, the host's folders (e.g. ComfyUI's), the user cache."""
    models = folder_from(MODELS_ENV)
    dirs = [models] if models is not None else []
    dirs += [Path(d) for d in host_dirs]
    dirs.append(user_cache_dir())
    unique: list[Path] = []
    for folder in dirs:
        if folder not in unique:
            unique.append(folder)
    return unique


def _candidate_names(name: str) -> list[str]:
    has_suffix = Path(name).suffix.lower() in CHECKPOINT_SUFFIXES
    stem = Path(name).stem if has_suffix else name
    names = [name] if has_suffix else []
    return names + [stem + suffix for suffix in (".pth", SAFETENSORS_SUFFIX) if stem + suffix not in names]


def _checkpoint_folders(dirs: Sequence[Path]) -> Iterator[Path]:
    """Each folder of `dirs`, then its `amt/` subfolder."""
    for folder in dirs:
        yield folder
        yield folder / "amt"


def find_checkpoint(name: str, dirs: Sequence[Path]) -> Path | None:
    """First file for `name` (also as .pth/.safetensors twin) in `dirs` or their `amt/` subfolders."""
    for folder in _checkpoint_folders(dirs):
        for candidate in _candidate_names(name):
            if (folder / candidate).is_file():
                return folder / candidate
    return None


def available_checkpoints(dirs: Sequence[Path]) -> list[str]:
    """Names of checkpoint files present in `dirs` (not checked for content)."""
    found: list[str] = []
    for folder in _checkpoint_folders(dirs):
        if folder.is_dir():
            found += sorted(p.name for p in folder.iterdir() if p.suffix.lower() in CHECKPOINT_SUFFIXES)
    return list(dict.fromkeys(found))


def _fetch(url: str, destination: Path, name: str, progress: bool) -> None:
    from tqdm import tqdm

    with urllib.request.urlopen(url, timeout=30) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        with (
            open(destination, "wb") as out,
            tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {name}", disable=not progress) as bar,
        ):
            while chunk := response.read(1 << 20):
                out.write(chunk)
                bar.update(len(chunk))


def download_checkpoint(name: str, folder: Path, progress: bool = True) -> Path:
    """Download an official checkpoint into `folder`; kept only if it verifies as an AMT checkpoint."""
    if name not in OFFICIAL_CHECKPOINTS:
        raise CheckpointNotFoundError(
            f"{name!r} is not an official AMT checkpoint, so it cannot be downloaded; "
            f"official names: {', '.join(OFFICIAL_CHECKPOINTS)}"
        )
    url = DOWNLOAD_URL.format(name=name)
    target = folder / name
    elsewhere = "" if os.environ.get(MODELS_ENV) else f" (or in a folder named by ${MODELS_ENV})"
    by_hand = f"Download it by hand and put it in {folder}{elsewhere}"
    if folder.exists() and not folder.is_dir():
        raise CheckpointNotFoundError(
            f"cannot download {name} into {folder}: it is a file, not a folder; name a folder (e.g. in ${MODELS_ENV})"
        )
    _discard_stale_partials(target)
    partial = target
    try:
        with written_atomically(target) as partial:
            _fetch(url, partial, name, progress)
            verify_state_dict(read_state_dict(partial), url)
        return target
    except CheckpointError as error:
        # Said of what arrived, not of the temp file (gone by now), and without the reader's advice.
        reason = str(error).replace(str(partial), "the file").removesuffix("; re-download it")
        raise CheckpointError(
            f"what {url} sent is not a valid AMT checkpoint ({reason}); the hub may be down or behind a login "
            f"page. {by_hand}"
        ) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as error:  # after CheckpointError
        reason = str(error) or type(error).__name__  # IncompleteRead and the like print nothing
        raise CheckpointNotFoundError(f"could not download {name} from {url} ({reason}). {by_hand}") from None


def _discard_stale_partials(target: Path) -> None:
    """Remove the temps of earlier downloads of `target` killed midway (a day old or more: a download
    running in another process now is left alone)."""
    if not target.parent.is_dir():
        return
    cutoff = time.time() - STALE_PARTIAL_SECONDS
    for temp in target.parent.glob(sibling_pattern(target.name, "partial")):
        with contextlib.suppress(OSError):
            if temp.stat().st_mtime < cutoff:
                temp.unlink()


def official_name(name: str) -> str | None:
    """The official file name for 'amt-s', 'amt-s.pth' or 'amt-s.safetensors'; None for other names."""
    for official in OFFICIAL_CHECKPOINTS:
        if name in (official, Path(official).stem, Path(official).stem + SAFETENSORS_SUFFIX):
            return official
    return None


def resolve_checkpoint(name_or_path: str | Path, host_dirs: Iterable[str | Path] = (), download: bool = True) -> Path:
    """A checkpoint file for a name or a path.

    A `Path`, or a string with a folder in it, is that file and nothing else (even when it is called
    'amt-s.pth'). A bare official name ('amt-s', 'amt-s.pth', ...) is looked up in order (`search_dirs`)
    and downloaded into the first folder of that order only when missing; any other bare name must be
    an existing file or a file name present in one of those folders.
    """
    name = str(name_or_path)
    if isinstance(name_or_path, Path) or Path(name).parent != Path("."):
        path = Path(name_or_path)
        if path.is_file():
            return path
        problem = "is a folder, not a checkpoint file" if path.is_dir() else "does not exist"
        raise CheckpointNotFoundError(f"checkpoint {name} {problem}")
    official = official_name(name)
    if official is None and Path(name).is_file():
        return Path(name)
    dirs = search_dirs(host_dirs)
    found = find_checkpoint(official or name, dirs)
    if found is not None:
        return found
    searched = ", ".join(str(d) for d in dirs)
    if official is None or not download:
        hint = "" if official else f" (official names: {', '.join(OFFICIAL_CHECKPOINTS)})"
        raise CheckpointNotFoundError(
            f"checkpoint {name!r} not found in: {searched}. Put the file in one of these folders{hint}"
        )
    return download_checkpoint(official, dirs[0])
