"""`amt-vfi`: interpolate a video file or an image folder into a smoother one."""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import signal
import sys
import threading
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

from .. import __version__
from ..distributed import DEFAULT_CHUNK_FRAMES, ChunkEvent, interpolate_distributed, is_batch
from ..engine import DEFAULT_CUT_THRESHOLD, DEFAULT_DUPLICATE_THRESHOLD, DEVICE_CHOICES, PRECISION_CHOICES
from ..engine.devices import is_out_of_memory
from ..engine.padding import usable_scale_factor
from ..errors import AmtVfiError, InputError, first_line
from ..media import DEFAULT_CODEC, absolute_path
from ..network import CHECKPOINT_VARIANTS, CORRELATION_MODES
from ..pipeline import JobReport, JobSettings, Timing, interpolate_file, option_problem
from . import interrupted

DEBUG_VARIABLE = "AMT_VFI_DEBUG"
DEMO_CLIP = Path(__file__).resolve().parent.parent / "assets" / "demo.mp4"
EXAMPLES = """examples:
  amt-vfi clip.mp4 -o clip_2x.mp4                   double the frame rate (24 -> 48 fps)
  amt-vfi clip.mp4 -o clip_60.mp4 --fps 60          any target rate, each frame at its exact time
  amt-vfi frames/ -o smooth/ --multiplier 4         a folder of images in, numbered PNGs out
  amt-vfi plates/ -o smooth/                        DPX sequences stay DPX, at their bit depth
  amt-vfi render.mov -o out.mp4 --model amt-l --device cuda --precision fp16
  amt-vfi uhd.mp4 -o uhd_2x.mp4 --scale 0.5         4K: the network works at half resolution
  amt-vfi --demo -o demo_2x.mp4                     try it on the clip that ships with amt-vfi
  amt-vfi film.mkv -o film_2x.mkv --ray             chunks over a local Ray (resumable: rerun it)
  amt-vfi clips.txt -o smooth/ --ray=auto           many clips (.txt/.lst/.list or a folder of videos)
                                                    on this machine's Ray cluster

checkpoints are looked up in $AMT_VFI_MODELS, then the user cache (~/.cache/amt-vfi), and
downloaded there on first use; --checkpoint uses a file directly."""


def _checked(name: str, value: float, text: str) -> float:
    """`value` (typed as `text`) when the job option `name` accepts it, else the rule as argparse's message."""
    problem = option_problem(name, value, text)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return value


def _rate(text: str) -> Fraction:
    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a frame rate (use e.g. 60, 59.94 or 60000/1001)") from None
    return _checked("fps", value, text)


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (use e.g. 0.5)")
    return value


def _multiplier(text: str) -> int:
    return _checked("multiplier", _whole(text), text)


def _cut_threshold(text: str) -> float:
    return _checked("scene_threshold", _number(text), text)


def _repeat_threshold(text: str) -> float:
    return _checked("dedup_threshold", _number(text), text)


def _crf(text: str) -> int:
    return _checked("crf", _whole(text), text)


def _path(text: str) -> Path:
    """A file or folder name; '' would mean the current folder and '-' a pipe, neither of which is meant."""
    if not text.strip():
        raise argparse.ArgumentTypeError("the path is empty")
    if text == "-":
        raise argparse.ArgumentTypeError("'-' (a pipe) is not supported; give a video file or a folder")
    return Path(text)


