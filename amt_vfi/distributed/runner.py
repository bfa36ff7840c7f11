"""Running a job over a Ray cluster: clips cut into chunks, chunks rendered by model-holding actors.

The driver only plans, dispatches and joins. It probes each clip (frame count, plan), has the workers
scan the clip for scene cuts in parallel pieces (and, with `--dedup`, for repeated frames in one pass),
cuts the plan into chunks at those cuts, hands each chunk to the next idle worker and, once a clip's
chunks are all in, joins them into the output. The manifest records every step, so a rerun of the same
job redoes only what is missing.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import os
import shutil
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from ..engine import PlannedFrame
from ..errors import AmtVfiError, InputError
from ..media import SourceInfo, absolute_path, is_video_output
from ..media.atomic import check_destination, discard, signals_held
from ..media.tracks import announce_left_out_tracks
from ..media.video import CONTAINER_FORMATS
from ..pipeline import JobSettings, check_output, check_output_name, plan_for
from ..temp_files import sibling_pattern
from .chunks import DEFAULT_CHUNK_FRAMES, Chunk, choose_boundaries, make_chunks, scan_ranges
from .clips import batch_outputs, expand_batch, is_batch
from .manifest import Manifest, fingerprint, manifest_path, settings_key, still_matches, work_path
from .stitch import Part, assemble_folder, stitch_video
from .worker import ChunkDone, ChunkWorker, DataFault

MAX_RESTARTS = 3  # a worker process that dies is started again (model and all) this many times ...
MAX_TASK_RETRIES = 3  # ... and the chunk it was rendering is rendered again
CPUS_PER_CPU_WORKER = 4  # without GPUs, one worker per this many CPUs unless told otherwise

log = logging.getLogger(__name__)


@dataclass
class ClipReport:
    """How one clip went: `error` says why it has no output."""

    input: Path
    output: Path
    input_frames: int = 0
    output_frames: int = 0
    output_fps: Fraction | None = None
    chunks: int = 0
    computed: int = 0
    reused: int = 0
    error: str | None = None


@dataclass
class DistributedReport:
    clips: list[ClipReport]
    workers: list[str]
    seconds: float

    @property
    def failed(self) -> list[ClipReport]:
        return [clip for clip in self.clips if clip.error is not None]


@dataclass(frozen=True)
class ChunkEvent:
    """Sent after each chunk is rendered (or found finished by an earlier run), for progress displays."""

    clip: Path
    chunk: int | None  # None: the whole clip was finished before
    frames: int
    reused: bool
    total_frames: int


@dataclass
class _Clip:
    report: ClipReport
    work: Path
    entry: dict[str, Any] = field(default_factory=dict)
    info: SourceInfo | None = None
    plan: list[PlannedFrame] = field(default_factory=list)
    chunks: list[Chunk] = field(default_factory=list)
    cuts: list[int] = field(default_factory=list)
    scans_left: int = 0
    chunks_left: set[int] = field(default_factory=set)

    @property
    def failed(self) -> bool:
        return self.report.error is not None

    def chunk_path(self, chunk: Chunk) -> Path:
        output = self.report.output
        return self.work / f"chunk_{chunk.index:05d}{output.suffix.lower() if is_video_output(output) else ''}"


@dataclass(frozen=True)
class _Scan:
    clip: _Clip
    first: int
    last: int

    def submit(self, actor: Any) -> Any:
        return actor.scan.remote(self.clip.report.input, self.first, self.last)


@dataclass(frozen=True)
class _FindRepeats:
    clip: _Clip

    def submit(self, actor: Any) -> Any:
        return actor.keyframes.remote(self.clip.report.input)


@dataclass(frozen=True)
class _Render:
    clip: _Clip
    chunk: Chunk

    def submit(self, actor: Any) -> Any:
        keyframes = self.clip.entry["keyframes"]
        inputs = None if keyframes is None else keyframes[self.chunk.first_frame : self.chunk.last_frame + 1]
        return actor.render_chunk.remote(self.clip.report.input, self.chunk, self.clip.chunk_path(self.chunk), inputs)


_Job = _Scan | _FindRepeats | _Render


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise AmtVfiError("running on Ray needs the ray package: pip install 'amt-vfi[ray]'") from None
    return ray


# How long a cluster's address may take to answer before it counts as unreachable.
_REACH_SECONDS = 5.0


def _connect(ray: Any, address: str | None, quiet: bool) -> bool:
    """Join the cluster at `address`, or start a local one; False when this process was already connected.
    `quiet` keeps Ray's own warnings and the workers' output off the terminal (failures are still reported
    with their clip)."""
    if ray.is_initialized():
        return False
    options = {"logging_level": logging.ERROR, "log_to_driver": False} if quiet else {"logging_level": logging.WARNING}
    advice = "start it (ray start --head) or give --ray without an address"
    if address:
        _check_reachable(address, advice)
    # ray.init makes SIGTERM exit (unwinding); a handler the caller installed (the CLI's: like Ctrl-C) is put back.
    main_thread = threading.current_thread() is threading.main_thread()
    on_terminate = signal.getsignal(signal.SIGTERM) if main_thread else None
    if on_terminate == signal.SIG_DFL:  # dying on the spot would leave temps and the work folder behind
        on_terminate = None
    try:
        if address:
            ray.init(address=address, **options)
        else:  # a Ray of our own, even where `ray start` left a cluster (or its stale address) behind
            ray.init(address="local", include_dashboard=False, **options)
    except (ConnectionError, RuntimeError, ValueError) as error:
        reason = str(error).split(". ")[0].rstrip(".")  # Ray goes on about flags amt-vfi does not have
        where = f" at {address}" if address else ""
        raise AmtVfiError(
            f"Cannot start or reach Ray{where}: {reason}; {advice if address else 'check the Ray install'}"
        ) from None
    finally:
        if on_terminate is not None:
            signal.signal(signal.SIGTERM, on_terminate)
    return True


def _check_reachable(address: str, advice: str) -> None:
    """Fail at once where nothing answers at a cluster's address (`ray.init` retries there for minutes)."""
    target = os.environ.get("RAY_ADDRESS", "") if address == "auto" else address
    host, separator, port = target.removeprefix("ray://").rpartition(":")
    if not separator or not port.isdigit():
        return  # 'auto' without RAY_ADDRESS: Ray finds the local cluster itself, or says there is none
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=_REACH_SECONDS).close()  # [::1]:6379
    except OSError as error:
        raise AmtVfiError(f"Cannot reach Ray at {target}: {error.strerror or error}; {advice}") from None


