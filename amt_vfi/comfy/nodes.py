"""The ComfyUI nodes: a drop-in "AMT VFI" with the seed pack's inputs and results, its two helpers
("Make Interpolation State List", "VFI FloatToInt"), a text schedule helper, and the
"AMT Model Loader" for core's native FrameInterpolate node.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterable, Iterator

import torch

from ..engine import Interpolator, PlannedFrame, frames_in_order, multiplier_plan, schedule_plan, skip_predicate
from ..engine.devices import PRECISION_CHOICES
from ..engine.interpolator import LEAST_PIXEL_VALUE, MOST_PIXEL_VALUE, looks_channels_first
from ..engine.plan import SkipPredicate, plan_groups, whole_number
from ..errors import InputError
from . import host, models
from .inputs import QueueTimeValidation, checked_scale_factor, correlation_input, scale_factor_input
from .native import AMTModelLoader

CATEGORY = "ComfyUI-Frame-Interpolation/VFI"
#: precision choices, "fp32" first: the default that keeps the seed's results.
PRECISIONS = ("fp32", *[p for p in PRECISION_CHOICES if p != "fp32"])


# -- interpolation states ---------------------------------------------------------------------------


class InterpolationStateList:
    """Which pairs to interpolate (INTERPOLATION_STATES).

    Pair i is the pair (frame i, frame i + 1). A skip list names pairs not to interpolate, a keep list
    (`is_skip_list=False`) the only pairs to interpolate. Same attributes and method as the seed pack's
    object, so the seed's other VFI nodes accept it too.
    """

    def __init__(self, frame_indices: Iterable[int], is_skip_list: bool) -> None:
        self.frame_indices = [int(i) for i in frame_indices]
        self.is_skip_list = bool(is_skip_list)
        self._skipped = skip_predicate(self.frame_indices, self.is_skip_list)

    def is_frame_skipped(self, frame_index: int) -> bool:
        return self._skipped(frame_index)

    def __repr__(self) -> str:
        kind = "skip" if self.is_skip_list else "keep"
        return f"InterpolationStateList({kind} {self.frame_indices})"


_RANGE = re.compile(r"^(\d+)\s*-\s*(\d+)$")


def _text_pieces(text: str) -> Iterator[str]:
    """The non-empty entries of a list typed as text: separated by commas, semicolons or new lines."""
    return (piece.strip() for piece in re.split(r"[,\n;]", text) if piece.strip())


#: More pair indices than any IMAGE batch has pairs (a million 64x64 frames are 48 GB): a longer range is
#: a mistake ("5-99999999" for "5 to the end") that would take the server's memory.
MOST_FRAME_INDICES = 1_000_000


def _whole_number_text(piece: str) -> int:
    """'3' -> 3, and '3.0' -> 3 too (a float widget's text); '3.5' raises ValueError."""
    try:
        return int(piece)
    except ValueError:
        number = float(piece)
        if not number.is_integer():
            raise
        return int(number)


def parse_frame_indices(text: str) -> list[int]:
    """Pair indices: "1,2,3" -> [1, 2, 3]; also newlines as separators, ranges "4-7" (inclusive) and empty pieces."""
    if not isinstance(text, str):
        raise InputError(f"frame_indices must be text such as '1,2,3', got {type(text).__name__}")
    indices: list[int] = []
    for piece in _text_pieces(text):
        span = _RANGE.match(piece)
        if span:
            first, last = int(span.group(1)), int(span.group(2))
            if last < first:
                raise InputError(f"frame_indices: the range {piece!r} runs backwards; write it as {last}-{first}")
            if len(indices) + last - first + 1 > MOST_FRAME_INDICES:
                raise InputError(
                    f"frame_indices: {piece!r} names more than {MOST_FRAME_INDICES:,} pairs; end the range at the "
                    "last pair of the clip (its frame count minus 2)"
                )
            indices += range(first, last + 1)
            continue
        try:
            indices.append(_whole_number_text(piece))
        except ValueError:
            raise InputError(
                f"frame_indices: {piece!r} is not a whole number; write pair indices separated by commas, "
                "e.g. '1,2,3' or '4-7'"
            ) from None
    return indices


def skip_function(states: object) -> SkipPredicate | None:
    """A pair predicate from our INTERPOLATION_STATES, the seed's, or anything with `is_frame_skipped`."""
    if states is None:
        return None
    indices = getattr(states, "frame_indices", None)
    is_skip_list = getattr(states, "is_skip_list", None)
    if indices is not None and is_skip_list is not None:
        try:
            return skip_predicate([int(i) for i in indices], bool(is_skip_list))
        except (TypeError, ValueError):
            raise InputError(
                f"optional_interpolation_states holds frame indices that are not numbers: {indices!r}"
            ) from None
    method = getattr(states, "is_frame_skipped", None)
    if callable(method):
        return lambda pair: bool(method(pair))
    raise InputError(
        "optional_interpolation_states must come from a 'Make Interpolation State List' node, "
        f"got {type(states).__name__}"
    )


# -- multiplier and schedules ----------------------------------------------------------------------

_SCHEDULE_ADVICE = "convert float schedules with a 'VFI FloatToInt' node"


def parse_multiplier(value: object) -> int | list[int]:
    """An int (every pair gets it) or a list of ints (a per-pair schedule, as the seed accepts).

    NumPy and 0-d tensor integers count as ints; whole floats (3.0) as their int. A 1-d tensor, array,
    tuple or other iterable of numbers is a schedule. Negative schedule entries and anything not a
    whole number are refused with a message naming the entry.
    """
    if isinstance(value, (str, bytes)):
        raise InputError(f"multiplier must be a whole number or a list of them (a schedule), got text {value!r}")
    if isinstance(value, torch.Tensor):
        value = value.item() if value.numel() == 1 and value.dim() == 0 else value.flatten().tolist()
    elif hasattr(value, "tolist") and not isinstance(value, (numbers.Number, list, tuple)):
        value = value.tolist()  # numpy arrays and scalars
    if isinstance(value, (numbers.Number, bool)):
        return whole_number(value, "multiplier", _SCHEDULE_ADVICE)
    if not isinstance(value, Iterable):
        raise InputError(
            f"multiplier must be a whole number or a list of them (a schedule), got {type(value).__name__}"
        )
    schedule = [
        whole_number(entry, f"multiplier schedule entry {i}", _SCHEDULE_ADVICE) for i, entry in enumerate(value)
    ]
    for i, entry in enumerate(schedule):
        if entry < 0:
            raise InputError(
                f"multiplier schedule entry {i} is {entry}: entries must be 0 (drop the pair), "
                "1 (keep the first frame only) or more"
            )
    return schedule


def build_plan(frame_count: int, multiplier: int | list[int], skip: SkipPredicate | None) -> list[PlannedFrame]:
    """The seed's output order; schedules with the seed's 0/1/short-list meaning but the real pair index."""
    if isinstance(multiplier, list):
        return schedule_plan(frame_count, multiplier, skip)
    return multiplier_plan(frame_count, multiplier, skip)


# -- frames -----------------------------------------------------------------------------------------


def check_frames(frames: object) -> torch.Tensor:
    """An IMAGE batch N x H x W x C (C >= 3: RGB, RGBA, ...; only the first three are used) of finite
    floats, N >= 2."""
    if not isinstance(frames, torch.Tensor):
        raise InputError(f"frames must be an IMAGE batch (a tensor N x H x W x C), got {type(frames).__name__}")
    if frames.dim() != 4 or frames.shape[-1] < 3 or frames.shape[1] < 1 or frames.shape[2] < 1:
        raise InputError(
            f"frames must be an IMAGE batch N x H x W x C with C = 3 (RGB) or more (e.g. 4, RGBA), got shape "
            f"{tuple(frames.shape)}; use an image node's output (e.g. Load Image, VAE Decode, Load Video)"
        )
    if looks_channels_first(frames.shape):
        raise InputError(
            f"frames have shape {tuple(frames.shape)}, which looks like N x C x H x W; a ComfyUI IMAGE is "
            "N x H x W x C (use frames.permute(0, 2, 3, 1))"
        )
    if frames.shape[0] < 2:
        raise InputError(
            f"frame interpolation needs at least 2 frames, got {frames.shape[0]}; batch the frames first "
            "(e.g. with Image Batch or a video loader)"
        )
    if not frames.is_floating_point():
        raise InputError(f"frames must hold floats in [0, 1] (a ComfyUI IMAGE), got dtype {frames.dtype}")
    for index in range(frames.shape[0]):
        pixels = frames[index, ..., :3]
        if not torch.isfinite(pixels).all():
            raise InputError(
                f"frame {index} contains NaN or infinite pixel values; fix the node that produced the frames"
            )
        least, most = (float(value) for value in torch.aminmax(pixels))
        if most > MOST_PIXEL_VALUE or least < LEAST_PIXEL_VALUE:
            raise InputError(
                f"frame {index} has pixel values from {least:g} to {most:g}, but an IMAGE holds values in [0, 1]; "
                "fix the node that produced the frames"
            )
    return frames


def _allocate_output(count: int, height: int, width: int) -> torch.Tensor:
    """The one output IMAGE tensor, written in place frame by frame (no list of frames + concatenation)."""
    return torch.empty((count, height, width, 3), dtype=torch.float32)


def interpolate_frames(
    frames: torch.Tensor,
    ckpt_name: str,
    multiplier: object = 2,
    clear_cache_after_n_frames: int = 1,
    interpolation_states: object = None,
    precision: str = "fp32",
    correlation: str = "auto",
    scale_factor: float = 1.0,
) -> torch.Tensor:
    """What "AMT VFI" computes: the seed node's frames, order and count (see AMT-SPEC 6.4-6.6)."""
    frames = check_frames(frames)
    plan = build_plan(frames.shape[0], parse_multiplier(multiplier), skip_function(interpolation_states))
    clear_every = whole_number(clear_cache_after_n_frames, "clear_cache_after_n_frames", "use e.g. 1 or 10")
    if clear_every < 1:
        raise InputError(f"clear_cache_after_n_frames must be at least 1, got {clear_every}")
    scale = checked_scale_factor(scale_factor)
    device = host.torch_device()
    interpolator = Interpolator(
        models.resolve(ckpt_name),
        device=device,
        precision=precision,
        correlation=correlation,
        scale_factor=scale,
        between_batches=host.throw_if_interrupted,  # Cancel also inside a pair with many time steps
    )
    height, width = frames.shape[1:3]
    host.make_room(interpolator.device, interpolator.least_device_memory(height, width))
    output = _allocate_output(len(plan), height, width)
    progress = host.progress_bar(len(plan))
    outputs = interpolator.run(frames_in_order(frames), plan)  # lazy: a pair is computed when first asked
    pairs_since_clear = 0
    index = 0
    try:
        with torch.no_grad():
            for _, original, items in plan_groups(plan):
                if not original:
                    host.throw_if_interrupted()  # cancel between pairs
                for _ in items:
                    output[index] = next(outputs)
                    index += 1
                    progress.update(1)
                if not original:
                    pairs_since_clear += 1
                    if pairs_since_clear >= clear_every:
                        host.soft_empty_cache(device)
                        pairs_since_clear = 0
    finally:
        outputs.close()
        if device.type != "cpu":
            interpolator.offload()  # the model stays loaded, on the CPU, for the next run
    host.soft_empty_cache(device)
    return output


# -- nodes ------------------------------------------------------------------------------------------


class AMT_VFI(QueueTimeValidation):  # noqa: N801 - the seed's class name
    """AMT frame interpolation with the seed node's inputs and results, bounded memory and a cached model."""

    CATEGORY = CATEGORY
    FUNCTION = "vfi"
    RETURN_TYPES = ("IMAGE",)
    OUTPUT_TOOLTIPS = ("The input frames with the interpolated frames between them, in playback order.",)

    DESCRIPTION = (
        "Adds frames between every pair of input frames with AMT (All-Pairs Multi-Field Transforms). "
        "Same inputs and results as the ComfyUI-Frame-Interpolation 'AMT VFI' node, for any frame size, "
        "with the model loaded once, progress, cancel, and memory that does not grow with the clip length."
    )

    @classmethod
    def INPUT_TYPES(cls):  # noqa: N802 - ComfyUI's name
        return {
            "required": {
                "ckpt_name": (
                    models.checkpoint_names(),
                    {
                        "default": "amt-s.pth",
                        "tooltip": "AMT checkpoint. amt-s: fast; amt-l/amt-g: larger, slower, sharper; "
                        "gopro_amt-s: trained on GoPro footage. Official files are downloaded on first use "
                        "into models/frame_interpolation/amt/; other AMT files found there are listed too.",
                    },
                ),
                "frames": ("IMAGE", {"tooltip": "The frames to interpolate, in order (at least 2)."}),
                "clear_cache_after_n_frames": (
                    "INT",
                    {
                        "default": 1,
                        "min": 1,
                        "max": 100,
                        "tooltip": "Release cached GPU memory after this many interpolated frame pairs. "
                        "Higher is a little faster; lower leaves more free memory to other nodes meanwhile.",
                    },
                ),
                "multiplier": (
                    "INT",
                    {
                        "default": 2,
                        "min": 2,
                        "max": 1000,
                        "tooltip": "Output frames per input pair: 2 doubles the frame rate (one new frame "
                        "per pair), 4 quadruples it. A list from a link (e.g. VFI FloatToInt) is a per-pair "
                        "schedule: 0 drops the pair, 1 keeps its first frame only, missing entries are 2.",
                    },
                ),
            },
            "optional": {
                "optional_interpolation_states": (
                    "INTERPOLATION_STATES",
                    {
                        "tooltip": "Pairs to skip (or the only pairs to interpolate), from 'Make "
                        "Interpolation State List'. Pair i is frames i and i+1."
                    },
                ),
                "precision": (
                    list(PRECISIONS),
                    {
                        "default": "fp32",
                        "tooltip": "fp32 gives the seed node's exact results. auto uses fp16 on NVIDIA GPUs "
                        "(faster, less memory, tiny differences); bf16 also works on CPUs.",
                    },
                ),
                "correlation": correlation_input(),
                "scale_factor": scale_factor_input(),
            },
        }

    def vfi(
        self,
        ckpt_name: str,
        frames: torch.Tensor,
        clear_cache_after_n_frames: int = 1,
        multiplier: object = 2,
        optional_interpolation_states: object = None,
        precision: str = "fp32",
        correlation: str = "auto",
        scale_factor: float = 1.0,
    ) -> tuple[torch.Tensor]:
        return (
            interpolate_frames(
                frames,
                ckpt_name,
                multiplier=multiplier,
                clear_cache_after_n_frames=clear_cache_after_n_frames,
                interpolation_states=optional_interpolation_states,
                precision=precision,
                correlation=correlation,
                scale_factor=scale_factor,
            ),
        )


class MakeInterpolationStateList:
    """Frame-pair indices to skip (or to keep) -> INTERPOLATION_STATES for "AMT VFI" and the seed's nodes."""

    CATEGORY = CATEGORY
    FUNCTION = "create_options"
    RETURN_TYPES = ("INTERPOLATION_STATES",)
    OUTPUT_TOOLTIPS = ("Which frame pairs the VFI node interpolates.",)
    DESCRIPTION = "Lists frame pairs (pair i = frames i and i+1) to skip, or the only ones to interpolate."

    @classmethod
    def INPUT_TYPES(cls):  # noqa: N802
        return {
            "required": {
                "frame_indices": (
                    "STRING",
                    {
                        "multiline": True,
                        "default": "1,2,3",
                        "tooltip": "Pair indices separated by commas or new lines; ranges like 4-7 are "
                        "inclusive. Pair 0 is the first two frames.",
                    },
                ),
                "is_skip_list": (
                    "BOOLEAN",
                    {
                        "default": True,
                        "tooltip": "On: the listed pairs get no new frames. Off: only the listed pairs are "
                        "interpolated.",
                    },
                ),
            }
        }

    def create_options(self, frame_indices: str, is_skip_list: bool) -> tuple[InterpolationStateList]:
        return (InterpolationStateList(parse_frame_indices(frame_indices), is_skip_list),)


def _to_int(value: object) -> int:
    if isinstance(value, torch.Tensor):
        value = value.item()
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"VFI FloatToInt: {value!r} is not a number") from None
    if not math.isfinite(number):
        raise InputError(f"VFI FloatToInt: {value!r} cannot be made a whole number")
    return int(number)


