"""Plans: which output frames to produce, in order, as originals or times between two inputs.

A plan is a sequence of `PlannedFrame`s whose `source` never decreases, so it can be executed while
the input streams past, holding only the current pair of frames.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..errors import InputError

SkipPredicate = Callable[[int], bool]


@dataclass(frozen=True)
class PlannedFrame:
    """Input frame `source` itself (time 0), or the frame at `time` in (0, 1) between `source` and `source + 1`."""

    source: int
    time: float = 0.0

    @property
    def is_original(self) -> bool:
        return self.time == 0.0


def _checked_frame_count(frame_count: int) -> int:
    count = whole_number(frame_count, "frame_count")
    if count < 2:
        raise InputError(f"interpolation needs at least 2 frames, got {frame_count}")
    return count


def whole_number(value: object, what: str, advice: str = "") -> int:
    """`value` as an int when it is a whole number (2, 2.0, a NumPy or one-element torch number), else a
    clear error naming `what`, followed by `advice` (what to do instead) when given."""
    try:
        number = float(value) if not isinstance(value, (bool, np.bool_, str, bytes)) else math.nan
    except (TypeError, ValueError, RuntimeError, OverflowError):  # RuntimeError: a tensor of several numbers
        number = math.nan
    if not number.is_integer():
        raise InputError(f"{what} must be a whole number, got {value!r}" + (f"; {advice}" if advice else ""))
    return int(number)


def _pair_frames(pair: int, multiplier: int, skip: SkipPredicate | None) -> Iterator[PlannedFrame]:
    yield PlannedFrame(pair)
    if skip is None or not skip(pair):
        for step in range(1, multiplier):
            yield PlannedFrame(pair, step / multiplier)


def multiplier_plan(frame_count: int, multiplier: int, skip: SkipPredicate | None = None) -> list[PlannedFrame]:
    """Every pair gets `multiplier - 1` frames at times j / multiplier, unless `skip(pair)`; the last
    input frame closes the sequence (the seed node's order)."""
    frame_count = _checked_frame_count(frame_count)
    multiplier = whole_number(multiplier, "multiplier")
    if multiplier < 1:
        raise InputError(f"multiplier must be at least 1, got {multiplier}")
    plan = [item for pair in range(frame_count - 1) for item in _pair_frames(pair, multiplier, skip)]
    plan.append(PlannedFrame(frame_count - 1))
    return plan


def schedule_plan(
    frame_count: int, multipliers: Iterable[int], skip: SkipPredicate | None = None
) -> list[PlannedFrame]:
    """One multiplier per pair (a schedule): a short list is extended with 2s, extra entries ignored.

    As in the seed node, 0 drops the pair (its first frame, and for the last pair the final frame too)
    and 1 keeps the first frame without new ones. Unlike the seed, `skip` is asked about the real pair
    index, and negative entries or an all-zero schedule are refused instead of crashing.
    """
    frame_count = _checked_frame_count(frame_count)
    try:
        given = None if isinstance(multipliers, (str, bytes)) else list(multipliers)
    except TypeError:  # a number, a 0-d tensor
        given = None
    if given is None:
        raise InputError(f"multipliers must be a list of whole numbers, one per pair, got {multipliers!r}")
    pairs = frame_count - 1
    values = [*given[:pairs], *[2] * max(0, pairs - len(given))]
    values = [whole_number(value, f"multiplier schedule entry {pair}") for pair, value in enumerate(values)]
    for pair, value in enumerate(values):
        if value < 0:
            raise InputError(f"multiplier schedule entry {pair} is {value}: entries must be 0 or more")
    if not any(values):
        raise InputError(
            f"every multiplier the schedule gives the {pairs} frame pair(s) is 0, which would output no frames at "
            "all (entries past the last pair are not used)"
        )
    plan = [item for pair, value in enumerate(values) if value for item in _pair_frames(pair, value, skip)]
    if values[-1]:
        plan.append(PlannedFrame(frame_count - 1))
    return plan


def resample_plan(keyframes: Sequence[int], positions: Iterable[Fraction]) -> list[PlannedFrame]:
    """Output frames at input positions (in input frames) between the input frames `keyframes`.

    Sources in the plan index `keyframes` (the frames the engine is given). A position on a keyframe is
    that original; one between keyframes a and b is the frame at (position - a) / (b - a) of that pair,
    so frames left out of `keyframes` are interpolated; positions past the last keyframe hold it.
    """
    if len(keyframes) < 2 or any(b <= a for a, b in itertools.pairwise(keyframes)):
        raise InputError(f"keyframes must be at least 2 increasing frame indices, got {list(keyframes)[:8]}")
    plan = []
    pair = 0
    for position in positions:
        while pair < len(keyframes) - 2 and position >= keyframes[pair + 1]:
            pair += 1
        first, second = keyframes[pair], keyframes[pair + 1]
        if position >= keyframes[-1]:
            plan.append(PlannedFrame(len(keyframes) - 1))
        elif position <= first:
            plan.append(PlannedFrame(pair))
        else:
            plan.append(PlannedFrame(pair, float(Fraction(position - first) / (second - first))))
    return plan


def retime_plan(frame_count: int, source_fps: Fraction | float, target_fps: Fraction | float) -> list[PlannedFrame]:
    """Output frames at the target rate over the input's duration (frame_count / source_fps).

    Output frame k sits at input position k * source_fps / target_fps; positions on an input frame are
    that original, and positions past the last frame hold it.
    """
    frame_count = _checked_frame_count(frame_count)
    return resample_plan(range(frame_count), retime_positions(frame_count, source_fps, target_fps))


LEAST_RATE, MOST_RATE = 0.001, 1_000_000


def exact_rate(rate: numbers.Real) -> Fraction:
    """A frame rate as an exact fraction: a float such as 24000 / 1001 or 29.97 stands for that ratio, not
    for its binary value (which would put output frames a hair off the input frames they fall on). The
    shortest decimal that gives the float back is its intended value, in float32 (NumPy) as in float64."""
    if isinstance(rate, numbers.Rational):
        return Fraction(rate)
    return Fraction(str(rate)).limit_denominator(1_000_000)


def retime_positions(frame_count: int, source_fps: Fraction | float, target_fps: Fraction | float) -> list[Fraction]:
    """The input positions of the output frames at the target rate (see `retime_plan`)."""
    for rate in (source_fps, target_fps):
        if not isinstance(rate, numbers.Real) or isinstance(rate, bool) or not 0 < rate < math.inf:
            raise InputError(f"frame rates must be positive numbers, got {source_fps!r} -> {target_fps!r}")
        if not LEAST_RATE <= rate <= MOST_RATE:  # 1e-9 became 0 as a fraction; 1e9 a billion frames a second
            raise InputError(
                f"frame rates must be {LEAST_RATE} to {MOST_RATE:,} frames per second, got {source_fps!r} -> "
                f"{target_fps!r}"
            )
    ratio = exact_rate(source_fps) / exact_rate(target_fps)
    output_count = max(1, math.floor(frame_count / ratio + Fraction(1, 2)))
    return [k * ratio for k in range(output_count)]


def plan_groups(plan: Iterable[PlannedFrame]) -> Iterator[tuple[int, bool, list[PlannedFrame]]]:
    """The plan in runs of (source, is_original, items): copies of one original, or the new frames of one
    pair (which the engine computes together)."""
    for (source, original), items in itertools.groupby(plan, key=lambda item: (item.source, item.is_original)):
        yield source, original, list(items)


def skip_predicate(indices: Iterable[int], is_skip_list: bool) -> SkipPredicate:
    """A skip list names pairs not to interpolate; a keep list names the only pairs to interpolate.
    Indices may be any whole numbers (NumPy, tensor elements); ones past the last pair name nothing."""
    chosen = frozenset(whole_number(index, "pair index") for index in indices)
    if is_skip_list:
        return chosen.__contains__
    return lambda pair: pair not in chosen
