"""Which clips a job covers and where each one's output goes."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..media import VIDEO_EXTENSIONS, absolute_path, is_video_output
from ..media.images import list_images, natural_key
from ..media.video import CONTAINER_FORMATS

LIST_SUFFIXES = frozenset({".txt", ".lst", ".list"})
BATCH_VIDEO_SUFFIX = ".mp4"


def _videos_in(folder: Path) -> list[Path]:
    return sorted(
        (entry for entry in folder.iterdir() if entry.suffix.lower() in VIDEO_EXTENSIONS and entry.is_file()),
        key=lambda entry: natural_key(entry.name),
    )


def is_batch(path: Path) -> bool:
    """A list file (.txt, .lst, .list), or a folder holding video files, names many clips; any other
    folder is one clip made of images. A folder holding both is refused rather than guessed at."""
    if path.is_file():
        return path.suffix.lower() in LIST_SUFFIXES
    if not path.is_dir():
        return False
    videos = _videos_in(path)
    if videos and list_images(path):
        raise InputError(
            f"{path} holds both images and videos ({videos[0].name}, ...), so it is neither one clip of images "
            "nor a folder of clips: move the videos (or the images) into a folder of their own, or list the "
            "clips in a .txt file"
        )
    return bool(videos)


def _read_list(path: Path) -> list[Path]:
    """One clip per line, relative to the list's folder; blank lines and lines starting with # are skipped."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"Cannot read the list of clips {path} ({error})") from None
    names = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return [absolute_path(path.parent / Path(name).expanduser()) for name in names]


def expand_batch(path: Path) -> list[Path]:
    """The clips a list file or a folder of videos names, in order."""
    clips = _read_list(path) if path.is_file() else [absolute_path(entry) for entry in _videos_in(path)]
    if not clips:
        raise InputError(f"{path} names no clips")
    return clips


def batch_outputs(clips: list[Path], folder: Path) -> list[Path]:
    """One output per clip in `folder`: a video keeps its container (or becomes .mp4 when that container
    cannot be written), an image folder stays a folder. Two clips with one output name are refused."""
    if is_video_output(folder) or (folder.exists() and not folder.is_dir()):
        raise InputError(f"OUTPUT {folder} must be a folder when the input is many clips")
    outputs: dict[Path, Path] = {}
    for clip in clips:
        suffix = clip.suffix.lower()
        if suffix in VIDEO_EXTENSIONS:
            name = clip.stem + (suffix if suffix in CONTAINER_FORMATS else BATCH_VIDEO_SUFFIX)
        else:
            name = clip.name
        output = absolute_path(folder) / name
        if output in outputs:
            raise InputError(f"{outputs[output]} and {clip} would both be written to {output}; rename one")
        outputs[output] = clip
    return list(outputs)