class FloatToInt:
    """The seed pack's schedule helper: a float, or a list of floats (a curve), to whole numbers."""

    CATEGORY = "ComfyUI-Frame-Interpolation"
    FUNCTION = "convert"
    RETURN_TYPES = ("INT",)
    OUTPUT_TOOLTIPS = ("The whole part of the value; a list of them when a list of floats came in.",)
    DESCRIPTION = "Float (or list of floats, e.g. a per-pair schedule) to int, dropping the fractional part."

    @classmethod
    def INPUT_TYPES(cls):  # noqa: N802
        return {
            "required": {
                "float": (
                    "FLOAT",
                    {
                        "default": 0,
                        "min": 0,
                        "step": 0.01,
                        "tooltip": "A number, or a list of numbers from a schedule node; each loses its "
                        "fractional part (2.7 -> 2), as in the seed pack.",
                    },
                )
            }
        }

    def convert(self, float: object) -> tuple[int | list[int]]:  # noqa: A002 - the seed's input name
        if isinstance(float, torch.Tensor):
            float = float.item() if float.dim() == 0 else float.flatten().tolist()
        if isinstance(float, (str, bytes)):
            raise InputError(f"VFI FloatToInt needs a number or a list of numbers, got text {float!r}")
        if isinstance(float, Iterable):
            return ([_to_int(value) for value in float],)
        return (_to_int(float),)


