"""Fused CPU kernels for the decoders' warps, the final composition, comb_block, the correlation lookup,
in-place activations and Winograd convolutions, compiled on first use.

On a CPU most of these steps are chains of small memory-bound PyTorch operations (grid_sample, cat,
repeat, lerp, gathers, ...) or convolutions too thin for oneDNN to run well, each pass reading and
writing whole activations; one C loop per step does the same arithmetic in one pass. The 3x3 (and
decoder1's 2x2) convolutions run by Winograd's transform, with 4x (2.25x) fewer multiplications than
oneDNN's direct convolution. Together: 0.089 -> 0.056 s per new frame at 256x448 x4 (benchmarks/RESULTS.md).
`cpu_kernels.c` is compiled with the system C compiler (`$CC`, else `cc`) into the user cache the first
time a float32 CPU network needs it, and runs on PyTorch's own OpenMP threads (GNU libgomp, which Linux
builds of PyTorch load). Where that cannot be done (no compiler, another OpenMP runtime, not Linux) or
where it is switched off (`AMT_VFI_CPU_KERNELS=0`), the network runs its PyTorch code, which gives the
same frames to within float rounding.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import re
import shlex
import subprocess
import sys
import threading
from pathlib import Path

import torch

from ..user_dirs import user_cache_dir

SWITCH_ENV = "AMT_VFI_CPU_KERNELS"
is_compiling = getattr(torch.compiler, "is_compiling", lambda: False)  # torch < 2.3 has none
SOURCE = Path(__file__).with_name("cpu_kernels.c")
FLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC")
COMPILE_TIMEOUT_SECONDS = 120

_log = logging.getLogger(__name__)
_build_lock = threading.Lock()  # threads of one process would share the partial file's name
_POINTER, _INDEX, _THREADS = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
_SIGNATURES = {
    "amt_warp": [_POINTER, _POINTER, _INDEX, _INDEX, _INDEX, _INDEX, _POINTER, _POINTER, _POINTER, _POINTER, _THREADS],
    "amt_compose": [_POINTER, _POINTER, _POINTER, _POINTER, _POINTER, _POINTER, _INDEX, _INDEX, _POINTER]
    + [_INDEX] * 4
    + [_POINTER] * 4
    + [_THREADS],
    "amt_activate": [_POINTER, _POINTER, _POINTER] + [_INDEX] * 4 + [_THREADS],
    "amt_correlation": [_POINTER] + [_INDEX] * 5 + [_POINTER] * 3 + [_POINTER, _INDEX, _POINTER, _POINTER, _THREADS],
    "amt_comb": [_POINTER] * 4 + [_INDEX] * 6 + [_POINTER] * 7 + [_THREADS],
    "amt_instance_norm": [_POINTER, _POINTER] + [_INDEX] * 4 + [ctypes.c_float, ctypes.c_int, _THREADS],
    "amt_winograd": [_POINTER] + [_INDEX] * 5 + [_POINTER] * 2 + [_INDEX] * 2 + [_POINTER, _THREADS],
}
COMB_GROUP = 6  # hidden channels per pass of amt_comb (GROUP in the C source)


def _cpu_identity() -> bytes:
    """The CPU's feature flags (else its whole description, less the clock lines that change from one
    reading to the next): `-march=native` code built on one machine may not run on another that shares
    the cache folder."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor().encode()
    flags = [line for line in lines if line.split(":")[0].strip().lower() in ("flags", "features")]
    if flags:
        return flags[0].encode()
    return "\n".join(line for line in lines if not any(clock in line.lower() for clock in ("mhz", "bogomips"))).encode()


def _compiled_library() -> Path:
    compiler = shlex.split(os.environ.get("CC") or "cc")
    source = SOURCE.read_bytes()
    key_parts = [source, " ".join([*compiler, *FLAGS]).encode(), platform.machine().encode(), _cpu_identity()]
    key = hashlib.sha256(b"\0".join(key_parts)).hexdigest()[:16]
    target = user_cache_dir() / "kernels" / f"cpu_kernels-{key}.so"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        subprocess.run(
            [*compiler, *FLAGS, str(SOURCE), "-o", str(partial)],
            check=True,
            capture_output=True,
            timeout=COMPILE_TIMEOUT_SECONDS,
        )
        os.replace(partial, target)  # whole or not at all, also when processes build it side by side
    finally:
        partial.unlink(missing_ok=True)
    return target


