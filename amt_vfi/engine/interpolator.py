"""The interpolation engine shared by the library, the CLI and the ComfyUI nodes.

Frames are float tensors in [0, 1], H x W x C (C >= 3; channels past the third are dropped, as the
seed node does). Results come back on the CPU as float32 H x W x 3.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import torch

from ..checkpoints import resolve_checkpoint
from ..errors import AmtVfiError, InputError
from ..network import AMT, CorrelationMode, PairFeatures
from ..network.layers import device_constant
from .cpu_memory import KEEP_FREED_MEMORY_PIXELS, freed_memory_kept, keep_freed_memory
from .devices import release_cached_memory, resolve_device, resolve_precision
from .memory import check_correlation, correlation_budget, default_budget, least_pair_bytes, with_memory_fallback
from .model_cache import cached_model
from .padding import Padding, padding_for, usable_scale_factor
from .plan import PlannedFrame, plan_groups, whole_number

CutPredicate = Callable[[torch.Tensor, torch.Tensor], bool]
# Pixels above this are taken for 0..255 values passed as floats, below the least for values normalised
# to [-1, 1] (a little outside [0, 1] is tolerated: edits).
MOST_PIXEL_VALUE = 2.0
LEAST_PIXEL_VALUE = -0.5
# Activations of the time steps decoded together on a CPU (see Interpolator._batch_size).
CPU_BATCH_BYTES = 256 << 20
# With `overlap`, groups of the plan waiting behind a pair still being computed (originals of skipped
# pairs would otherwise pile up until the next interpolated pair).
_MOST_QUEUED = 2


def looks_channels_first(shape: Sequence[int]) -> bool:
    """A ... x C x H x W picture passed where ... x H x W x C is expected (1, 3 or 4 "rows", more than 4
    "channels"): no real picture is 3 pixels high with dozens of channels."""
    return len(shape) >= 3 and shape[-3] in (1, 3, 4) and shape[-1] > 4


def _check_frame(frame: torch.Tensor, name: str) -> None:
    if not isinstance(frame, torch.Tensor) or frame.dim() != 3 or frame.shape[-1] < 3:
        shape = tuple(frame.shape) if isinstance(frame, torch.Tensor) else type(frame).__name__
        raise InputError(f"{name} must be an H x W x C image tensor with C >= 3, got {shape}")
    if looks_channels_first(frame.shape):
        raise InputError(
            f"{name} has shape {tuple(frame.shape)}, which looks like C x H x W; frames are H x W x C "
            "(use frame.permute(1, 2, 0))"
        )
    if not frame.is_floating_point():
        raise InputError(f"{name} must hold floats in [0, 1], got dtype {frame.dtype}")
    if frame.shape[0] < 1 or frame.shape[1] < 1:
        raise InputError(f"{name} is empty ({frame.shape[0]} x {frame.shape[1]} pixels)")


def _check_times(timesteps: Sequence[float]) -> list[float]:
    try:
        times = [float(t) for t in timesteps]
    except (TypeError, ValueError):
        raise InputError(f"timesteps must be a list of numbers in (0, 1), e.g. [0.5], got {timesteps!r}") from None
    for t in times:
        if not 0.0 < t < 1.0:
            raise InputError(f"time steps must lie strictly between 0 and 1 (0 and 1 are the inputs), got {t}")
    return times


class Interpolator:
    """AMT interpolation of frame pairs and frame streams with bounded memory.

    `model` is a loaded `AMT` (used in place: moved to the device, precision and memory layout), a
    checkpoint path, or a checkpoint name ('amt-s', 'amt-l', 'amt-g', 'gopro_amt-s', looked up in
    `checkpoint_dirs` and the usual folders and downloaded as `resolve_checkpoint` does). `device` is
    'auto' (CUDA, then MPS, then the CPU), 'cpu', 'cuda' or 'mps'; `precision` 'auto' (fp16 on CUDA,
    fp32 elsewhere), 'fp32', 'fp16' or 'bf16'. `scale_factor` < 1 runs the network at reduced
    resolution (faster, less detail: 0.5 suits 4K). `correlation` forces the all-pairs volumes or the
    on-demand lookup; 'auto' precomputes the volumes of the coarse levels where they fit in memory and
    pay off. `memory_budget_bytes` (default: 60% of a GPU's free memory, 2 GiB elsewhere) is what
    precomputed volumes and batches may take. `max_batch` bounds how many time steps of one pair are
    decoded together (default 8, fewer for large frames on a CPU). `channels_last` (default on for CPU
    and CUDA) picks the memory layout of the convolutions; `compile` runs the decoders through
    `torch.compile`.

    `autotune` is for callers that own the process: it turns on cuDNN autotuning on a GPU and, on a CPU,
    keeps freed memory in the process for reuse for frames up to 1080p (`keep_freed_memory`), both
    process-wide. Without it, `run` keeps freed memory only while the stream runs. The attribute
    `overlap` (on for CUDA) lets `run` queue the next pair before handing out the frames of the last one.
    `between_batches` is called before each decoder call after a pair's first; raising from it stops
    the work (the ComfyUI node's Cancel), so a pair with many time steps need not be finished first.
    """

    def __init__(
        self,
        model: AMT | str | Path = "amt-s",
        *,
        device: str | torch.device = "auto",
        precision: str = "auto",
        correlation: CorrelationMode = "auto",
        scale_factor: float = 1.0,
        max_batch: int | None = None,
        memory_budget_bytes: int | None = None,
        channels_last: bool | None = None,
        compile: bool = False,
        autotune: bool = False,
        checkpoint_dirs: Iterable[str | Path] = (),
        between_batches: Callable[[], None] | None = None,
    ) -> None:
        check_correlation(correlation)
        max_batch = None if max_batch is None else whole_number(max_batch, "max_batch")
        if max_batch is not None and max_batch < 1:
            raise InputError(f"max_batch must be at least 1, got {max_batch}")
        if memory_budget_bytes is not None and memory_budget_bytes <= 0:
            raise InputError(f"memory_budget_bytes must be positive, got {memory_budget_bytes}")
        scale_factor = usable_scale_factor(scale_factor)
        self.device = resolve_device(device)
        self.dtype = resolve_precision(precision, self.device)
        if autotune and self.device.type == "cuda":
            # A process-wide switch, so only for callers that own the process (the CLI): frame sizes
            # repeat, and tuned cuDNN kernels made a 1080p pair about 15% faster on an H200.
            torch.backends.cudnn.benchmark = True
        self._owns_process = autotune
        self._memory_scope: contextlib.ExitStack | None = None  # freed memory kept during a stream
        if isinstance(model, AMT):
            self.model = model.to(device=self.device, dtype=self.dtype).eval()
        else:
            self.model = cached_model(resolve_checkpoint(model, checkpoint_dirs), self.device, self.dtype)
            self.model.to(self.device)  # back from the CPU if a previous run offloaded it
        self.model.set_mps_safe_warp(self.device.type == "mps")
        # Channels-last convolutions measured 10-15% faster with oneDNN on CPUs and no slower with cuDNN.
        self.channels_last = self.device.type in ("cpu", "cuda") if channels_last is None else channels_last
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self._decode = torch.compile(self.model.decode, dynamic=True) if compile else self.model.decode
        self.correlation = correlation
        self._last_prepared: tuple[torch.Tensor, Padding, torch.Tensor, torch.Tensor] | None = None
        self._streaming = False
        self.scale_factor = scale_factor
        self.between_batches = between_batches
        self.max_batch = max_batch or 8
        # Streams queue the next pair before handing out the last one's frames, so a GPU computes while
        # the results come back and the caller consumes them; a CPU has nothing to overlap.
        self.overlap = self.device.type == "cuda"
        self.memory_budget_bytes = memory_budget_bytes

    def offload(self) -> None:
        """Move the network to the CPU and free the device's cached memory, keeping it loaded for the
        next run (hosts such as ComfyUI expect nothing left on the GPU between runs)."""
        self.model.to("cpu")
        self._last_prepared = None
        release_cached_memory(self.device)

    def _network_on_device(self) -> None:
        """Back on this engine's device if it (or another engine sharing the cached network) offloaded it."""
        weights = self.model.comb_block[0].weight.device
        index = self.device.index
        if weights.type != self.device.type or (index is not None and weights.index != index):
            self.model.to(self.device)

    # -- sizing ---------------------------------------------------------------------------------

    def least_device_memory(self, height: int, width: int) -> int:
        """Bytes of device memory (weights included) below which frames of this size cannot be
        interpolated even one time step at a time with the on-demand correlation."""
        padding = padding_for(height, width, self.scale_factor)
        pixels = (height + padding.top + padding.bottom) * (width + padding.left + padding.right)
        weights = sum(p.numel() * p.element_size() for p in self.model.parameters())
        return weights + least_pair_bytes(pixels, self.model.spec.fields, self.dtype)

    def _budget(self) -> int:
        return self.memory_budget_bytes or default_budget(self.device)

    def _batch_size(self, steps: int, height: int, width: int) -> int:
        """Time steps decoded together: as many as the budget holds (a rough per-step activation cost).

        On a CPU, batching helps small frames (fewer calls, both cores busy in single-threaded operations:
        8% at 256x448) but large ones only by 2% for almost twice the memory, so the batch stays small.
        """
        per_step = (48 + 16 * self.model.spec.fields) * height * width * 4
        budget = min(self._budget(), CPU_BATCH_BYTES) if self.device.type == "cpu" else self._budget()
        return max(1, min(steps, self.max_batch, budget // per_step))

    def _keep_freed_memory(self, padded_pixels: int) -> None:
        """On a CPU, keep freed memory for reuse (see `cpu_memory`) for frames up to 1080p: for good when
        this engine owns the process, else while a stream runs."""
        if self.device.type != "cpu":
            return
        small = padded_pixels <= KEEP_FREED_MEMORY_PIXELS
        if self._owns_process:
            keep_freed_memory(small)
        elif self._streaming and small and self._memory_scope is None:
            self._memory_scope = contextlib.ExitStack()
            self._memory_scope.enter_context(freed_memory_kept())

    # -- one pair -------------------------------------------------------------------------------

    def _to_network(self, frame: torch.Tensor, padding: Padding) -> tuple[torch.Tensor, torch.Tensor]:
        """The frame on the device, padded, and whether its pixels are (finite, at most 2) as two booleans
        (checked on the device, read later, so no synchronisation here). While streaming, the second frame
        of a pair is kept for the next pair (the stream hands over the same tensor object)."""
        last = self._last_prepared
        if self._streaming and last is not None and last[0] is frame and last[1] == padding:
            return last[2], last[3]
        source = frame[..., :3]
        if self.device.type == "cuda" and not source.is_cuda:
            # From pinned memory the upload runs asynchronously, beside the work already queued.
            source = _host_buffer(source.shape, self.device, source.dtype).copy_(source)
        # Asynchronous only from pinned memory to CUDA: elsewhere a temporary copy may be freed mid-transfer.
        asynchronous = self.device.type == "cuda"
        image = source.to(self.device, torch.float32, non_blocking=asynchronous).permute(2, 0, 1).unsqueeze(0)
        least, most = torch.aminmax(image)
        checks = torch.stack([torch.isfinite(image).all(), (least >= LEAST_PIXEL_VALUE) & (most <= MOST_PIXEL_VALUE)])
        image = padding.apply(image)
        image = image.contiguous(memory_format=torch.channels_last) if self.channels_last else image
        self._last_prepared = (frame, padding, image, checks) if self._streaming else None
        return image, checks

    def _launch(
        self, pair: tuple[torch.Tensor, ...], times: list[float], padding: Padding, mode: str, batch: int
    ) -> _PendingFrames:
        """Queue the work of one pair: encoding, decoding and (from a GPU) the copy back, unsynchronised."""
        img0, checks0, img1, checks1 = pair
        with torch.inference_mode():
            features = self.model.encode(
                img0,
                img1,
                self.scale_factor,
                correlation=mode,
                correlation_budget_bytes=correlation_budget(self._budget()),
                time_steps=len(times),
            )
            host, output_finite = None, []
            batches = decode_in_batches(self._decode, features, times, batch, padding, self.between_batches)
            for start, frames in batches:
                frames = frames.permute(0, 2, 3, 1)
                output_finite.append(torch.isfinite(frames).all())
                if host is None:
                    host = _host_buffer((len(times), *frames.shape[1:]), self.device)
                host[start : start + frames.shape[0]].copy_(frames, non_blocking=self.device.type == "cuda")
            # (inputs finite, inputs in range, outputs finite), copied back like the frames: reading them off
            # the GPU later would wait for the next pair's work too, which is queued by then.
            checks = torch.cat([checks0 & checks1, torch.stack(output_finite).all().view(1)])
            host_checks = _host_buffer((3,), self.device, torch.bool)
            host_checks.copy_(checks, non_blocking=self.device.type == "cuda")
        return _PendingFrames(host, _ready_event(self.device), host_checks)

    def _launch_pair(self, frame0: torch.Tensor, frame1: torch.Tensor, timesteps: Sequence[float]) -> _PendingFrames:
        """Check a pair and queue its work, halving the batch and then dropping the precomputed correlation
        on out-of-memory."""
        _check_frame(frame0, "frame0")
        _check_frame(frame1, "frame1")
        self._network_on_device()
        if frame0.shape[:2] != frame1.shape[:2]:
            raise InputError(f"both frames must have one size, got {tuple(frame0.shape)} and {tuple(frame1.shape)}")
        times = _check_times(timesteps)
        height, width = frame0.shape[:2]
        if not times:
            return _PendingFrames.done(torch.empty(0, height, width, 3))
        padding = padding_for(height, width, self.scale_factor)
        pair = (*self._to_network(frame0, padding), *self._to_network(frame1, padding))
        padded_h, padded_w = pair[0].shape[-2:]
        self._keep_freed_memory(padded_h * padded_w)
        batch = self._batch_size(len(times), padded_h, padded_w)
        pending, fitted = with_memory_fallback(
            lambda mode, size: self._launch(pair, times, padding, mode, size),
            mode=self.correlation,
            batch=batch,
            device=self.device,
            advice=f"for {width}x{height} frames use a scale factor of 0.5 (or 0.25), fp16 precision, or the CPU",
        )
        if fitted < batch:
            self.max_batch = fitted  # remembered, so later pairs do not run out of memory first
        return pending

    def interpolate_pair(self, frame0: torch.Tensor, frame1: torch.Tensor, timesteps: Sequence[float]) -> torch.Tensor:
        """Frames at `timesteps` (each in (0, 1)) between two float H x W x C torch frames in [0, 1]
        (C >= 3; the first three channels are used) -> T x H x W x 3 float32 on the CPU.

        The pair is encoded once; on out-of-memory the time-step batch is halved, then the on-demand
        correlation is used, before giving up with advice.
        """
        return self._launch_pair(frame0, frame1, timesteps).result()

    # -- streams --------------------------------------------------------------------------------

    def run(
        self,
        frames: Iterable[torch.Tensor],
        plan: Iterable[PlannedFrame],
        is_cut: CutPredicate | None = None,
    ) -> Iterator[torch.Tensor]:
        """Yield the planned output frames in order while reading `frames` lazily.

        Only the current pair is held (with `overlap`, also the one before it, whose frames are still on
        their way back), so memory does not grow with the length of the stream. Each frame must be a
        tensor of its own, left unchanged once yielded (a refilled buffer is refused, except in inference
        mode, where torch counts no changes). Originals come back bit-identical (first three channels), as
        views where they can. Across a pair that `is_cut` flags, nothing is blended: in-between times
        before 0.5 hold the first frame, later ones the second.
        """
        window = _FrameWindow(iter(frames))
        self._streaming = True
        waiting: collections.deque[_PendingFrames] = collections.deque()

        def hand_out() -> Iterator[torch.Tensor]:
            while waiting:
                yield from waiting.popleft().result()

        try:
            for source, original, items in plan_groups(plan):
                if original:
                    frame = window.get(source)[..., :3].to("cpu", torch.float32)
                    waiting.append(_PendingFrames.done([frame] * len(items)))
                else:
                    frame0 = window.get(source)
                    version = _version_of(frame0)
                    frame1 = window.get(source + 1)
                    if _refilled(frame0, version, frame1):
                        raise InputError(
                            f"frame {source} changed while frame {source + 1} was read: the frame iterator must "
                            "yield a new tensor for every frame (e.g. yield buffer.clone()), not refill one"
                        )
                    if is_cut is not None and is_cut(frame0, frame1):
                        nearest = [frame0 if item.time < 0.5 else frame1 for item in items]
                        waiting.append(_PendingFrames.done([f[..., :3].to("cpu", torch.float32) for f in nearest]))
                    else:
                        pending = self._launch_pair(frame0, frame1, [item.time for item in items])
                        yield from hand_out()  # everything before this pair, while the device works on it
                        waiting.append(pending)
                if not self.overlap or len(waiting) > _MOST_QUEUED:
                    yield from hand_out()
            yield from hand_out()
        finally:
            self._streaming = False
            self._last_prepared = None
            if self._memory_scope is not None:
                self._memory_scope.close()
                self._memory_scope = None


def decode_in_batches(
    decode: Callable[[PairFeatures, torch.Tensor], torch.Tensor],
    features: PairFeatures,
    times: Sequence[float],
    batch: int,
    padding: Padding,
    between_batches: Callable[[], None] | None = None,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Frames of one encoded pair at `times`, `batch` time steps per decoder call: pairs of (index of the
    first time in the call, its N x 3 x H x W frames cropped back to the input size). `between_batches`
    runs before every call but the first (it may raise to stop)."""
    device = features.mean.device
    for start in range(0, len(times), batch):
        if start and between_batches is not None:
            between_batches()
        embt = device_constant(times[start : start + batch], torch.float32, device).view(-1, 1, 1, 1)
        yield start, padding.crop(decode(features, embt))


def _host_buffer(shape: tuple[int, ...], device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """CPU memory that `device` copies from or to: pinned for a GPU, which copies several times faster and
    asynchronously; ordinary memory where the system will not pin more (WSL and Windows cap it)."""
    if device.type == "cuda":
        try:
            return torch.empty(shape, dtype=dtype, pin_memory=True)
        except RuntimeError:
            pass
    return torch.empty(shape, dtype=dtype)


def _ready_event(device: torch.device) -> torch.cuda.Event | None:
    """An event marking the end of the work queued so far on a GPU (None elsewhere: work is synchronous)."""
    if device.type != "cuda":
        return None
    event = torch.cuda.Event()
    event.record(torch.cuda.current_stream(device))
    return event


class _PendingFrames:
    """The output frames of one group of the plan, possibly still being computed (and copied back)."""

    def __init__(
        self,
        frames: torch.Tensor | list[torch.Tensor],
        ready: torch.cuda.Event | None = None,
        checks: torch.Tensor | None = None,
    ) -> None:
        self.frames = frames
        self.ready = ready
        self.checks = checks  # on the CPU: (pixels finite, pixels in range, outputs finite)

    @classmethod
    def done(cls, frames: torch.Tensor | list[torch.Tensor]) -> _PendingFrames:
        return cls(frames)

    def result(self) -> torch.Tensor | list[torch.Tensor]:
        """The frames, once the device is done with them; the deferred finiteness checks raise here."""
        if self.ready is not None:
            self.ready.synchronize()
        if self.checks is not None:
            finite, in_range, outputs_finite = self.checks.tolist()
            if not finite:
                raise InputError("a frame contains NaN or infinite pixel values; clean the frames before interpolating")
            if not in_range:
                raise InputError(
                    f"a frame has pixel values outside [{LEAST_PIXEL_VALUE:g}, {MOST_PIXEL_VALUE:g}]: frames hold "
                    "values in [0, 1] (divide 8-bit values by 255; map values in [-1, 1] with (x + 1) / 2)"
                )
            if not outputs_finite:
                raise AmtVfiError("the network produced non-finite values; please report this with the input size")
        return self.frames


class _FrameWindow:
    """Random access to a forward-only frame stream, keeping only frames still ahead of the plan."""

    def __init__(self, frames: Iterator[torch.Tensor]) -> None:
        self._frames = frames
        self._held: dict[int, torch.Tensor] = {}
        self._next = 0

    def get(self, index: int) -> torch.Tensor:
        for old in [i for i in self._held if i < index]:
            del self._held[old]
        while self._next <= index:
            try:
                frame = next(self._frames)
            except StopIteration:
                raise InputError(
                    f"the plan needs frame {index} but the input ended after {self._next} frames"
                ) from None
            _check_frame(frame, f"frame {self._next}")
            if self._next == index:
                self._held[self._next] = frame
            self._next += 1
        if index not in self._held:
            raise InputError(f"frame {index} was requested after the stream had moved past it")
        return self._held[index]


def _version_of(frame: torch.Tensor) -> int | None:
    """How often `frame` was modified in place; None for inference-mode tensors, which do not count."""
    return None if frame.is_inference() else frame._version


def _overlap(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two tensors touch a common byte (tensors of one device; torch strides are never negative)."""
    if a.numel() == 0 or b.numel() == 0 or a.device != b.device:
        return False
    ends = []
    for frame in (a, b):
        last = sum((size - 1) * stride for size, stride in zip(frame.shape, frame.stride(), strict=True))
        ends.append((frame.data_ptr(), frame.data_ptr() + (last + 1) * frame.element_size()))
    (start0, end0), (start1, end1) = ends
    return start1 < end0 and start0 < end1


def _refilled(earlier: torch.Tensor, version: int | None, later: torch.Tensor) -> bool:
    """True when `earlier` was changed after it was read: edited or refilled in place (its change count
    moved), or overwritten by `later` behind another storage object (an array refilled behind new
    `torch.from_numpy` tensors). Views of one storage that do not overlap share a change count, so the
    slots of a batch filled one by one pass, as do repeats and expanded batches; inference-mode tensors
    keep no change count, so their refills pass too."""
    same_storage = earlier.untyped_storage()._cdata == later.untyped_storage()._cdata
    moved = version is not None and _version_of(earlier) != version
    if _overlap(earlier, later):
        return moved or not same_storage
    return moved and not same_storage


def frames_in_order(frames: torch.Tensor) -> Iterator[torch.Tensor]:
    """Iterate an N x H x W x C batch frame by frame (views, no copies)."""
    return (frames[i] for i in range(frames.shape[0]))