class VFIScheduleFromText:
    """A per-pair multiplier schedule typed as text, as the FLOAT list that VFI FloatToInt takes."""

    CATEGORY = CATEGORY
    FUNCTION = "parse"
    RETURN_TYPES = ("FLOAT",)
    OUTPUT_TOOLTIPS = ("One value per frame pair (a list), for VFI FloatToInt -> multiplier.",)
    DESCRIPTION = "Per-pair multipliers as text, e.g. '4, 2, 2, 1, 0', for schedule workflows without other packs."

    @classmethod
    def INPUT_TYPES(cls):  # noqa: N802
        return {
            "required": {
                "schedule": (
                    "STRING",
                    {
                        "multiline": True,
                        "default": "4, 2, 2, 1",
                        "tooltip": "One number per frame pair, separated by commas or new lines. In AMT VFI, "
                        "0 drops the pair, 1 keeps only its first frame, n makes n-1 new frames; pairs past "
                        "the end of the list get 2.",
                    },
                )
            }
        }

    def parse(self, schedule: str) -> tuple[list[float]]:
        if not isinstance(schedule, str):
            raise InputError(f"schedule must be text such as '4, 2, 2, 1', got {type(schedule).__name__} {schedule!r}")
        values: list[float] = []
        for piece in _text_pieces(schedule):
            try:
                value = float(piece)
            except ValueError:
                raise InputError(f"schedule: {piece!r} is not a number; write e.g. '4, 2, 2, 1'") from None
            if not math.isfinite(value) or value < 0:
                raise InputError(f"schedule: {piece!r} must be a number of 0 or more")
            values.append(value)
        return (values,)


NODE_CLASS_MAPPINGS = {
    "AMT VFI": AMT_VFI,
    "Make Interpolation State List": MakeInterpolationStateList,
    "VFI FloatToInt": FloatToInt,
    "VFI Schedule From Text": VFIScheduleFromText,
    "AMT Model Loader": AMTModelLoader,
}

# The seed registers no custom display names; ComfyUI shows these ids as they are.
NODE_DISPLAY_NAME_MAPPINGS = {name: name for name in NODE_CLASS_MAPPINGS}

host.register_model_folder()

__all__ = [
    "AMT_VFI",
    "FloatToInt",
    "InterpolationStateList",
    "MakeInterpolationStateList",
    "NODE_CLASS_MAPPINGS",
    "NODE_DISPLAY_NAME_MAPPINGS",
    "VFIScheduleFromText",
]
