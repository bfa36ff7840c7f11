"""The resumable record of a job: which chunks and clips are finished, and how to recognise them again.

The manifest is JSON next to the output (``.OUTPUT.amt-vfi-manifest.json``), rewritten atomically after
every finished chunk, so an interrupted job loses at most the chunks in flight. A rerun trusts an entry
only when the settings (the checkpoint's content included), the input (names, sizes and modification
times of its files) and the file it names (frame count, size and SHA-256) are all unchanged; anything else
is computed again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from ..media.atomic import atomic_output
from ..pipeline import JobSettings

VERSION = 1


def manifest_path(output: Path) -> Path:
    return output.with_name(f".{output.name}.amt-vfi-manifest.json")


def work_path(output: Path) -> Path:
    """The hidden folder next to the output where chunks wait to be joined."""
    return output.with_name(f".{output.name}.amt-vfi-work")


def _files(path: Path) -> list[Path]:
    return sorted(entry for entry in path.iterdir() if entry.is_file()) if path.is_dir() else [path]


def _content_digest(path: Path) -> tuple[str, int]:
    """SHA-256 and size of a file, or of a folder's files in name order (their names included)."""
    digest = hashlib.sha256()
    size = 0
    for file in _files(path):
        digest.update(file.name.encode() + b"\0")
        with file.open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
                size += len(block)
    return digest.hexdigest(), size


def fingerprint(path: Path, frames: int) -> dict[str, Any]:
    """What a finished chunk or output must still look like to be reused: frames, bytes and a hash of the
    file (or of a folder's files in name order)."""
    sha256, size = _content_digest(path)
    return {"frames": frames, "bytes": size, "sha256": sha256}


def still_matches(path: Path, recorded: dict[str, Any] | None) -> bool:
    """True when `path` exists and has the recorded fingerprint."""
    if not recorded or not path.exists():
        return False
    return fingerprint(path, recorded["frames"]) == recorded


def input_identity(path: Path) -> dict[str, int | str]:
    """Size and newest modification time of an input file or image folder, and a digest of its files'
    names, sizes and times: an edited input, or a folder whose frames were renamed or reordered, starts over."""
    files = _files(path)
    stats = [file.stat() for file in files]
    listing = hashlib.sha256()
    for file, stat in zip(files, stats, strict=True):
        listing.update(f"{file.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return {
        "bytes": sum(s.st_size for s in stats),
        "mtime_ns": max(s.st_mtime_ns for s in stats),
        "files": len(stats),
        "listing": listing.hexdigest(),
    }


def settings_key(settings: JobSettings, checkpoint: Path) -> dict[str, str]:
    """The settings as strings, with the checkpoint actually used, for comparing against a rerun."""
    key = {name: str(value) for name, value in dataclasses.asdict(settings).items()}
    key["checkpoint"] = f"{checkpoint.resolve()} (sha256 {_content_digest(checkpoint)[0]})"  # same size, new weights
    return key


class Manifest:
    """Per-clip entries keyed by input path: the frames kept by `--dedup`, the chunk boundaries, finished
    chunks and the finished output."""

    def __init__(self, path: Path, settings: dict[str, str]) -> None:
        self.path = path
        self.settings = settings
        self.clips: dict[str, dict[str, Any]] = {}
        self.restarted = False

    @classmethod
    def load(cls, path: Path, settings: dict[str, str]) -> Manifest:
        """The manifest at `path` if it was written for these settings, else an empty one."""
        manifest = cls(path, settings)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return manifest
        except (OSError, ValueError):
            data = None
        if isinstance(data, dict) and data.get("version") == VERSION and data.get("settings") == settings:
            manifest.clips = data["clips"]
        else:
            manifest.restarted = True
        return manifest

    def clip(self, input_path: Path, output: Path) -> dict[str, Any]:
        """The entry of one clip, reset when the input or the output path changed since it was written."""
        identity = input_identity(input_path)
        entry = self.clips.get(str(input_path))
        if entry is None or entry["input"] != identity or entry["output"] != str(output):
            entry = {
                "input": identity,
                "output": str(output),
                "keyframes": None,
                "boundaries": None,
                "chunks": {},
                "done": None,
            }
            self.clips[str(input_path)] = entry
        entry.setdefault("keyframes", None)  # not in entries written before --dedup ran on Ray
        return entry

    def save(self) -> None:
        """Write to a temp next to the manifest, then rename it over the old one."""
        with atomic_output(self.path, overwrite=True, directory=False) as temp:
            temp.write_text(json.dumps({"version": VERSION, "settings": self.settings, "clips": self.clips}, indent=1))