def _scale(text: str) -> float:
    try:
        return usable_scale_factor(_number(text))
    except InputError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="amt-vfi",
        description="Make a video smoother by synthesising in-between frames with AMT (CVPR 2023).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", nargs="?", type=_path, help="a video file or a folder of images")
    parser.add_argument("-o", "--output", type=_path, required=True, help="a video file (.mp4, .mkv, ...) or a folder")
    timing = parser.add_mutually_exclusive_group()
    timing.add_argument("--multiplier", type=_multiplier, help="N times the frame rate (default 2)")
    timing.add_argument("--fps", type=_rate, help="target frame rate, e.g. 60 or 60000/1001")
    parser.add_argument("--demo", action="store_true", help="use the short clip that ships with amt-vfi as input")
    model = parser.add_argument_group("model")
    weights = model.add_mutually_exclusive_group()  # a checkpoint file decides the variant itself
    weights.add_argument("--model", default="amt-s", choices=sorted(CHECKPOINT_VARIANTS), help="default amt-s")
    weights.add_argument("--checkpoint", type=_path, help="use this checkpoint file (.pth or .safetensors)")
    model.add_argument("--device", default="auto", choices=DEVICE_CHOICES, help="default auto")
    model.add_argument("--precision", default="auto", choices=PRECISION_CHOICES, help="auto: fp16 on CUDA, else fp32")
    model.add_argument(
        "--scale",
        type=_scale,
        default=1.0,
        help="network resolution factor, 0.25 to 1 (16 / S a whole number), e.g. 0.5 for 4K",
    )
    model.add_argument("--correlation", default="auto", choices=CORRELATION_MODES, help="default auto (by memory)")
    media = parser.add_argument_group("input and output")
    media.add_argument("--input-fps", type=_rate, help="frame rate of an image-folder input (default 24)")
    media.add_argument("--crf", type=_crf, default=18, help="video quality, lower is better (default 18)")
    media.add_argument(
        "--codec", default=DEFAULT_CODEC, help="video codec (default auto: H.264, VP9 in WebM; e.g. libx265, ffv1)"
    )
    media.add_argument(
        "--scene-threshold",
        type=_cut_threshold,
        default=DEFAULT_CUT_THRESHOLD,
        help=f"cut detection sensitivity, 0..1; lower finds more cuts (default {DEFAULT_CUT_THRESHOLD})",
    )
    media.add_argument("--no-scene-detect", action="store_true", help="interpolate across scene cuts too")
    media.add_argument(
        "--dedup",
        type=_repeat_threshold,
        nargs="?",
        const=DEFAULT_DUPLICATE_THRESHOLD,
        metavar="THRESHOLD",
        help="leave out repeated frames (animation on twos, padded frame rates) and interpolate over them; "
        "THRESHOLD is the mean luma difference, 0..1, below which frames repeat "
        f"(default {DEFAULT_DUPLICATE_THRESHOLD})",
    )
    media.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    media.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    _add_scale_out(parser)
    parser.add_argument("--version", action="version", version=f"amt-vfi {__version__}")
    return parser


def _positive(text: str) -> int:
    value = _whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _add_scale_out(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "scale-out (Ray)",
        "INPUT may also be a list file (.txt, one clip per line) or a folder of videos: then "
        "OUTPUT is a folder and the clips run on Ray",
    )
    group.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="render chunks on Ray workers: a local Ray, or the cluster at ADDRESS (e.g. auto, ray://head:10001)",
    )
    group.add_argument(
        "--workers", type=_positive, metavar="N", help="Ray workers (default: one per GPU, else one per 4 CPUs)"
    )
    group.add_argument(
        "--chunk-frames",
        type=_positive,
        metavar="N",
        help=f"input frames per chunk at most, ending at scene cuts where possible (default {DEFAULT_CHUNK_FRAMES})",
    )


