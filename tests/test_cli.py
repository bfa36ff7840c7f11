"""`amt-vfi` end to end on real files made here (PyAV, Pillow) with stand-in weights."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from media_helpers import (
    add_subtitles,
    make_clip,
    pattern,
    psnr,
    stored_format,
    stream_summary,
    subtitle_cues,
    write_dpx,
)
from PIL import Image

from amt_vfi.checkpoints import store
from amt_vfi.cli import main
from amt_vfi.engine import DEFAULT_DUPLICATE_THRESHOLD
from amt_vfi.media.images import read_image


def _decode(path: Path) -> tuple[list[np.ndarray], list[int], Fraction]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [(f.to_ndarray(format="rgb24"), f.pts) for f in container.decode(stream)]
        return [f for f, _ in frames], [p for _, p in frames], stream.time_base


def _folder(path: Path, pictures: list[np.ndarray], names: list[str] | None = None) -> Path:
    path.mkdir()
    for index, picture in enumerate(pictures):
        Image.fromarray(picture).save(path / (names[index] if names else f"f{index}.png"))
    return path


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name)


@pytest.fixture(scope="module")
def clip24(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clips") / "clip.mp4"
    make_clip(path, frames=24, fps=Fraction(24), size=(320, 240))
    return path


def test_video_doubled_keeps_audio_duration_and_originals(clip24: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "clip_2x.mp4"
    assert main([str(clip24), "-o", str(out), "--multiplier", "2"]) == 0
    assert "24 frames in, 47 out at 48 fps" in capsys.readouterr().out
    source, _, _ = _decode(clip24)
    frames, _, _ = _decode(out)
    with av.open(str(out)) as container:
        assert container.streams.video[0].average_rate == 48
    assert len(frames) in (47, 48)
    summary = stream_summary(out)
    assert summary["audio_codec"] == "aac"
    assert abs(summary["duration"] - stream_summary(clip24)["duration"]) <= 0.15
    assert min(psnr(frames[2 * i], source[i]) for i in range(24)) > 30


def test_fps_conversion_places_frames_at_exact_times(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    make_clip(clip, frames=12, fps=Fraction(24), size=(160, 128), audio_codec=None)
    out = tmp_path / "clip_60.mp4"
    assert main([str(clip), "-o", str(out), "--fps", "60", "-q"]) == 0
    frames, pts, time_base = _decode(out)
    assert len(frames) == 30
    assert [float(p * time_base) for p in pts] == pytest.approx([i / 60 for i in range(30)])
    source, _, _ = _decode(clip)
    assert psnr(frames[5], source[2]) > 30  # 5/60 s is input frame 2 itself


def test_png_folder_tripled_in_natural_order(tmp_path: Path) -> None:
    pictures = [pattern(i, 96, 64) for i in range(5)]
    names = ["f1.png", "f2.png", "f10.png", "f11.png", "f20.png"]
    source = _folder(tmp_path / "in", pictures, names)
    out = tmp_path / "out"
    assert main([str(source), "-o", str(out), "--multiplier", "3", "-q"]) == 0
    written = sorted(out.iterdir())
    assert len(written) == 13
    assert np.array_equal(np.asarray(Image.open(written[0])), pictures[0])
    assert np.array_equal(np.asarray(Image.open(written[6])), pictures[2])  # f10 is the third frame


def test_sixteen_bit_pngs_stay_sixteen_bit(tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    for index in range(2):
        data = (pattern(index, 64, 48).astype(np.uint16) * 257)[..., 0]
        Image.fromarray(data).save(source / f"{index}.png")
    out = tmp_path / "out"
    assert main([str(source), "-o", str(out), "-q"]) == 0
    with av.open(str(sorted(out.iterdir())[0])) as container:
        assert next(container.decode(video=0)).format.name.startswith(("rgb48", "gray16"))


def test_ten_bit_dpx_plates_come_out_as_ten_bit_dpx(tmp_path: Path) -> None:
    source = tmp_path / "plates"
    source.mkdir()
    for index in range(3):
        write_dpx(source / f"shot.{1001 + index}.dpx", pattern(index, 96, 64).astype(np.uint16) * 257, "gbrp10le")
    out = tmp_path / "out"
    assert main([str(source), "-o", str(out), "-q"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [f"frame_00000{i}.dpx" for i in range(5)]
    assert {stored_format(p) for p in out.iterdir()} == {"gbrp10le"}
    assert np.array_equal(read_image(out / "frame_000004.dpx"), read_image(source / "shot.1003.dpx"))
    middle = read_image(out / "frame_000001.dpx")
    assert middle.dtype == np.uint16 and not np.array_equal(middle, read_image(source / "shot.1001.dpx"))


def test_no_blending_across_a_hard_cut(tmp_path: Path) -> None:
    scene_a = [pattern(i, 96, 64) for i in range(3)]
    scene_b = [255 - pattern(i, 96, 64)[::-1] for i in range(3)]
    source = _folder(tmp_path / "in", scene_a + scene_b)
    out = tmp_path / "out"
    assert main([str(source), "-o", str(out), "-q"]) == 0
    written = [np.asarray(Image.open(p)) for p in sorted(out.iterdir())]
    assert len(written) == 11
    assert np.array_equal(written[5], scene_b[0])  # the in-between at the cut holds the next real frame
    assert not np.array_equal(written[3], scene_a[1]) and not np.array_equal(written[3], scene_a[2])
    blended = tmp_path / "blended"
    assert main([str(source), "-o", str(blended), "-q", "--no-scene-detect"]) == 0
    assert not np.array_equal(np.asarray(Image.open(sorted(blended.iterdir())[5])), scene_b[0])


def test_dedup_turns_repeated_frames_into_motion(tmp_path: Path) -> None:
    distinct = [pattern(i, 96, 64) for i in range(4)]
    source = _folder(tmp_path / "in", [picture for picture in distinct for _ in range(2)])  # on twos
    plain, dedup = tmp_path / "plain", tmp_path / "dedup"
    assert main([str(source), "-o", str(plain), "-q"]) == 0
    assert main([str(source), "-o", str(dedup), "-q", "--dedup"]) == 0
    plain_frames = [np.asarray(Image.open(p)) for p in sorted(plain.iterdir())]
    dedup_frames = [np.asarray(Image.open(p)) for p in sorted(dedup.iterdir())]
    assert len(plain_frames) == len(dedup_frames) == 15
    # Output frame 2 is input frame 1, a repeat of frame 0: kept as is it stutters, with --dedup it is
    # the frame halfway to the next distinct picture.
    assert np.array_equal(plain_frames[2], distinct[0])
    assert psnr(dedup_frames[2], distinct[0]) < 40
    assert np.array_equal(dedup_frames[4], distinct[1])  # distinct frames stay originals


def test_dedup_finds_the_repeats_of_an_h264_clip_on_twos(tmp_path: Path) -> None:
    from amt_vfi.media import open_source
    from amt_vfi.pipeline import keyframes_of

    clip = tmp_path / "twos.mp4"
    with av.open(str(clip), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for index in range(24):
            frame = av.VideoFrame.from_ndarray(pattern(index // 2, 320, 240), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with open_source(clip) as source:
        assert keyframes_of(source, DEFAULT_DUPLICATE_THRESHOLD) == [*range(0, 24, 2), 23]


def _fails(argv: list[str], capsys, *needles: str) -> str:
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err
    return err


def test_errors_name_the_problem_and_leave_nothing(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out.mp4"
    _fails([str(tmp_path / "missing.mp4"), "-o", str(out)], capsys, "missing.mp4", "does not exist")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    _fails([str(text), "-o", str(out)], capsys, "notes.mp4")
    empty = tmp_path / "empty"
    empty.mkdir()
    _fails([str(empty), "-o", str(out)], capsys, "empty", "at least 2")
    one = _folder(tmp_path / "one", [pattern(0, 32, 32)])
    _fails([str(one), "-o", str(out)], capsys, "one", "at least 2")
    mixed = _folder(tmp_path / "mixed", [pattern(0, 32, 32), pattern(1, 48, 32)])
    _fails([str(mixed), "-o", str(out)], capsys, "f1.png", "32")
    assert not out.exists() and _leftovers(tmp_path) == []


def test_codec_mistakes_are_refused_before_the_work(clip24: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out.mp4"
    _fails([str(clip24), "-o", str(out), "--codec", "aac"], capsys, "Codec aac is not a video encoder")
    _fails([str(clip24), "-o", str(tmp_path / "o.mkv"), "--codec", "srt"], capsys, "Codec srt is not a video encoder")
    _fails(
        [str(clip24), "-o", str(out), "--codec", "libx265", "--crf", "60"], capsys, "beyond libx265's range of 0 to 51"
    )
    webm = tmp_path / "o.webm"  # the default is VP9 there, but H.264 asked for by name is not swapped silently
    _fails(
        [str(clip24), "-o", str(webm), "--codec", "libx264"], capsys, "Codec libx264 cannot be stored in .webm files"
    )
    assert not out.exists() and _leftovers(tmp_path) == []


def test_mjpeg_in_avi(tmp_path: Path) -> None:
    clip, out = tmp_path / "clip.mp4", tmp_path / "out.avi"
    make_clip(clip, frames=3, fps=Fraction(24), size=(96, 64), audio_codec=None)
    assert main([str(clip), "-o", str(out), "--codec", "mjpeg", "-q"]) == 0
    frames, _, _ = _decode(out)
    source, _, _ = _decode(clip)
    assert len(frames) == 5 and psnr(frames[4], source[2]) > 30


def test_usage_errors_name_the_option(tmp_path: Path, capsys) -> None:
    for argv, needle in (
        (["--multiplier", "1"], "--multiplier: must be 2 to 1000"),
        (
            ["--multiplier", "1" + "0" * 400],
            "--multiplier: must be 2 to 1000 (the output has N times the frames), got 1000000000",
        ),
        (["--fps", "1e400"], "--fps: must be a frame rate above 0 and at most 1000, got 1e400"),
        (["--model", "amt-xl"], "choose from 'amt-g', 'amt-l', 'amt-s', 'gopro_amt-s'"),
        (["--fps", "fast"], "--fps: 'fast' is not a frame rate"),
        (["--scene-threshold", "-1"], "--scene-threshold: must be above 0 and at most 1"),
        (["--scene-threshold", "nan"], "--scene-threshold: 'nan' is not a number"),
        (["--dedup", "5"], "--dedup: must be at least 0 and below 1"),
        (["--crf", "-5"], "--crf: must be 0 (lossless) to 63"),
        (["--scale", "inf"], "--scale: 'inf' is not a number"),
        (["--scale", "2"], "--scale: scale factor must be in (0, 1], not 2.0"),
        (["--scale", "0.3"], "--scale: scale factor 0.3 is not usable"),
        (["--model", "amt-g", "--checkpoint", "amt-l.pth"], "argument --checkpoint: not allowed with argument --model"),
        (["--scale", "0.0625"], "--scale: scale factor 0.0625 is below 0.25: smaller frames would be padded"),
    ):
        with pytest.raises(SystemExit) as caught:
            main(["in.mp4", "-o", str(tmp_path / "o.mp4"), *argv])
        assert caught.value.code == 2
        assert needle in capsys.readouterr().err


def test_empty_and_pipe_paths_are_usage_errors(tmp_path: Path, capsys) -> None:
    for argv, needle in (
        (["", "-o", str(tmp_path / "o.mp4")], "argument input: the path is empty"),
        (["in.mp4", "-o", ""], "argument -o/--output: the path is empty"),  # was the current folder
        (["in.mp4", "-o", "-"], "argument -o/--output: '-' (a pipe) is not supported"),  # was a folder named -
    ):
        with pytest.raises(SystemExit) as caught:
            main(argv)
        assert caught.value.code == 2
        assert needle in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("rotation", [90, -90])
def test_a_rotated_video_becomes_upright_images(tmp_path: Path, rotation: int) -> None:
    clip = tmp_path / "phone.mp4"
    make_clip(clip, frames=3, size=(64, 48), audio_codec=None, rotation=rotation)
    with av.open(str(clip)) as container:
        stored = next(container.decode(video=0)).to_ndarray(format="rgb24")  # 48 x 64, as recorded
    out = tmp_path / "frames"
    assert main([str(clip), "-o", str(out), "-q"]) == 0
    first = np.asarray(Image.open(out / "frame_000000.png"))
    assert first.shape == (64, 48, 3)  # upright: 48 wide, 64 high
    assert np.array_equal(first, np.rot90(stored, rotation // 90))  # counter-clockwise, as players turn it


def test_a_codec_the_container_cannot_hold_is_refused_before_any_work(clip24: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out.mov"
    expected = "Codec ffv1 cannot be stored in .mov files"
    _fails([str(clip24), "-o", str(out), "--codec", "ffv1"], capsys, expected, "out.mov")
    assert not out.exists() and _leftovers(tmp_path) == []


def test_input_fps_is_for_image_folders(clip24: Path, tmp_path: Path, capsys) -> None:
    _fails([str(clip24), "-o", str(tmp_path / "o.mp4"), "--input-fps", "10"], capsys, "--input-fps", "is a video")
    assert _leftovers(tmp_path) == [] and not (tmp_path / "o.mp4").exists()


def test_existing_output_is_kept_without_overwrite(clip24: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out.mp4"
    out.write_bytes(b"precious")
    _fails([str(clip24), "-o", str(out)], capsys, str(out), "--overwrite")
    assert out.read_bytes() == b"precious"
    _fails([str(clip24), "-o", str(clip24), "--overwrite"], capsys, "is the input")
    (tmp_path / "shot").mkdir()
    frames = _folder(tmp_path / "shot" / "frames", [pattern(i, 32, 32) for i in range(2)])
    (tmp_path / "shot" / "notes.txt").write_text("keep me")
    _fails([str(frames), "-o", str(tmp_path / "shot"), "--overwrite"], capsys, "holding the input", "frames")
    assert sorted(p.name for p in frames.iterdir()) == ["f0.png", "f1.png"]
    assert (tmp_path / "shot" / "notes.txt").read_text() == "keep me"


def test_missing_checkpoint_says_where_to_put_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, clip24: Path
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    monkeypatch.setenv("AMT_VFI_MODELS", str(models))
    monkeypatch.setattr(store, "DOWNLOAD_URL", "http://127.0.0.1:9/{name}")
    out = tmp_path / "out.mp4"
    _fails([str(clip24), "-o", str(out), "--model", "amt-l"], capsys, "amt-l.pth", f"put it in {models}")
    _fails([str(clip24), "-o", str(out), "--checkpoint", str(tmp_path / "x.pth")], capsys, "--checkpoint", "x.pth")
    assert not out.exists() and _leftovers(tmp_path) == []


def test_failure_mid_run_leaves_no_partial_output(
    clip24: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from amt_vfi.engine import Interpolator

    calls = []
    launch_pair = Interpolator._launch_pair

    def interrupted(self, frame0, frame1, timesteps):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return launch_pair(self, frame0, frame1, timesteps)

    monkeypatch.setattr(Interpolator, "_launch_pair", interrupted)
    out = tmp_path / "out.mp4"
    assert main([str(clip24), "-o", str(out), "-q"]) == 130
    assert "interrupted; no output was written" in capsys.readouterr().err
    assert not out.exists() and _leftovers(tmp_path) == []


_INTERRUPTED_WHILE_LOADING = """
import sys

