"""Device and precision choices."""

from __future__ import annotations

import torch

from ..errors import InputError

PRECISIONS: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
PRECISION_CHOICES: tuple[str, ...] = ("auto", *PRECISIONS)
#: Device names ('cuda:1' picks a GPU).
DEVICE_CHOICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' picks CUDA, then MPS, then the CPU; an unavailable explicit choice is an error."""
    if isinstance(device, torch.device):
        return device
    if not isinstance(device, str):
        raise InputError(f"device must be one of {', '.join(DEVICE_CHOICES)} (or e.g. 'cuda:1'), got {device!r}")
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(
            f"device {device!r} was asked for but this PyTorch sees no CUDA GPU; use the device 'cpu' or 'auto'"
        )
    if device == "mps" and not torch.backends.mps.is_available():
        raise InputError("device 'mps' was asked for but MPS is not available; use the device 'cpu' or 'auto'")
    try:
        return torch.device(device)
    except RuntimeError:
        raise InputError(f"unknown device {device!r}; use {', '.join(DEVICE_CHOICES)}") from None


def check_precision(precision: str) -> None:
    """An unknown precision is the caller's mistake: name the ones there are."""
    if precision not in PRECISION_CHOICES:
        raise InputError(f"precision must be one of {', '.join(PRECISION_CHOICES)}, not {precision!r}")


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """'auto' is float16 on CUDA (tensor cores) and float32 elsewhere, where half precision is slow."""
    check_precision(precision)
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if precision == "fp16" and device.type == "cpu":
        raise InputError("precision fp16 is not supported on the CPU (too slow and inexact there); use fp32 or bf16")
    return PRECISIONS[precision]


# How allocation failures read when they are not torch.OutOfMemoryError: cuDNN/cuBLAS workspaces, a Metal
# buffer above the device's limit, the CPU allocator.
_OUT_OF_MEMORY_MESSAGES = ("out of memory", "alloc_failed", "invalid buffer size", "can't allocate memory")


def is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, torch.OutOfMemoryError):
        return True
    message = str(error).lower()
    return isinstance(error, RuntimeError) and any(text in message for text in _OUT_OF_MEMORY_MESSAGES)


def release_cached_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        if hasattr(torch._C, "_host_emptyCache"):  # pinned host buffers, which empty_cache keeps
            torch._C._host_emptyCache()
    elif device.type == "mps":
        torch.mps.empty_cache()