def _input_path(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Path:
    if args.demo and args.input is not None:
        parser.error("give either INPUT or --demo, not both")
    if args.demo:
        return DEMO_CLIP
    if args.input is None:
        if args.ray and Path(args.ray).exists():  # "--ray clip.mp4 -o ...": argparse took the clip for ADDRESS
            parser.error(
                f"INPUT is required; --ray took {args.ray!r} as the cluster ADDRESS: put INPUT before --ray, or "
                "write --ray=ADDRESS"
            )
        parser.error("INPUT is required (a video file or an image folder), or use --demo")
    return args.input


def settings_from_args(args: argparse.Namespace) -> JobSettings:
    return JobSettings(
        timing=Timing(multiplier=args.multiplier or (None if args.fps else 2), fps=args.fps),
        model=args.model,
        checkpoint=args.checkpoint,
        device=args.device,
        precision=args.precision,
        correlation=args.correlation,
        scale=args.scale,
        input_fps=args.input_fps,
        scene_threshold=None if args.no_scene_detect else args.scene_threshold,
        dedup_threshold=args.dedup,
        crf=args.crf,
        codec=args.codec,
    )


def run(args: argparse.Namespace, input_path: Path) -> JobReport:
    """The job in this process, with a progress bar from the moment it is planned."""
    from tqdm import tqdm

    with contextlib.ExitStack() as stack:
        bars: list[tqdm] = []

        def progress(written: int, total: int) -> None:
            if not bars:
                bar = tqdm(total=total, unit="frame", disable=args.quiet, dynamic_ncols=True)
                bars.append(stack.enter_context(bar))
            bars[0].update(written - bars[0].n)

        settings = settings_from_args(args)
        return interpolate_file(input_path, args.output, settings, overwrite=args.overwrite, progress=progress)


def _summary(report: JobReport) -> str:
    fps = float(report.output_fps)
    return (
        f"amt-vfi: {report.input_frames} frames in, {report.output_frames} out at {fps:g} fps "
        f"in {report.seconds:.1f} s -> {report.output}"
    )


def _uses_ray(args: argparse.Namespace, input_path: Path, parser: argparse.ArgumentParser) -> bool:
    if args.ray is not None or is_batch(input_path):
        return True
    if (args.workers is not None or args.chunk_frames is not None) and input_path.exists():  # else: "not found"
        parser.error("--workers and --chunk-frames apply to Ray jobs; add --ray")
    return False


def _count(number: int, thing: str) -> str:
    return f"{number} {thing}{'' if number == 1 else 's'}"


def run_on_ray(args: argparse.Namespace, input_path: Path) -> int:
    """Chunks (and clips) over Ray workers; failed clips of a many-clip job are listed and make it exit 1."""
    from tqdm import tqdm

    with tqdm(unit="frame", disable=args.quiet, dynamic_ncols=True) as bar:

        def progress(event: ChunkEvent) -> None:
            bar.total = event.total_frames
            bar.update(event.frames)

        report = interpolate_distributed(
            input_path,
            args.output,
            settings_from_args(args),
            address=args.ray or None,
            workers=args.workers,
            chunk_frames=args.chunk_frames or DEFAULT_CHUNK_FRAMES,
            overwrite=args.overwrite,
            on_chunk=progress,
            quiet=args.quiet,
        )
    for clip in report.failed:
        print(f"amt-vfi: error: {clip.input}: {clip.error}", file=sys.stderr)
    if not args.quiet:
        chunks = sum(clip.chunks for clip in report.clips)
        reused = sum(clip.reused for clip in report.clips)
        workers = f", on {_count(len(report.workers), 'Ray worker')}" if report.workers else ""
        where = f"({_count(chunks, 'chunk')}, {reused} reused from an earlier run{workers})"
        if len(report.clips) == 1 and report.clips[0].output == absolute_path(args.output):
            clip = report.clips[0]
            job = JobReport(clip.input_frames, clip.output_frames, clip.output_fps, report.seconds, args.output)
            print(f"{_summary(job)} {where}")
        else:
            done = f"{len(report.clips) - len(report.failed)} of {len(report.clips)} clips done"
            print(f"amt-vfi: {done} in {report.seconds:.1f} s -> {args.output} {where}")
    return 1 if report.failed else 0


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _terminate_like_ctrl_c() -> Iterator[None]:
    """`kill`, `timeout` and `docker stop` send SIGTERM, which would end the process on the spot and leave
    the temporary output behind; while the job runs it unwinds the way Ctrl-C does instead."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _WarningLines(logging.Handler):
    """The library's warnings (a subtitle track left out, metadata not copied) as `amt-vfi: warning:`
    lines written above the progress bar, not into it."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        tqdm.write(f"amt-vfi: warning: {record.getMessage()}", file=sys.stderr)


@contextlib.contextmanager
def _warnings_as_lines() -> Iterator[None]:
    logger = logging.getLogger("amt_vfi")
    handler = _WarningLines(logging.WARNING)
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    input_path = _input_path(args, parser)
    with _terminate_like_ctrl_c(), _warnings_as_lines():
        return _run_job(args, input_path, parser)


def _run_job(args: argparse.Namespace, input_path: Path, parser: argparse.ArgumentParser) -> int:
    on_ray = False
    try:
        on_ray = _uses_ray(args, input_path, parser)
        if on_ray:
            return run_on_ray(args, input_path)
        report = run(args, input_path)
    except AmtVfiError as error:
        print(f"amt-vfi: error: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # a bug: still one line (and no partial output), the details on request
        if os.environ.get(DEBUG_VARIABLE) == "1":
            raise
        if is_out_of_memory(error):  # outside the engine's fallbacks (e.g. a frame too large for the RAM)
            print(
                f"amt-vfi: error: out of memory ({first_line(error)}); use --scale 0.5, a smaller "
                "input, or a machine with more memory",
                file=sys.stderr,
            )
            return 1
        print(
            f"amt-vfi: error: unexpected {type(error).__name__}: {error}. This is a bug in amt-vfi; please report "
            f"it with the command line ({DEBUG_VARIABLE}=1 shows where it happened)",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        return interrupted("finished chunks are kept; rerun the same command to resume") if on_ray else interrupted()
    if not args.quiet:
        print(_summary(report))
    return 0