class InterruptTheCommandImport:
    def find_spec(self, name, path=None, target=None):
        if name == "amt_vfi.cli.app":  # where torch gets imported: the slow part of the start
            raise KeyboardInterrupt
        return None

from amt_vfi.cli import main

print("torch imported before the command:", "torch" in sys.modules)
sys.meta_path.insert(0, InterruptTheCommandImport())
sys.exit(main(["in.mp4", "-o", "out.mp4"]))
"""


def test_ctrl_c_while_the_command_loads_is_one_line() -> None:
    done = subprocess.run([sys.executable, "-c", _INTERRUPTED_WHILE_LOADING], capture_output=True, text=True)
    assert done.returncode == 130
    assert done.stdout.strip() == "torch imported before the command: False"
    assert done.stderr.strip() == "amt-vfi: interrupted; no output was written"


def test_the_package_loads_its_parts_on_first_use() -> None:
    code = (
        "import sys, amt_vfi; loaded = 'torch' in sys.modules; "
        "engine, media = amt_vfi.engine, amt_vfi.media; "  # sub-packages first, before anything imports them
        "from amt_vfi import *; from amt_vfi.cli import build_parser; "
        "print(loaded, engine.Interpolator is Interpolator, media.open_sink.__name__, build_parser().prog, "
        "sorted(set(amt_vfi.__all__) - set(dir(amt_vfi))), hasattr(amt_vfi, '__main__'))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "True", "open_sink", "amt-vfi", "[]", "False"]


def test_sigterm_ends_like_ctrl_c_and_leaves_nothing(tmp_path: Path) -> None:
    clip = tmp_path / "long.mp4"
    make_clip(clip, frames=120, size=(320, 240), audio_codec=None)
    out = tmp_path / "out" / "long_2x.mp4"
    out.parent.mkdir()
    job = subprocess.Popen(
        [sys.executable, "-m", "amt_vfi", str(clip), "-o", str(out), "-q"], stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not any(out.parent.iterdir()) and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # until the temporary output exists: the job is writing frames
    job.send_signal(signal.SIGTERM)
    _, err = job.communicate(timeout=120)
    assert job.returncode == 130 and "interrupted; no output was written" in err and "Traceback" not in err
    assert list(out.parent.iterdir()) == []


def test_command_line_entry_point_runs_without_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "amt_vfi", str(tmp_path / "nope.mkv"), "-o", str(tmp_path / "o.mp4")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("amt-vfi: error:") and "Traceback" not in result.stderr
    help_text = subprocess.run(
        [sys.executable, "-m", "amt_vfi", "--help"], capture_output=True, text=True, timeout=120
    ).stdout
    assert "--multiplier" in help_text and "examples:" in help_text and "--demo" in help_text


def test_subtitles_are_kept_and_a_dropped_track_is_a_warning_line(tmp_path: Path, capsys) -> None:
    source, film = tmp_path / "source.mp4", tmp_path / "film.mkv"
    make_clip(source, frames=6, size=(64, 48))
    add_subtitles(source, [(0.05, 0.2, "Hi")], film)
    for name in ("out.mkv", "out.mp4"):
        assert main([str(film), "-o", str(tmp_path / name), "-q"]) == 0
        assert subtitle_cues(tmp_path / name) == subtitle_cues(film) != []
    assert capsys.readouterr().err == ""
    assert main([str(film), "-o", str(tmp_path / "out.avi"), "-q"]) == 0
    err = capsys.readouterr().err
    assert "amt-vfi: warning: the output container cannot hold srt subtitles; leaving out subtitle track 2" in err
