"""One interpolation job: a source streamed through the engine into a sink.

The same pieces serve the single-process CLI and the distributed runner: a job is a whole plan, and a
chunk is the part of it whose pairs start in a range of input frames.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from ..checkpoints import resolve_checkpoint
from ..engine import (
    DEFAULT_CUT_THRESHOLD,
    DEVICE_CHOICES,
    Interpolator,
    PlannedFrame,
    cut_detector,
    distinct_frames,
    exact_rate,
    multiplier_plan,
    resample_plan,
    retime_plan,
    retime_positions,
)
from ..engine.devices import check_precision
from ..engine.memory import check_correlation
from ..engine.padding import usable_scale_factor
from ..errors import InputError
from ..media import DEFAULT_CODEC, FrameSink, FrameSource, is_video_output, open_sink, open_source
from ..media.atomic import check_destination
from ..media.video import CONTAINER_FORMATS, check_crf, check_video_output
from .background import BackgroundWriter, prefetch

# The ranges of the job's numeric options: what each must be, for the library's messages and the CLI's.
_RULES: dict[str, tuple[Callable[[float], bool], bool, str]] = {  # name: (test, whole numbers only, rule)
    "multiplier": (lambda v: 2 <= v <= 1000, True, "must be 2 to 1000 (the output has N times the frames)"),
    "fps": (lambda v: 0 < v <= 1000, False, "must be a frame rate above 0 and at most 1000"),
    "scene_threshold": (lambda v: 0 < v <= 1, False, "must be above 0 and at most 1 (lower finds more cuts)"),
    "dedup_threshold": (lambda v: 0 <= v < 1, False, "must be at least 0 and below 1 (higher finds more repeats)"),
    "crf": (lambda v: 0 <= v <= 63, True, "must be 0 (lossless) to 63 (H.264 and H.265 stop at 51)"),
}


def option_problem(name: str, value: object, shown: str | None = None) -> str | None:
    """What is wrong with `value` for the job option `name` ('must be ..., got ...'), or None. `shown` is
    how the value was written (the CLI's text), when not its repr."""
    test, whole, rule = _RULES[name]
    try:
        number = float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else math.nan
    except OverflowError:
        return f"{rule}, got {shown or 'a number too large to use'}"
    shown = shown or (str(value) if isinstance(value, numbers.Real) else repr(value))
    if not math.isfinite(number):
        return f"must be a number, got {shown}"
    if whole and not number.is_integer():
        return f"must be a whole number, got {shown}"
    return None if test(value) else f"{rule}, got {shown}"


def _checked_option(name: str, value: object) -> object:
    problem = option_problem(name, value)
    if problem is not None:
        raise InputError(f"{name} {problem}")
    return value


def _set(settings: object, name: str, value: object) -> None:
    """Normalise a field of a frozen dataclass while it is being made."""
    object.__setattr__(settings, name, value)


@dataclass(frozen=True)
class Timing:
    """How the output rate is chosen: an integer multiplier of the input rate, or a target rate."""

    multiplier: int | None = None
    fps: Fraction | None = None

    def __post_init__(self) -> None:
        if (self.multiplier is None) == (self.fps is None):
            raise InputError("give the timing a multiplier (e.g. 2) or a target fps (e.g. 60): one of them, not both")
        if self.multiplier is not None:
            _set(self, "multiplier", int(_checked_option("multiplier", self.multiplier)))
        else:
            _set(self, "fps", exact_rate(_checked_option("fps", self.fps)))

    def output_fps(self, input_fps: Fraction) -> Fraction:
        return Fraction(input_fps) * self.multiplier if self.multiplier else Fraction(self.fps)

    def plan(self, frame_count: int, input_fps: Fraction, keyframes: Sequence[int] | None = None) -> list[PlannedFrame]:
        """A multiplier keeps every original at every N-th position ((frames - 1) * N + 1 frames); a
        target rate places output frames over the input's whole duration, each at its exact time.

        With `keyframes` (the frames that are not repeats) the same output times are interpolated between
        keyframes only, so repeated frames become motion instead of stutter; plan sources then index the
        keyframes."""
        if keyframes is None:
            if self.multiplier:
                return multiplier_plan(frame_count, self.multiplier)
            return retime_plan(frame_count, Fraction(input_fps), self.output_fps(input_fps))
        if self.multiplier:
            positions = [Fraction(j, self.multiplier) for j in range((frame_count - 1) * self.multiplier + 1)]
        else:
            positions = retime_positions(frame_count, Fraction(input_fps), self.output_fps(input_fps))
        return resample_plan(keyframes, positions)


@dataclass(frozen=True)
class JobSettings:
    """Everything besides the paths that decides the output, so a worker process can rebuild the job.

    `checkpoint` is a file given explicitly; otherwise `model` is looked up (and downloaded) where the
    engine is built, so workers on other machines find it in their own cache.
    """

    timing: Timing = Timing(multiplier=2)
    model: str = "amt-s"
    checkpoint: Path | None = None
    device: str = "auto"
    precision: str = "auto"
    correlation: str = "auto"
    scale: float = 1.0
    input_fps: Fraction | None = None
    scene_threshold: float | None = DEFAULT_CUT_THRESHOLD
    dedup_threshold: float | None = None
    crf: int = 18
    codec: str = DEFAULT_CODEC

    def __post_init__(self) -> None:
        """Refuse nonsense before any work (the device itself is checked where the engine runs: a Ray
        driver may have no GPU while its workers do)."""
        if not isinstance(self.timing, Timing):
            raise InputError(f"timing must be a Timing, e.g. Timing(multiplier=2), got {self.timing!r}")
        for name in ("scene_threshold", "dedup_threshold"):
            if getattr(self, name) is not None:
                _set(self, name, float(_checked_option(name, getattr(self, name))))
        _set(self, "crf", int(_checked_option("crf", self.crf)))
        check_crf(self.codec, self.crf)
        if self.input_fps is not None:
            _set(self, "input_fps", exact_rate(_checked_option("fps", self.input_fps)))
        if isinstance(self.device, torch.device):
            _set(self, "device", str(self.device))
        if not isinstance(self.model, str) or not self.model.strip():
            raise InputError(f"model must be a checkpoint name such as 'amt-s' or 'amt-l.pth', got {self.model!r}")
        if isinstance(self.checkpoint, str):
            _set(self, "checkpoint", Path(self.checkpoint))
        if not isinstance(self.device, str) or self.device.split(":")[0] not in DEVICE_CHOICES:
            raise InputError(f"device must be one of {', '.join(DEVICE_CHOICES)}, not {self.device!r}")
        check_precision(self.precision)
        check_correlation(self.correlation)
        usable_scale_factor(self.scale)

    def resolve_model(self) -> Path:
        """The checkpoint file, found or downloaded now, so a missing model is reported before any work."""
        if self.checkpoint is None:
            return resolve_checkpoint(self.model)
        if not self.checkpoint.is_file():
            problem = "is a folder, not a checkpoint file" if self.checkpoint.is_dir() else "does not exist"
            raise InputError(f"checkpoint (--checkpoint) {self.checkpoint} {problem}")
        return self.checkpoint

    def engine(self) -> Interpolator:
        return Interpolator(
            self.resolve_model(),
            device=self.device,
            precision=self.precision,
            correlation=self.correlation,
            scale_factor=self.scale,
            autotune=True,
        )

    def open_source(self, path: Path) -> FrameSource:
        source = open_source(path, fps=self.input_fps)
        if self.input_fps is not None and source.info.is_video:
            source.close()
            raise InputError(
                f"--input-fps (input_fps) sets the rate of an image-folder input, but {path} is a video, whose "
                "rate comes from the file (changing it would put the sound out of step); leave it out"
            )
        return source

    def open_output(self, path: Path, source: FrameSource, *, overwrite: bool, with_tracks: bool = True) -> FrameSink:
        """The sink for `source`'s interpolated frames, with a video's audio and subtitle tracks (chunks
        leave them to the final remux)."""
        info = source.info
        return open_sink(
            path,
            fps=self.timing.output_fps(info.fps),
            width=info.width,
            height=info.height,
            bit_depth=info.bit_depth,
            overwrite=overwrite,
            crf=self.crf,
            codec=self.codec,
            tracks_from=source.path if with_tracks and info.is_video else None,
            metadata_from=source if info.is_video else None,
            picture_format=info.picture_format,
        )


def check_output(input_path: Path, output: Path, overwrite: bool, codec: str = DEFAULT_CODEC) -> None:
    """Refuse to write over the input (or a folder holding it), over an existing output without
    `overwrite` (or, even with it, a folder holding more than an earlier output's frames), or a video
    whose container cannot hold `codec` (all before any work)."""
    if input_path.exists() and output.resolve() == input_path.resolve():
        raise InputError(f"OUTPUT {output} is the input; choose another path")
    if input_path.exists() and input_path.resolve().is_relative_to(output.resolve()):
        raise InputError(
            f"OUTPUT {output} is a folder holding the input {input_path}; replacing it would delete the input, "
            "choose another path"
        )
    destination = output.absolute()
    check_destination(destination, overwrite)
    if is_video_output(destination):
        check_video_output(destination, codec)


def check_output_name(output: Path) -> None:
    """Refuse an output named like a file amt-vfi does not write (out.mp5, out.png), which would otherwise
    become a folder of images with that name; an existing folder may be called anything."""
    suffix = output.suffix.lower()
    if suffix and not is_video_output(output) and not output.is_dir():
        known = ", ".join(sorted(CONTAINER_FORMATS))
        raise InputError(
            f"OUTPUT {output}: {suffix} is not a video format amt-vfi writes ({known}); for a folder of images "
            "give a name without an extension, or create the folder first"
        )


def to_tensor(frame: np.ndarray) -> torch.Tensor:
    """uint8/uint16 H x W x 3 -> float32 in [0, 1]."""
    scale = 255.0 if frame.dtype == np.uint8 else 65535.0
    return torch.from_numpy(frame).float().div_(scale)


def to_array(frame: torch.Tensor, bit_depth: int) -> np.ndarray:
    """float32 H x W x 3 in [0, 1] -> uint8 or uint16, rounded (originals round-trip exactly)."""
    if bit_depth == 16:
        return frame.mul(65535.0).round_().clamp_(0, 65535).numpy().astype(np.uint16)
    return frame.mul(255.0).round_().clamp_(0, 255).to(torch.uint8).numpy()


def render(
    engine: Interpolator,
    frames: Iterator[np.ndarray],
    plan: Sequence[PlannedFrame],
    sink: FrameSink,
    *,
    first_frame: int = 0,
    scene_threshold: float | None = None,
    on_frame: Callable[[], None] = lambda: None,
) -> int:
    """Write the frames of `plan` to `sink`; `frames` starts at input frame `first_frame`.

    Decoding runs ahead on one thread and encoding behind on another, so both overlap the network.
    Returns the number of frames written.
    """
    local_plan = [PlannedFrame(item.source - first_frame, item.time) for item in plan]
    is_cut = cut_detector(scene_threshold) if scene_threshold is not None else None
    tensors = (to_tensor(frame) for frame in frames)
    writer = BackgroundWriter(sink.write)
    written = 0
    try:
        # Closed explicitly, the decode thread stops before the source is closed under it.
        with (
            contextlib.closing(prefetch(tensors)) as decoded,
            contextlib.closing(engine.run(decoded, local_plan, is_cut=is_cut)) as outputs,
        ):
            for frame in outputs:
                writer.put(to_array(frame, sink.bit_depth))
                written += 1
                on_frame()
    except BaseException:
        writer.finish(discard=True)
        raise
    writer.finish()
    return written


@dataclass(frozen=True)
class JobReport:
    input_frames: int
    output_frames: int
    output_fps: Fraction
    seconds: float
    output: Path


def check_constant_rate(source: FrameSource) -> None:
    if source.info.variable_frame_rate:
        raise InputError(
            f"{source.path} has a variable frame rate, which this tool does not retime; convert it to a "
            "constant rate first (e.g. ffmpeg -i IN -fps_mode cfr OUT)"
        )


def plan_for(
    source: FrameSource, timing: Timing, keyframes: Sequence[int] | None = None
) -> tuple[int, list[PlannedFrame]]:
    check_constant_rate(source)
    count = source.count_frames()
    return count, timing.plan(count, source.info.fps, keyframes)


def keyframes_of(source: FrameSource, threshold: float) -> list[int]:
    """The frames that are not repeats of the one before (a pass over the whole input, so a source that
    cannot be planned is refused first)."""
    check_constant_rate(source)
    return distinct_frames((to_tensor(frame) for frame in source.frames()), threshold)


def interpolate_file(
    input_path: str | Path,
    output: str | Path,
    settings: JobSettings | None = None,
    *,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> JobReport:
    """Interpolate a video or an image folder into a video or an image folder, in this process: the
    `amt-vfi` command's job (`settings` holds its options; `interpolate_distributed` runs it on Ray).

    Everything cheap is checked before any work: the output (never over the input, nor over an existing
    file without `overwrite`), the model (found or downloaded), the input's rate. The input is then read
    once (twice with dedup), decoded, interpolated and encoded in a stream, and the output appears only
    when it is complete. `progress(written, total)` is called once the output is planned (0 written) and
    after each output frame.
    """
    start = time.perf_counter()
    settings = JobSettings() if settings is None else settings
    if not isinstance(settings, JobSettings):
        raise InputError(f"settings must be a JobSettings, e.g. JobSettings(timing=Timing(fps=60)), got {settings!r}")
    input_path, output = Path(input_path), Path(output)
    check_output_name(output)
    check_output(input_path, output, overwrite, settings.codec)
    settings.resolve_model()  # a missing model is reported before the input is read (dedup reads it all)
    with settings.open_source(input_path) as source:
        keyframes = None if settings.dedup_threshold is None else keyframes_of(source, settings.dedup_threshold)
        count, plan = plan_for(source, settings.timing, keyframes)
        frames = source.frames() if keyframes is None else frames_at(source.frames(), keyframes)
        engine = settings.engine()
        written = 0
        report = progress or (lambda written, total: None)
        report(written, len(plan))

        def one_more() -> None:
            nonlocal written
            written += 1
            report(written, len(plan))

        with settings.open_output(output, source, overwrite=overwrite) as sink:
            render(engine, frames, plan, sink, scene_threshold=settings.scene_threshold, on_frame=one_more)
    return JobReport(count, written, settings.timing.output_fps(source.info.fps), time.perf_counter() - start, output)


def frames_at(frames: Iterator[np.ndarray], indices: Sequence[int]) -> Iterator[np.ndarray]:
    """The frames at `indices` (increasing) of a stream."""
    wanted = set(indices)
    return (frame for index, frame in enumerate(frames) if index in wanted)
