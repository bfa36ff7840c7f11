"""Widget declarations shared by the AMT VFI node and the AMT Model Loader."""

from __future__ import annotations

from ..engine.devices import resolve_precision
from ..engine.padding import LEAST_SCALE_FACTOR, usable_scale_factor
from ..errors import InputError
from ..network import CORRELATION_MODES
from . import host

SCALE_FACTORS_HINT = "1.0, 0.8, 0.5, 0.4 or 0.25"


def correlation_input() -> tuple:
    return (
        list(CORRELATION_MODES),
        {
            "default": "auto",
            "tooltip": "auto: precomputed correlation volumes for the levels where they fit in memory and "
            "pay off, the on-demand lookup for the rest (same result, far less memory, needed for 1440p/4K). "
            "all-pairs precomputes every level (the seed's way; can run out of memory at high resolution), "
            "on-demand none.",
        },
    )


def scale_factor_input() -> tuple:
    return (
        "FLOAT",
        {
            "default": 1.0,
            "min": LEAST_SCALE_FACTOR,
            "max": 1.0,
            "step": 0.05,
            "tooltip": "Resolution at which motion is estimated: 1.0 (full detail; the seed node's results) or, "
            "for 4K and fast motion, 0.5 or 0.25 (faster, less memory, less detail in motion). "
            f"Allowed: {SCALE_FACTORS_HINT}.",
        },
    )


def checked_scale_factor(value: object) -> float:
    """The scale_factor widget's value as a number the network can use, else a clear InputError."""
    try:
        scale = float(value)
    except (TypeError, ValueError):
        raise InputError(f"scale_factor must be a number ({SCALE_FACTORS_HINT}), got {value!r}") from None
    try:
        return usable_scale_factor(scale)
    except InputError as error:
        raise InputError(f"{error}. Allowed scale_factor values: {SCALE_FACTORS_HINT}") from None


def validate_scale_factor(scale_factor: object) -> bool | str:
    """ComfyUI's VALIDATE_INPUTS answer for the slider, which offers values in between the usable ones:
    True, or why the value cannot run, shown when the prompt is queued instead of when the node runs.
    A value linked from another node is not known yet (None): it is checked when the node runs."""
    if scale_factor is None:
        return True
    try:
        checked_scale_factor(scale_factor)
    except InputError as error:
        return str(error)
    return True


def validate_precision(precision: object) -> bool | str:
    """ComfyUI's VALIDATE_INPUTS answer for the precision list, which offers fp16 on every machine: True, or
    why it cannot run on the device ComfyUI uses (fp16 on a CPU), shown when the prompt is queued. Declaring
    the input there turns ComfyUI's own check of the list off, so unknown names are refused here too."""
    if precision is None:
        return True
    try:
        resolve_precision(precision, host.torch_device())
    except InputError as error:
        return str(error)
    return True


class QueueTimeValidation:
    """For the nodes with scale_factor and precision widgets: ComfyUI calls VALIDATE_INPUTS when a prompt is
    queued, so a value that cannot run is reported then, before any other node of the prompt runs."""

    @classmethod
    def VALIDATE_INPUTS(cls, scale_factor: object = 1.0, precision: object = None) -> bool | str:  # noqa: N802
        scale_answer = validate_scale_factor(scale_factor)
        return scale_answer if scale_answer is not True else validate_precision(precision)