def _worker_layout(ray: Any, settings: JobSettings, workers: int | None) -> tuple[int, dict[str, Any], int | None]:
    """How many workers, their Ray resources, and torch threads each: a GPU apiece where the cluster has
    GPUs, else an even share of the CPUs; refused up front when the cluster cannot hold them (Ray would
    otherwise wait forever)."""
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 0))
    if settings.device == "cuda" and not gpus:
        raise AmtVfiError("--device cuda was asked for but the Ray cluster has no GPUs")
    if gpus and settings.device in ("auto", "cuda"):
        count = workers or gpus
        if count > gpus:
            raise AmtVfiError(f"{count} workers need {count} GPUs but the Ray cluster has {gpus}")
        return count, {"num_gpus": 1, "num_cpus": 1}, None
    count = workers or max(1, cpus // CPUS_PER_CPU_WORKER)
    if count > cpus:
        raise AmtVfiError(f"{count} CPU workers need a CPU each but the Ray cluster has {cpus}")
    largest_node = max(int(node["Resources"].get("CPU", 0)) for node in ray.nodes() if node["Alive"])
    share = max(1, min(cpus // count, largest_node))
    return count, {"num_gpus": 0, "num_cpus": share}, share


def _start_workers(ray: Any, settings: JobSettings, workers: int | None) -> tuple[list[Any], list[str]]:
    count, resources, threads = _worker_layout(ray, settings, workers)
    actor_class = ray.remote(ChunkWorker).options(
        **resources, max_restarts=MAX_RESTARTS, max_task_retries=MAX_TASK_RETRIES
    )
    actors = [actor_class.remote(settings, threads) for _ in range(count)]
    try:
        return actors, ray.get([actor.describe.remote() for actor in actors])
    except ray.exceptions.RayError as error:
        for actor in actors:
            ray.kill(actor)
        raise AmtVfiError(f"a Ray worker could not load the model: {_reason(error)}") from None


def _reason(error: Exception) -> str:
    """The original error inside a Ray error, in one line."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, Exception):
        return f"{type(cause).__name__}: {cause}" if not isinstance(cause, AmtVfiError) else str(cause)
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


class _Run:
    """One job's state on the driver: clips, the work queue, the workers and the manifest."""

    def __init__(
        self,
        clips: list[_Clip],
        settings: JobSettings,
        manifest: Manifest,
        *,
        chunk_frames: int,
        overwrite: bool,
        single: bool,
        on_chunk: Callable[[ChunkEvent], None],
    ) -> None:
        self.clips, self.settings, self.manifest = clips, settings, manifest
        self.chunk_frames, self.overwrite, self.single, self.on_chunk = chunk_frames, overwrite, single, on_chunk
        self.queue: deque[_Job] = deque()
        self.total_frames = sum(len(clip.plan) for clip in clips)

    # -- clip states ------------------------------------------------------------------------------

    def fail(self, clip: _Clip, message: str) -> None:
        """Record why a clip has no output; a one-clip job stops right here with that error. The manifest
        is not written for it: a job refused before any work leaves an earlier job's record as it was."""
        clip.report.error = message
        if self.single:
            raise AmtVfiError(message)

    def resume(self, clip: _Clip) -> None:
        """Reuse what an earlier run finished and verified; queue the rest."""
        if still_matches(clip.report.output, clip.entry["done"]):
            clip.report.chunks = clip.report.reused = len(clip.entry["chunks"])
            self.on_chunk(ChunkEvent(clip.report.input, None, len(clip.plan), True, self.total_frames))
            return
        clip.entry["done"] = None
        try:
            check_destination(clip.report.output, self.overwrite)
        except AmtVfiError as error:
            self.fail(clip, str(error))
            return
        if clip.entry["boundaries"] is not None:
            self.cut(clip)
            return
        if self.settings.dedup_threshold is not None and clip.entry["keyframes"] is None:
            clip.scans_left += 1
            self.queue.append(_FindRepeats(clip))
        if self.settings.scene_threshold is not None:
            ranges = scan_ranges(clip.report.input_frames, self.chunk_frames)
            clip.scans_left += len(ranges)
            self.queue.extend(_Scan(clip, first, last) for first, last in ranges)
        if not clip.scans_left:
            self.choose_boundaries(clip)

    def choose_boundaries(self, clip: _Clip) -> None:
        """Chunk boundaries once every scan is in. With `--dedup` they count the kept frames (the ones the
        engine sees), and a cut falls on the first kept frame of its scene."""
        frames, cuts = clip.report.input_frames, clip.cuts
        keyframes = clip.entry["keyframes"]
        if keyframes is not None:
            frames, cuts = len(keyframes), [bisect.bisect_left(keyframes, cut) for cut in cuts]
        clip.entry["boundaries"] = choose_boundaries(frames, self.chunk_frames, cuts)
        self.cut(clip)

    def cut(self, clip: _Clip) -> None:
        """Cut the clip's plan at its boundaries; queue the chunks no earlier run left verified."""
        keyframes = clip.entry["keyframes"]
        if keyframes is not None:  # the same output times, interpolated between the kept frames only
            assert clip.info is not None
            clip.plan = self.settings.timing.plan(clip.report.input_frames, clip.info.fps, keyframes)
        clip.chunks = make_chunks(clip.plan, clip.entry["boundaries"])
        clip.report.chunks = len(clip.chunks)
        recorded = clip.entry["chunks"]
        for chunk in clip.chunks:
            if still_matches(clip.chunk_path(chunk), recorded.get(str(chunk.index))):
                clip.report.reused += 1
                self.on_chunk(ChunkEvent(clip.report.input, chunk.index, chunk.frames, True, self.total_frames))
            else:
                recorded.pop(str(chunk.index), None)
                clip.chunks_left.add(chunk.index)
                self.queue.append(_Render(clip, chunk))
        self.manifest.save()
        if not clip.chunks_left:
            self.join(clip)

    def scanned(self, scan: _Scan, cuts: list[int]) -> None:
        clip = scan.clip
        clip.cuts.extend(cuts)
        clip.scans_left -= 1
        if clip.scans_left == 0:
            self.choose_boundaries(clip)

    def found_repeats(self, job: _FindRepeats, keyframes: list[int]) -> None:
        clip = job.clip
        clip.entry["keyframes"] = keyframes
        self.manifest.save()
        clip.scans_left -= 1
        if clip.scans_left == 0:
            self.choose_boundaries(clip)

    def rendered(self, job: _Render, done: ChunkDone) -> None:
        clip, chunk = job.clip, job.chunk
        if done.frames != chunk.frames:
            self.fail(clip, f"chunk {chunk.index} of {clip.report.input} gave {done.frames} frames, not {chunk.frames}")
            return
        clip.entry["chunks"][str(chunk.index)] = done.fingerprint
        clip.chunks_left.discard(chunk.index)
        clip.report.computed += 1
        self.manifest.save()
        self.on_chunk(ChunkEvent(clip.report.input, chunk.index, chunk.frames, False, self.total_frames))
        if not clip.chunks_left and not clip.failed:
            self.join(clip)

    def join(self, clip: _Clip) -> None:
        """Stitch the finished chunks into the output, record it, drop the chunks."""
        report, info = clip.report, clip.info
        assert info is not None
        parts = [Part(clip.chunk_path(chunk), chunk.first_output, chunk.frames) for chunk in clip.chunks]
        try:
            if is_video_output(report.output):
                tracks = report.input if info.is_video else None
                stitch_video(parts, report.output, fps=report.output_fps, tracks_from=tracks, overwrite=self.overwrite)
            else:
                assemble_folder(parts, report.output, overwrite=self.overwrite, suffix=info.picture_format.suffix)
        except AmtVfiError as error:
            self.fail(clip, str(error))
            return
        except Exception as error:  # unforeseen: it fails this clip, not every other clip of the job
            self.fail(clip, f"joining the chunks of {report.output} failed ({type(error).__name__}: {error})")
            return
        clip.entry["done"] = fingerprint(report.output, len(clip.plan))
        self.manifest.save()
        shutil.rmtree(clip.work, ignore_errors=True)

    # -- dispatch ---------------------------------------------------------------------------------

    def dispatch(self, ray: Any, actors: list[Any]) -> None:
        """Keep every worker busy until the queue is empty; a worker lost for good takes its job's clip
        down with it (Ray has already restarted it and retried the job `MAX_TASK_RETRIES` times)."""
        idle = list(actors)
        running: dict[Any, tuple[Any, _Job]] = {}

        def feed() -> None:
            while idle and self.queue:
                job = self.queue.popleft()
                if not job.clip.failed:
                    actor = idle.pop()
                    running[job.submit(actor)] = (actor, job)

        feed()
        while running:
            [ref], _ = ray.wait(list(running), num_returns=1)
            actor, job = running.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayTaskError as error:  # the worker's code raised: reported with the clip
                result = DataFault(f"the worker failed: {_reason(error)}")
            except ray.exceptions.RayError as error:  # the worker is gone for good
                self.lost(job, f"its worker died {MAX_RESTARTS + 1} times ({_reason(error)})")
                if not idle and not running:
                    self.abandon("every Ray worker died")
                continue
            idle.append(actor)
            feed()  # before handling, which may join a whole clip while the workers wait
            self.handle(job, result)
            feed()

    def handle(self, job: _Job, result: list[int] | ChunkDone | DataFault) -> None:
        clip = job.clip
        if clip.failed:
            return
        if isinstance(result, DataFault):
            self.fail(clip, result.message)
        elif isinstance(job, _Scan):
            self.scanned(job, result)
        elif isinstance(job, _FindRepeats):
            self.found_repeats(job, result)
        else:
            self.rendered(job, result)

    def lost(self, job: _Job, why: str) -> None:
        if not job.clip.failed:
            what = {_Scan: "the scene scan", _FindRepeats: "the search for repeated frames"}.get(type(job))
            if isinstance(job, _Render):
                what = f"chunk {job.chunk.index}"
            self.fail(job.clip, f"{what} of {job.clip.report.input} did not finish: {why}")

    def abandon(self, why: str) -> None:
        while self.queue:
            job = self.queue.popleft()
            if not job.clip.failed:
                self.fail(job.clip, why)


def _prepare(
    inputs: list[Path], outputs: list[Path], work_root: Path, settings: JobSettings, single: bool
) -> list[_Clip]:
    """Probe every clip on the driver: frame count and plan (cheap; nothing is decoded but a frame)."""
    clips = []
    for input_path, output in zip(inputs, outputs, strict=True):
        clip = _Clip(ClipReport(input_path, output), work_root / output.name)
        try:
            # overwrite=True: an existing output may be this job's (see resume)
            check_output(input_path, output, overwrite=True, codec=settings.codec)
            with settings.open_source(input_path) as source:
                clip.info = source.info
                clip.report.input_frames, clip.plan = plan_for(source, settings.timing)
                clip.report.output_fps = settings.timing.output_fps(source.info.fps)
            if source.info.is_video and is_video_output(output):  # said now, not at the join after the work
                announce_left_out_tracks(input_path, CONTAINER_FORMATS[output.suffix.lower()])
        except AmtVfiError as error:
            if single:
                raise
            clip.report.error = str(error)
        clip.report.output_frames = len(clip.plan)
        clips.append(clip)
    return clips


def _discard_unfinished(work: Path) -> None:
    """Remove the temps of chunks whose workers were stopped mid-write (a failed one-clip job stops the
    others), and the work folder itself when nothing finished is left in it."""
    if not work.is_dir():
        return
    for temp in list(work.rglob(sibling_pattern("*", "partial"))):
        discard(temp)
    if not any(path.is_file() for path in work.rglob("*")):
        shutil.rmtree(work, ignore_errors=True)


def interpolate_distributed(
    inputs: str | Path | Sequence[str | Path],
    output: str | Path,
    settings: JobSettings | None = None,
    *,
    address: str | None = None,
    workers: int | None = None,
    chunk_frames: int = DEFAULT_CHUNK_FRAMES,
    overwrite: bool = False,
    on_chunk: Callable[[ChunkEvent], None] = lambda event: None,
    quiet: bool = False,
) -> DistributedReport:
    """Interpolate one clip, or many into the folder `output`, on Ray workers (README: "Scale-out").

    `inputs` is a video, an image folder, a list file or folder of videos, or a list of clips. `address`
    names a running cluster (e.g. 'ray://head:10001' or 'auto'); without one a local Ray is started, and
    a Ray this process already joined is used as it is. A one-clip job raises its error; a many-clip job
    reports each failed clip in the result and still finishes the others. Rerunning a job resumes it.
    `quiet` silences Ray's own messages.
    """
    start = time.perf_counter()
    settings = settings or JobSettings()
    if chunk_frames < 1:
        raise InputError(f"chunk size must be at least 1 frame, got {chunk_frames}")
    if workers is not None and workers < 1:
        raise InputError(f"workers must be at least 1, got {workers}")
    output = absolute_path(Path(output))
    if isinstance(inputs, (str, Path)) and not is_batch(Path(inputs)):
        check_output_name(output)
        clip_inputs, clip_outputs = [absolute_path(Path(inputs))], [output]
    else:
        clip_inputs = (
            expand_batch(Path(inputs)) if isinstance(inputs, (str, Path)) else [absolute_path(Path(p)) for p in inputs]
        )
        clip_outputs = batch_outputs(clip_inputs, output)
    single = len(clip_inputs) == 1 and clip_outputs[0] == output
    clips = _prepare(clip_inputs, clip_outputs, work_path(output), settings, single)
    manifest = Manifest.load(manifest_path(output), settings_key(settings, settings.resolve_model()))
    run = _Run(
        clips, settings, manifest, chunk_frames=chunk_frames, overwrite=overwrite, single=single, on_chunk=on_chunk
    )
    for clip in clips:
        if not clip.failed:
            clip.entry = manifest.clip(clip.report.input, clip.report.output)
            run.resume(clip)
    if manifest.restarted and run.queue:  # only now: a refused job leaves the earlier one's work alone
        log.warning("the settings changed since %s was written; starting the job over", manifest.path)
        shutil.rmtree(work_path(output), ignore_errors=True)
    names: list[str] = []
    if run.queue:
        ray = _import_ray()
        started, finished = False, False
        actors: list[Any] = []
        try:
            # A Ctrl-C in the middle of starting a local Ray would leave its agents running: it is taken once
            # Ray is up (joining a cluster stays interruptible: it can wait long, and starts nothing here).
            with contextlib.nullcontext() if address else signals_held():
                started = _connect(ray, address, quiet)
            actors, names = _start_workers(ray, settings, workers)
            run.dispatch(ray, actors)
            finished = True
        finally:
            # A Ctrl-C here would cut the shutdown short and leave Ray's agents running; after a finished
            # job (its outputs written) it is dropped, after an interrupted one delivered once Ray is down.
            with signals_held(deliver=not finished):
                own_local_ray = started and not address  # it goes down with its workers, without retry notices
                if not own_local_ray:
                    for actor in actors:
                        ray.kill(actor)
                if started:
                    ray.shutdown()
                _discard_unfinished(work_path(output))
    if not any(clip.failed for clip in clips):
        shutil.rmtree(work_path(output), ignore_errors=True)
    return DistributedReport([clip.report for clip in clips], names, time.perf_counter() - start)
