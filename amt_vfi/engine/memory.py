"""Memory policy shared by every caller of the network: budgets, the correlation choice, and what to
try when a device runs out of memory."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

from ..errors import InputError, OutOfMemoryError
from ..network import CORRELATION_MODES, CorrelationMode
from .devices import is_out_of_memory, release_cached_memory

GIB = 1 << 30
T = TypeVar("T")


def default_budget(device: torch.device) -> int:
    """Bytes one frame pair may use on `device`: 60% of what is free on a GPU (counting what PyTorch holds
    in its cache but does not use, which the driver reports as taken, and no more than the process may
    take under `torch.cuda.set_per_process_memory_fraction`), 2 GiB elsewhere."""
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        allocated = torch.cuda.memory_allocated(device)
        cached = torch.cuda.memory_reserved(device) - allocated
        index = torch.cuda.current_device() if device.index is None else device.index  # 'cuda' is refused there
        fraction = getattr(torch.cuda, "get_per_process_memory_fraction", lambda _index: 1.0)(index)
        return int(max(0.0, min(free + cached, total * fraction - allocated)) * 0.6)
    return 2 * GIB


# Peak device memory of one pair decoded one time step at a time with the on-demand correlation, in
# elements per padded pixel, measured on an H200 (fp16 and fp32, 1080p and 4K): about 290 for AMT-S
# (three flow fields), 555 for AMT-G (five, wider layers); AMT-L is counted as AMT-G.
_LEAST_ELEMENTS_PER_PIXEL = {3: 290, 5: 555}


def least_pair_bytes(padded_pixels: int, fields: int, dtype: torch.dtype) -> int:
    """The least a pair needs on a GPU (with a fifth more as margin): what a host holding other models
    should free before interpolating."""
    per_pixel = _LEAST_ELEMENTS_PER_PIXEL.get(fields, max(_LEAST_ELEMENTS_PER_PIXEL.values()))
    return int(padded_pixels * per_pixel * dtype.itemsize * 1.2)


def check_correlation(mode: str) -> None:
    """An unknown correlation mode is the caller's mistake: name the ones there are."""
    if mode not in CORRELATION_MODES:
        raise InputError(f"correlation must be one of {', '.join(CORRELATION_MODES)}, not {mode!r}")


def correlation_budget(budget: int) -> int:
    """Bytes the precomputed correlation volumes of one pair may take: half of the pair's budget."""
    return budget // 2


def with_memory_fallback(
    attempt: Callable[[CorrelationMode, int], T],
    *,
    mode: CorrelationMode,
    batch: int,
    device: torch.device,
    advice: str,
    on_retry: Callable[[], None] = lambda: None,
) -> tuple[T, int]:
    """Run `attempt(mode, batch)`; on out-of-memory halve the batch, then switch to the on-demand
    correlation, then raise OutOfMemoryError with `advice`. Returns the result and the batch that fit."""
    while True:
        try:
            return attempt(mode, batch), batch
        except Exception as error:
            if not is_out_of_memory(error):
                raise
        on_retry()
        release_cached_memory(device)
        if batch > 1:
            batch = max(1, batch // 2)
        elif mode != "on-demand":
            mode = "on-demand"
        else:
            raise OutOfMemoryError(
                f"out of memory on {device} even one time step at a time with the on-demand correlation; {advice}"
            )