def _openmp_runtimes() -> set[str]:
    """The OpenMP runtimes mapped into this process (GNU, LLVM, Intel)."""
    mapped = Path("/proc/self/maps").read_text()
    return set(re.findall(r"\S*/lib(?:gomp|omp|iomp5)[^/\s]*\.so[^/\s]*", mapped))


def _unsupported_reason() -> str | None:
    if not sys.platform.startswith("linux"):
        return f"built only on Linux, not {sys.platform}"
    try:
        runtimes = _openmp_runtimes()
    except OSError as error:
        return f"cannot tell which OpenMP runtime PyTorch uses ({error})"
    if not any("libgomp" in path for path in runtimes):
        return "PyTorch does not use GNU OpenMP (libgomp) here"
    return None


@functools.cache
def _library() -> tuple[ctypes.CDLL | None, str]:
    """The loaded kernels, or None and why not (worked out once per process)."""
    reason = _unsupported_reason()
    if reason is None:
        try:
            with _build_lock:
                path = _compiled_library()
                if not path.read_bytes().startswith(b"\x7fELF"):  # damaged in the cache: built again
                    path.unlink()
                    path = _compiled_library()
            before = _openmp_runtimes()
            library = ctypes.CDLL(str(path))
            for name, arguments in _SIGNATURES.items():
                getattr(library, name).argtypes = arguments
        except subprocess.CalledProcessError as error:
            reason = f"the C compiler failed: {error.stderr.decode(errors='replace').strip()[-300:]}"
        except (OSError, AttributeError, subprocess.SubprocessError) as error:
            reason = f"cannot build or load them: {error}"
        else:
            added = _openmp_runtimes() - before
            if not added:
                return library, f"on ({path})"
            # Loaded next to PyTorch's libgomp under another name: two thread pools would compete.
            reason = f"they would run on a second OpenMP runtime ({', '.join(sorted(added))})"
    _log.info("fused CPU kernels unavailable, %s: using PyTorch operations", reason)
    return None, f"off: {reason}"


def _switched_off() -> bool:
    return os.environ.get(SWITCH_ENV, "").strip().lower() in ("0", "false", "off", "no")


def status() -> str:
    """'on (path of the built library)' or 'off: why' (for benchmarks and bug reports)."""
    if _switched_off():
        return f"off: {SWITCH_ENV}={os.environ[SWITCH_ENV]}"
    return _library()[1]


def usable(*tensors: torch.Tensor) -> bool:
    """Whether the kernels can stand in for the PyTorch code on these tensors: float32 on the CPU, no
    gradient wanted (they have no backward pass), not traced by torch.compile, and the library built."""
    if _switched_off() or is_compiling():
        return False
    if any(t.device.type != "cpu" or t.dtype != torch.float32 for t in tensors):
        return False
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return False
    return _library()[0] is not None


def _strides(tensor: torch.Tensor) -> ctypes.Array:
    return (ctypes.c_int64 * tensor.dim())(*tensor.stride())


def _check(condition: bool, what: str) -> None:
    """Shapes are checked before C code addresses memory through them."""
    if not condition:
        raise ValueError(f"fused CPU kernel called with {what}")


def _check_float32_cpu(*tensors: torch.Tensor) -> None:
    for tensor in tensors:
        _check(
            tensor.device.type == "cpu" and tensor.dtype == torch.float32, f"a {tensor.dtype} {tensor.device} tensor"
        )


def _run(kernel: str, *arguments: object, allocating: str | None = None) -> None:
    """Call the C function `kernel` with `arguments` and PyTorch's thread count. Kernels that allocate
    memory return 1 when they could not: `allocating` says what for, in the MemoryError raised then."""
    library, _ = _library()
    if getattr(library, kernel)(*arguments, torch.get_num_threads()) and allocating is not None:
        raise MemoryError(f"out of memory for {allocating}")


