"""A whole interpolation job, shared by the command line and the Ray workers: settings, timing plans,
and the decode / interpolate / encode pipeline of one clip or chunk."""

from .job import (
    JobReport,
    JobSettings,
    Timing,
    check_output,
    check_output_name,
    frames_at,
    interpolate_file,
    keyframes_of,
    option_problem,
    plan_for,
    render,
    to_array,
    to_tensor,
)

__all__ = [
    "JobReport",
    "JobSettings",
    "Timing",
    "check_output",
    "check_output_name",
    "frames_at",
    "interpolate_file",
    "keyframes_of",
    "option_problem",
    "plan_for",
    "render",
    "to_array",
    "to_tensor",
]
