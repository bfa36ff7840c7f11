"""`amt_vfi.pipeline.interpolate_file`: the command line's job, called from Python."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from media_helpers import make_clip, pattern, stream_summary
from PIL import Image

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


def _pictures(folder: Path, count: int) -> Path:
    folder.mkdir()
    for index in range(count):
        Image.fromarray(pattern(index, 48, 32)).save(folder / f"f{index}.png")
    return folder


def test_outputs_that_would_destroy_what_the_user_has_are_refused(tmp_path: Path) -> None:
    source = _pictures(tmp_path / "in", 2)
    first = (source / "f0.png").read_bytes()
    with pytest.raises(InputError, match=r"\.png is not a video format amt-vfi writes"):
        interpolate_file(source, source / "f0.png", overwrite=True)  # an input picture is never replaced
    assert (source / "f0.png").read_bytes() == first
    preview = source / "preview.mp4"
    interpolate_file(source, preview)
    interpolate_file(source, preview, overwrite=True)  # a video beside the pictures is not one of them
    home = tmp_path / "Videos"
    (home / "holiday").mkdir(parents=True)
    (home / "notes.txt").write_text("keep me")
    with pytest.raises(OutputExistsError, match=r"holds files amt-vfi did not write \(holiday, notes.txt\)"):
        interpolate_file(source, home, overwrite=True)
    assert (home / "notes.txt").read_text() == "keep me"
    lookalikes = tmp_path / "lookalikes"
    lookalikes.mkdir()
    for name in ("frame_000000.json", ".env", "frame_000001.png"):
        (lookalikes / name).write_text("keep me")
    with pytest.raises(OutputExistsError, match=r"\(\.env, frame_000000\.json\)"):
        interpolate_file(source, lookalikes, overwrite=True)
    for name in ("out.mp5", "out.png", "clip.mkvv"):
        with pytest.raises(InputError, match=f"{name.split('.')[1]} is not a video format amt-vfi writes"):
            interpolate_file(source, tmp_path / name)
        assert not (tmp_path / name).exists()


def test_a_folder_of_earlier_frames_is_replaced_and_any_name_may_be_a_folder(tmp_path: Path) -> None:
    source = _pictures(tmp_path / "in", 2)
    out = tmp_path / "take.v2"
    out.mkdir()  # an existing folder may have a dot in its name
    interpolate_file(source, out)
    for clutter in (".DS_Store", "Thumbs.db", "._frame_000000.png"):
        (out / clutter).write_bytes(b"")
    interpolate_file(source, out, JobSettings(timing=Timing(multiplier=3)), overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [f"frame_00000{i}.png" for i in range(4)]


def test_model_names_are_taken_with_or_without_their_suffix() -> None:
    found = {JobSettings(model=name).resolve_model() for name in ("amt-s", "amt-s.pth")}
    assert len(found) == 1 and found.pop().name == "amt-s.pth"


def test_checks_come_before_any_work(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    with pytest.raises(InputError, match="is the input"):
        interpolate_file(folder, folder)
    with pytest.raises(InputError, match=r"checkpoint \(--checkpoint\) .*missing.pth does not exist"):
        interpolate_file(
            tmp_path / "nothing.mp4", tmp_path / "out.mp4", JobSettings(checkpoint=tmp_path / "missing.pth")
        )


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Timing(multiplier=1), "multiplier must be 2 to 1000"),
        (lambda: Timing(multiplier=10**400), "multiplier must be 2 to 1000 .*, got a number too large to use"),
        (lambda: Timing(fps=100_000), "fps must be a frame rate above 0 and at most 1000"),
        (lambda: Timing(), "a multiplier .* or a target fps .*: one of them"),
        (lambda: Timing(multiplier=2, fps=Fraction(60)), "one of them, not both"),
        (lambda: Timing(fps=float("nan")), "fps must be a number, got nan"),
        (lambda: Timing(fps="60"), "fps must be a number, got '60'"),
        (lambda: Timing(multiplier=2.5), "multiplier must be a whole number, got 2.5"),
        (lambda: JobSettings(crf=99), "crf must be 0 .* to 63 .*, got 99"),
        (lambda: JobSettings(crf=17.5), "crf must be a whole number, got 17.5"),
        (lambda: JobSettings(scene_threshold=2.0), "scene_threshold must be above 0 and at most 1"),
        (lambda: JobSettings(dedup_threshold=-1), "dedup_threshold must be at least 0 and below 1"),
        (lambda: JobSettings(input_fps=0), "fps must be a frame rate above 0 and at most 1000, got 0"),
        (lambda: JobSettings(device="tpu"), "device must be one of auto, cpu, cuda, mps, not 'tpu'"),
        (lambda: JobSettings(precision="fp8"), "precision must be one of"),
        (lambda: JobSettings(correlation="some"), "correlation must be one of"),
        (lambda: JobSettings(scale=0.3), "scale factor 0.3 is not usable"),
        (lambda: JobSettings(timing=2), "timing must be a Timing"),
        (lambda: JobSettings(model=None), "model must be a checkpoint name such as 'amt-s'"),
        (lambda: interpolate_file("in", "out", {"timing": Timing(fps=60)}), "settings must be a JobSettings"),
    ],
)
def test_settings_are_checked_when_made(make, message: str) -> None:
    with pytest.raises(InputError, match=message):
        make()


def test_settings_are_normalised_when_made(tmp_path: Path) -> None:
    assert Timing(fps=np.float32(60)).fps == Fraction(60)
    assert Timing(fps=np.float32(29.97)).fps == Fraction(2997, 100)  # not the float32's binary value
    assert Timing(fps=24000 / 1001).fps == Fraction(24000, 1001)  # the ratio a float stands for
    multiplier = Timing(multiplier=np.float64(2.0)).multiplier
    assert multiplier == 2 and type(multiplier) is int
    settings = JobSettings(input_fps=29.97, crf=np.int64(20), device=torch.device("cpu"), checkpoint=str(tmp_path))
    assert (settings.input_fps, settings.crf, settings.device) == (Fraction(2997, 100), 20, "cpu")
    assert settings.checkpoint == tmp_path
    assert JobSettings(device="cuda:1").device == "cuda:1"  # checked against the GPUs where the job runs