def warp(image: torch.Tensor, flow: torch.Tensor, out: torch.Tensor) -> None:
    """Write `image` (N x C x H x W) warped by `flow` (N x 2 x H x W, pixels, x first) into `out`, as
    `layers.warp` does: bilinear, with edge replication."""
    _check_float32_cpu(image, flow, out)
    images, channels, height, width = image.shape
    _check(flow.shape == (images, 2, height, width), f"a flow of shape {tuple(flow.shape)}")
    _check(out.shape == image.shape, f"an output of shape {tuple(out.shape)}")
    _run(
        "amt_warp",
        image.data_ptr(),
        _strides(image),
        images,
        channels,
        height,
        width,
        flow.data_ptr(),
        _strides(flow),
        out.data_ptr(),
        _strides(out),
    )


def prelu_(x: torch.Tensor, slopes: torch.Tensor) -> torch.Tensor:
    """PReLU with one slope per channel, in place on `x` (B x C x H x W), which is returned."""
    _check_float32_cpu(x, slopes)
    _check(x.dim() == 4 and slopes.numel() == x.shape[1], f"{slopes.numel()} slopes for a {tuple(x.shape)} tensor")
    slopes = slopes.detach().contiguous()
    _run("amt_activate", x.data_ptr(), _strides(x), slopes.data_ptr(), *x.shape)
    return x


def sigmoid_(x: torch.Tensor) -> torch.Tensor:
    """The logistic sigmoid in place on `x` (B x C x H x W, any strides: a channel slice too), returned."""
    _check_float32_cpu(x)
    _check(x.dim() == 4, f"a tensor of shape {tuple(x.shape)}")
    _run("amt_activate", x.data_ptr(), _strides(x), None, *x.shape)
    return x


def instance_norm_(x: torch.Tensor, eps: float, relu: bool) -> torch.Tensor:
    """Instance norm (per sample and channel over H x W, biased variance) in place on `x` (B x C x H x W),
    then ReLU if `relu`; returns `x`."""
    _check_float32_cpu(x)
    _check(x.dim() == 4 and x.shape[2] * x.shape[3] > 0, f"a tensor of shape {tuple(x.shape)}")
    _run(
        "amt_instance_norm",
        x.data_ptr(),
        _strides(x),
        *x.shape,
        eps,
        int(relu),
        allocating="the statistics of the fused instance norm",
    )
    return x


# Winograd's kernel transforms, U = G w G^T for each channel pair: F(4x4, 3x3) for 3x3 kernels (6 x 6
# positions), F(3x3, 2x2) for 2x2 ones (4 x 4); by kernel size.
_WINOGRAD_G = {
    3: (
        (1 / 4, 0.0, 0.0),
        (-1 / 6, -1 / 6, -1 / 6),
        (-1 / 6, 1 / 6, -1 / 6),
        (1 / 24, 1 / 12, 1 / 6),
        (1 / 24, -1 / 12, 1 / 6),
        (0.0, 0.0, 1.0),
    ),
    2: ((1.0, 0.0), (0.5, 0.5), (0.5, -0.5), (0.0, -1.0)),
}
_WINOGRAD_KERNELS = {len(g) ** 2: kernel for kernel, g in _WINOGRAD_G.items()}  # by positions


