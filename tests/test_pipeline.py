"""`amt_vfi.pipeline.interpolate_file`: the command line's job, called from Python."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
from media_helpers import make_clip, stream_summary

from amt_vfi.errors import InputError
from amt_vfi.media import OutputExistsError
from amt_vfi.pipeline import JobSettings, Timing, interpolate_file


def test_a_video_file_from_python_with_progress(tmp_path: Path) -> None:
    clip, out = tmp_path / "clip.mp4", tmp_path / "out.mp4"
    make_clip(clip, frames=5, size=(96, 64))
    calls: list[tuple[int, int]] = []
    settings = JobSettings(timing=Timing(multiplier=3), device="cpu")
    report = interpolate_file(clip, out, settings, progress=lambda written, total: calls.append((written, total)))
    assert (report.input_frames, report.output_frames, report.output_fps, report.output) == (5, 13, 72, out)
    assert calls == [(written, 13) for written in range(14)]
    summary = stream_summary(out)
    assert summary["packets"]["video"] == 13 and summary["audio_codec"] == "aac"
    assert summary["ends"]["video"] == pytest.approx(13 / 72)

    before = out.read_bytes()
    with pytest.raises(OutputExistsError, match="out.mp4"):
        interpolate_file(clip, out, settings)
    assert out.read_bytes() == before
    retimed = interpolate_file(clip, out, JobSettings(timing=Timing(fps=Fraction(60)), device="cpu"), overwrite=True)
    assert (retimed.output_frames, retimed.output_fps) == (13, 60)  # 5/24 s at 60 fps: 12.5 frames, half up


def test_checks_come_before_any_work(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    with pytest.raises(InputError, match="is the input"):
        interpolate_file(folder, folder)
    with pytest.raises(InputError, match="--checkpoint .*missing.pth does not exist"):
        interpolate_file(
            tmp_path / "nothing.mp4", tmp_path / "out.mp4", JobSettings(checkpoint=tmp_path / "missing.pth")
        )