def winograd_weights(weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A 3x3 or 2x2 convolution's weights (O x C x K x K) and bias as `winograd_conv` takes them:
    P^2 x C x O' (P = 6 or 4) and O' values, O' = O rounded up to a multiple of 16 (zeros)."""
    with torch.inference_mode(False), torch.no_grad():  # usable inside and outside inference mode
        out_channels, in_channels, kernel = weight.shape[:3]
        padded = -(-out_channels // 16) * 16
        g = torch.tensor(_WINOGRAD_G[kernel], dtype=torch.float64)
        transformed = torch.einsum("ik,ockl,jl->ijco", g, weight.detach().double(), g)
        transformed = transformed.reshape(len(g) ** 2, in_channels, out_channels).float()
        transformed = torch.nn.functional.pad(transformed, (0, padded - out_channels)).contiguous()
        return transformed, torch.nn.functional.pad(bias.detach().float(), (0, padded - out_channels)).contiguous()


def winograd_conv(x: torch.Tensor, transformed: torch.Tensor, bias: torch.Tensor, out_channels: int) -> torch.Tensor:
    """A convolution with stride 1 and padding 1 of channels-last `x` (B x C x H x W) with the weights and
    bias from `winograd_weights`: B x O x H x W for a 3x3 kernel, B x O x (H+1) x (W+1) for a 2x2 one,
    channels-last."""
    _check_float32_cpu(x, transformed, bias)
    batch, in_channels, height, width = x.shape
    _check(x.is_contiguous(memory_format=torch.channels_last), "an input that is not channels-last")
    positions, padded = transformed.shape[0], transformed.shape[-1]
    kernel = _WINOGRAD_KERNELS.get(positions, 0)
    _check(
        kernel
        and transformed.shape == (positions, in_channels, padded)
        and padded % 16 == 0
        and 0 < out_channels <= padded,
        f"transformed weights of shape {tuple(transformed.shape)} for {in_channels} -> {out_channels} channels",
    )
    _check(transformed.is_contiguous() and bias.is_contiguous() and bias.numel() == padded, "a misshapen bias")
    out = torch.empty((batch, out_channels, height + 3 - kernel, width + 3 - kernel), memory_format=torch.channels_last)
    _run(
        "amt_winograd",
        x.data_ptr(),
        batch,
        in_channels,
        height,
        width,
        kernel,
        transformed.data_ptr(),
        bias.data_ptr(),
        out_channels,
        padded,
        out.data_ptr(),
        allocating="the tiles of the fused Winograd convolution",
    )
    return out


def compose(
    frames: torch.Tensor, phases: torch.Tensor, coarse: torch.Tensor, mean: torch.Tensor, fields: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The candidate frames (B x n x 3 x H x W) of the multi-field prediction, and their average.

    frames: 2B x 3 x H x W, mean removed; phases: the prediction as `MultiFieldDecoder.predict_phases`
    gives it (B x 4*8n x H/2+1 x W/2+1) with the masks already through the sigmoid; coarse:
    2 x B x 2 x H/2 x W/2, the flows t->0 and t->1 that the predicted ones correct; mean: B values.
    """
    _check_float32_cpu(frames, phases, coarse, mean)
    batch, channels, windows_y, windows_x = phases.shape
    _check(channels == 32 * fields, f"{channels} predicted channels for {fields} fields")
    height, width = 2 * (windows_y - 1), 2 * (windows_x - 1)
    _check(height > 0 and width > 0, f"a prediction of {windows_y}x{windows_x} windows")
    _check(frames.shape == (2 * batch, 3, height, width), f"frames of shape {tuple(frames.shape)}")
    _check(coarse.shape == (2, batch, 2, height // 2, width // 2), f"coarse flows of shape {tuple(coarse.shape)}")
    mean = mean.reshape(-1).contiguous()
    _check(mean.numel() == batch, f"{mean.numel()} means for {batch} frames")
    candidates = phases.new_empty(batch, fields, 3, height, width)
    average = phases.new_empty(batch, 3, height, width)
    _run(
        "amt_compose",
        frames.data_ptr(),
        _strides(frames),
        phases.data_ptr(),
        _strides(phases),
        coarse.data_ptr(),
        _strides(coarse),
        coarse.shape[-2],
        coarse.shape[-1],
        mean.data_ptr(),
        batch,
        fields,
        height,
        width,
        candidates.data_ptr(),
        _strides(candidates),
        average.data_ptr(),
        _strides(average),
    )
    return candidates, average


def comb(
    candidates: torch.Tensor,
    average: torch.Tensor,
    first: torch.nn.Conv2d,
    slopes: torch.Tensor,
    second: torch.nn.Conv2d,
) -> torch.Tensor:
    """clamp(average + second(PReLU(first(candidates))), 0, 1): the model's last step, comb_block, for
    B x C x H x W candidates (any layout) and a B x 3 x H x W average; 'same' K x K convolutions."""
    _check_float32_cpu(candidates, average, slopes, first.weight, second.weight)
    batch, channels, height, width = candidates.shape
    hidden, kernel = first.out_channels, first.kernel_size[0]
    same = {(conv.kernel_size, conv.stride, conv.padding, conv.dilation, conv.groups) for conv in (first, second)}
    _check(same == {((kernel, kernel), (1, 1), (kernel // 2,) * 2, (1, 1), 1)}, f"convolutions {same}")
    _check(
        first.weight.shape == (hidden, channels, kernel, kernel) and hidden % COMB_GROUP == 0,
        f"a first convolution of shape {tuple(first.weight.shape)}",
    )
    _check(
        second.weight.shape == (3, hidden, kernel, kernel),
        f"a second convolution of shape {tuple(second.weight.shape)}",
    )
    _check(slopes.numel() == hidden, f"{slopes.numel()} PReLU slopes for {hidden} channels")
    _check(average.shape == (batch, 3, height, width), f"an average of shape {tuple(average.shape)}")
    average = average.contiguous()
    out = torch.empty_like(average)
    weights = [x.detach().contiguous() for x in (first.weight, first.bias, slopes, second.weight, second.bias)]
    _run(
        "amt_comb",
        candidates.data_ptr(),
        _strides(candidates),
        average.data_ptr(),
        _strides(average),
        batch,
        channels,
        hidden,
        kernel,
        height,
        width,
        *[x.data_ptr() for x in weights],
        out.data_ptr(),
        _strides(out),
        allocating="the rows of comb_block's fused kernel",
    )
    return out


# How the correlation kernel reads a table (one per level and direction).
ON_DEMAND, VOLUME, TRANSPOSED = 0, 1, 2


def correlation(
    centres: torch.Tensor,
    batch: int,
    tables: list[torch.Tensor],
    modes: list[int],
    sources: torch.Tensor,
    out: torch.Tensor,
) -> None:
    """Write WindowCorrelation's lookup (see there) into `out` (N x 2*L*49 x h x w).

    centres: 2 x N x 2 x h x w (directions, queries, x/y); tables: per level, per direction, the volume
    (VOLUME: B x h*w x h_l*w_l values; TRANSPOSED, level 0 only: the other direction's, read transposed) or
    the pooled target rows (ON_DEMAND: B*h_l*w_l x D); sources: the scaled source rows, 2*B*h*w x D.
    """
    _check_float32_cpu(centres, sources, out, *tables)
    _, queries, _, height, width = centres.shape
    levels = len(modes) // 2
    pixels, dim = height * width, sources.shape[1]
    _check(
        centres.is_contiguous() and centres.shape[0] == centres.shape[2] == 2,
        f"centres of shape {tuple(centres.shape)}",
    )
    _check(
        sources.shape[0] == 2 * batch * pixels, f"{sources.shape[0]} source rows for {batch} samples of {pixels} pixels"
    )
    _check(sources.is_contiguous(), "source rows that are not contiguous")
    _check(out.shape == (queries, 2 * levels * 49, height, width), f"an output of shape {tuple(out.shape)}")
    _check(len(tables) == len(modes) and len(modes) % 2 == 0, f"{len(tables)} tables for {len(modes)} modes")
    sizes = [(height >> level, width >> level) for level in range(levels)]
    for index, (table, mode) in enumerate(zip(tables, modes, strict=True)):
        area = sizes[index // 2][0] * sizes[index // 2][1]
        _check(mode != TRANSPOSED or area == pixels, "a transposed volume for a level other than 0")
        expected = batch * area * dim if mode == ON_DEMAND else batch * pixels * area
        _check(table.is_contiguous() and table.numel() == expected, f"a table of {table.numel()} values")
    _run(
        "amt_correlation",
        centres.data_ptr(),
        queries,
        batch,
        height,
        width,
        levels,
        (ctypes.c_int64 * (2 * levels))(*[size for pair in sizes for size in pair]),
        (ctypes.c_void_p * len(tables))(*[table.data_ptr() for table in tables]),
        (ctypes.c_int32 * len(modes))(*modes),
        sources.data_ptr(),
        dim,
        out.data_ptr(),
        _strides(out),
    )
