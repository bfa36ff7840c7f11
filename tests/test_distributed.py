"""Scale-out over Ray: chunked output equals the single-process CLI, faults, resume, many clips.

One local Ray (2 CPUs) serves the module. Two CPU workers get one CPU and one torch thread each, so
the single-process references run on one thread too: torch's CPU kernels round differently with
different thread counts, and the comparisons here are exact.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import ray
import torch
from distributed_helpers import decode, kill_ray_workers, read_folder, scene_frame, write_folder
from media_helpers import (
    add_subtitles,
    add_ttml,
    chapters_of,
    make_clip,
    stream_summary,
    subtitle_cues,
    write_dpx,
)

from amt_vfi.cli import main
from amt_vfi.distributed import choose_boundaries, expand_batch, interpolate_distributed, is_batch, make_chunks
from amt_vfi.distributed.manifest import input_identity, settings_key
from amt_vfi.distributed.runner import _check_reachable, _discard_unfinished
from amt_vfi.engine import multiplier_plan, retime_plan
from amt_vfi.errors import AmtVfiError, InputError
from amt_vfi.media.images import read_image
from amt_vfi.pipeline import JobSettings, Timing

CUTS = (20, 40)
SIZE = (96, 64)
CHUNK = 12  # input frames: a 60-frame clip becomes 6 chunks, two of them ending at the cuts


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 frames, scene cuts at 20 and 40."""
    frames = [scene_frame(i, CUTS, *SIZE) for i in range(60)]
    return write_folder(tmp_path_factory.mktemp("scenes") / "in", frames)


@pytest.fixture(scope="module")
def reference(scenes: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """The single-process CLI's output for `scenes`, on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("reference") / "out"
        assert main([str(scenes), "-o", str(out), "-q"]) == 0
    finally:
        torch.set_num_threads(threads)
    return read_folder(out)


def _manifest(output: Path) -> dict:
    return json.loads((output.parent / f".{output.name}.amt-vfi-manifest.json").read_text())


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name or p.name.endswith("-work"))


# -- chunking (no Ray) ------------------------------------------------------------------------------


def test_boundaries_prefer_cuts_and_bound_the_length() -> None:
    assert choose_boundaries(60, CHUNK, CUTS) == [12, 20, 32, 40, 52]
    assert choose_boundaries(60, 24, CUTS) == [20, 40]
    assert choose_boundaries(60, 24, [3, 50]) == [24, 48]  # cuts too early in a chunk are not used
    assert choose_boundaries(60, 100, CUTS) == []
    assert choose_boundaries(2, 1) == []


@pytest.mark.parametrize("plan", [multiplier_plan(30, 3), retime_plan(30, Fraction(24), Fraction(60))])
def test_chunks_cover_the_plan_once_and_read_one_frame_of_overlap(plan) -> None:
    chunks = make_chunks(plan, [7, 15, 22])
    assert [item for chunk in chunks for item in chunk.items] == plan
    assert [chunk.first_output for chunk in chunks] == [0, *np.cumsum([c.frames for c in chunks])[:-1]]
    for chunk, following in zip(chunks, chunks[1:], strict=False):
        assert chunk.last_frame == following.first_frame  # the pair across the boundary, once, on the left
    assert chunks[-1].last_frame == 29


def test_batch_inputs_are_list_files_and_folders_of_videos(tmp_path: Path, scenes: Path) -> None:
    for name in ("b.mp4", "c.mkv", "a10.mp4", "a2.mp4", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    listing = tmp_path / "clips.txt"
    listing.write_text("# clips\na2.mp4\n\n  b.mp4\n")
    assert is_batch(tmp_path) and is_batch(listing) and not is_batch(scenes)
    assert [p.name for p in expand_batch(tmp_path)] == ["a2.mp4", "a10.mp4", "b.mp4", "c.mkv"]
    assert expand_batch(listing) == [tmp_path / "a2.mp4", tmp_path / "b.mp4"]
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "up.txt").write_text("../a2.mp4\n./b.mp4\n")  # one name per clip, whatever the spelling
    assert expand_batch(tmp_path / "sub" / "up.txt") == [tmp_path / "a2.mp4", tmp_path / "sub" / "b.mp4"]


def test_the_manifest_names_the_checkpoint_the_same_from_any_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, amt_s_path: Path
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "amt-s.pth").write_bytes(amt_s_path.read_bytes())
    monkeypatch.chdir(tmp_path)
    here = settings_key(JobSettings(), Path("amt-s.pth"))
    monkeypatch.chdir(tmp_path / "a")
    assert settings_key(JobSettings(), Path("../amt-s.pth")) == here
    (tmp_path / "other.pth").write_bytes(amt_s_path.read_bytes())
    assert settings_key(JobSettings(), Path("../other.pth")) != here  # another checkpoint is another job


def test_a_checkpoint_replaced_by_one_of_the_same_size_is_another_job(tmp_path: Path, amt_s_path: Path) -> None:
    weights = tmp_path / "finetune.pth"
    weights.write_bytes(amt_s_path.read_bytes())
    before = settings_key(JobSettings(), weights)
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0xFF  # other weights, same path and size
    weights.write_bytes(bytes(data))
    assert settings_key(JobSettings(), weights) != before


def test_frames_renamed_in_an_input_folder_make_it_another_input(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "f0.png").write_bytes(b"a" * 10)
    (folder / "f1.png").write_bytes(b"b" * 20)
    for file in folder.iterdir():
        os.utime(file, ns=(1_000_000_000, 1_000_000_000))
    before = input_identity(folder)
    (folder / "f0.png").rename(folder / "tmp.png")
    (folder / "f1.png").rename(folder / "f0.png")
    (folder / "tmp.png").rename(folder / "f1.png")  # same names, sizes, times and count: another order
    after = input_identity(folder)
    assert {key: after[key] for key in ("bytes", "mtime_ns", "files")} == {
        key: before[key] for key in ("bytes", "mtime_ns", "files")
    }
    assert after != before


def test_a_folder_of_images_and_videos_is_refused(tmp_path: Path, capsys) -> None:
    frames = write_folder(tmp_path / "frames", [scene_frame(i, (), *SIZE) for i in range(3)])
    (frames / "preview.mp4").write_bytes(b"")
    assert main([str(frames), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "holds both images and videos (preview.mp4, ...)" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]


def test_usage_errors(tmp_path: Path, scenes: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    with pytest.raises(SystemExit) as caught:
        main([str(scenes), "-o", str(tmp_path / "out"), "--workers", "2"])
    assert caught.value.code == 2 and "add --ray" in capsys.readouterr().err
    with pytest.raises(SystemExit) as caught:
        main(["--ray", str(scenes), "-o", str(tmp_path / "out")])
    assert caught.value.code == 2
    assert f"--ray took '{scenes}' as the cluster ADDRESS: put INPUT before --ray" in capsys.readouterr().err
    typo = tmp_path / "shots.txtt"  # a list file that is not there is not found, whatever else is asked
    assert main([str(typo), "-o", str(tmp_path / "out"), "--workers", "2"]) == 1
    assert f"{typo} does not exist" in capsys.readouterr().err
    plain = tmp_path / "plain"
    plain.write_text("a file, not a folder")
    with pytest.raises(InputError, match="must be a folder when the input is many clips"):
        interpolate_distributed([scenes, scenes.parent], plain)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    assert main([str(scenes), "-o", str(tmp_path / "out"), "--ray"]) == 1
    err = capsys.readouterr().err
    assert "pip install 'amt-vfi[ray]'" in err and "Traceback" not in err


def test_an_address_where_nothing_answers_fails_at_once(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    make_clip(clip, frames=4, size=SIZE, audio_codec=None)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(AmtVfiError, match=f"Cannot reach Ray at 127.0.0.1:{port}: .*start it"):
        interpolate_distributed(clip, tmp_path / "out.mp4", address=f"127.0.0.1:{port}")
    assert time.monotonic() - start < 30


# -- on a local Ray -----------------------------------------------------------------------------------


def test_chunks_at_scene_cuts_equal_the_single_process_output(
    local_ray, scenes: Path, reference: dict[str, np.ndarray], tmp_path: Path, capsys
) -> None:
    out = tmp_path / "out"
    argv = [str(scenes), "-o", str(out), "--ray", "--workers", "2", "--chunk-frames", str(CHUNK)]
    assert main(argv) == 0
    assert "60 frames in, 119 out at 48 fps" in capsys.readouterr().out
    entry = _manifest(out)["clips"][str(scenes)]
    assert entry["boundaries"] == [12, 20, 32, 40, 52] and len(entry["chunks"]) == 6
    written = read_folder(out)
    assert list(written) == list(reference)
    assert all(np.array_equal(written[name], reference[name]) for name in reference)
    assert _leftovers(tmp_path) == []


def test_dpx_chunks_join_into_the_single_process_dpx_output(local_ray, one_thread, tmp_path: Path) -> None:
    plates = tmp_path / "plates"
    plates.mkdir()
    for index in range(8):
        write_dpx(plates / f"{index}.dpx", scene_frame(index, (), *SIZE).astype(np.uint16) * 257, "gbrp10le")
    single, chunked = tmp_path / "single", tmp_path / "chunked"
    assert main([str(plates), "-o", str(single), "-q"]) == 0
    assert main([str(plates), "-o", str(chunked), "--ray", "--workers", "2", "--chunk-frames", "4", "-q"]) == 0
    names = sorted(p.name for p in single.iterdir())
    assert len(names) == 15 and all(name.endswith(".dpx") for name in names)
    assert sorted(p.name for p in chunked.iterdir()) == names
    assert all(np.array_equal(read_image(chunked / name), read_image(single / name)) for name in names)


def test_a_killed_worker_is_restarted_and_its_chunk_redone(
    local_ray, scenes: Path, reference: dict[str, np.ndarray], tmp_path: Path
) -> None:
    killed: list[int] = []

    def kill_once(event) -> None:
        if not killed:
            killed.extend(kill_ray_workers())  # the other worker is mid-chunk, this one just got the next

    out = tmp_path / "out"
    report = interpolate_distributed(scenes, out, workers=2, chunk_frames=CHUNK, on_chunk=kill_once)
    assert killed and not report.failed
    assert report.clips[0].computed == 6
    written = read_folder(out)
    assert all(np.array_equal(written[name], reference[name]) for name in reference)


def test_an_interrupted_job_resumes_with_only_the_missing_chunks(
    local_ray, scenes: Path, reference: dict[str, np.ndarray], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    computed: list[int] = []

    def interrupt_after_two(event) -> None:
        computed.append(event.chunk)
        if len(computed) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interpolate_distributed(scenes, out, workers=2, chunk_frames=CHUNK, on_chunk=interrupt_after_two)
    assert not out.exists()
    finished = set(_manifest(out)["clips"][str(scenes)]["chunks"])
    assert {str(chunk) for chunk in computed} <= finished and len(finished) < 6

    report = interpolate_distributed(scenes, out, workers=2, chunk_frames=CHUNK).clips[0]
    assert (report.reused, report.computed) == (len(finished), 6 - len(finished))
    written = read_folder(out)
    assert all(np.array_equal(written[name], reference[name]) for name in reference)

    finished = _manifest(out)
    other_settings = JobSettings(timing=Timing(multiplier=3))
    with pytest.raises(AmtVfiError, match="already exists"):  # another job for the same output is refused ...
        interpolate_distributed(scenes, out, other_settings, workers=2, chunk_frames=CHUNK)
    assert _manifest(out) == finished  # ... and leaves this one's record alone
    again = interpolate_distributed(scenes, out, workers=2, chunk_frames=CHUNK)
    assert again.workers == [] and again.clips[0].computed == 0  # verified complete: Ray is not even used


def test_dedup_chunks_count_kept_frames_and_equal_the_single_process_output(
    local_ray, one_thread, tmp_path: Path
) -> None:
    # 30 pictures with cuts before pictures 10 and 20, each shown twice (every fifth three times).
    repeats = [3 if picture % 5 == 0 else 2 for picture in range(30)]
    firsts = [int(sum(repeats[:picture])) for picture in range(30)]
    frames = [scene_frame(picture, (10, 20), *SIZE) for picture in range(30) for _ in range(repeats[picture])]
    source = write_folder(tmp_path / "in", frames)
    single, chunked = tmp_path / "single", tmp_path / "chunked"
    assert main([str(source), "-o", str(single), "--dedup", "-q"]) == 0
    argv = [str(source), "-o", str(chunked), "--dedup", "--ray", "--workers", "2", "--chunk-frames", "12", "-q"]
    assert main(argv) == 0
    entry = _manifest(chunked)["clips"][str(source)]
    assert entry["keyframes"] == [*firsts, len(frames) - 1]  # the last frame always counts
    assert entry["boundaries"] == [10, 20]  # in kept frames: the cuts' first pictures
    expected, written = read_folder(single), read_folder(chunked)
    assert list(written) == list(expected) and len(written) == 2 * len(frames) - 1
    assert all(np.array_equal(written[name], expected[name]) for name in expected)


def test_many_clips_finish_around_a_corrupt_one(local_ray, tmp_path: Path, capsys) -> None:
    make_clip(tmp_path / "a.mp4", frames=10, size=SIZE)
    make_clip(tmp_path / "c.mov", frames=6, size=SIZE, audio_codec=None)
    broken = write_folder(tmp_path / "b", [scene_frame(i, (), *SIZE) for i in range(12)])
    damaged = broken / "f007.png"
    damaged.write_bytes(damaged.read_bytes()[:200])  # the header still reads, the pixels do not
    listing = tmp_path / "clips.txt"
    listing.write_text("a.mp4\nb\nc.mov\n")
    out = tmp_path / "out"
    assert main([str(listing), "-o", str(out), "--chunk-frames", "4", "-q"]) == 1  # a list runs on Ray unasked
    err = capsys.readouterr().err
    assert f"amt-vfi: error: {broken}:" in err and "f007.png" in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["a.mp4", "c.mov"]
    assert len(decode(out / "a.mp4")[0]) == 19 and len(decode(out / "c.mov")[0]) == 11
    assert stream_summary(out / "a.mp4")["audio_codec"] == "aac"


@pytest.mark.parametrize(
    ("name", "codec"), [("out.mkv", "ffv1"), ("out.mp4", "libx264"), ("out.mkv", "libx264"), ("out.avi", "libx264")]
)
def test_video_output_matches_the_single_process_output(
    local_ray, one_thread, tmp_path: Path, name: str, codec: str, capsys
) -> None:
    source, clip = tmp_path / "source.mp4", tmp_path / "clip.mkv"
    make_clip(source, frames=24, fps=Fraction(24), size=SIZE, gop=6)
    add_subtitles(source, [(0.2, 0.5, "Hello"), (0.6, 0.9, "World")], clip, chapters=[(0, 0.5, "A"), (0.5, 1, "B")])
    single, chunked = tmp_path / "single" / name, tmp_path / "chunked" / name
    avi = name.endswith(".avi")  # AVI holds no subtitles (and no presentation times: see VideoSink)

    def warnings() -> list[str]:
        return [line.split(" of ")[0] for line in capsys.readouterr().err.splitlines()]

    dropped = ["amt-vfi: warning: the output container cannot hold srt subtitles; leaving out subtitle track 2"]
    assert main([str(clip), "-o", str(single), "--codec", codec, "-q"]) == 0
    assert warnings() == (dropped if avi else [])
    argv = [str(clip), "-o", str(chunked), "--codec", codec, "--ray", "--workers", "2", "--chunk-frames", "7", "-q"]
    assert main(argv) == 0
    assert warnings() == (dropped if avi else [])
    (frames_a, times_a), (frames_b, times_b) = decode(single), decode(chunked)
    assert len(frames_b) == len(frames_a) == 47 and times_b == times_a
    summary_a, summary_b = stream_summary(single), stream_summary(chunked)
    for key in ("duration", "packets", "ends", "video_codec", "audio_codec"):
        assert summary_b[key] == summary_a[key], key
    assert subtitle_cues(chunked) == subtitle_cues(single) == ([] if avi else subtitle_cues(clip))  # MP4: mov_text
    kept, given = chapters_of(single), ([] if avi else chapters_of(clip))
    assert chapters_of(chunked) == kept and [c[2] for c in kept] == [c[2] for c in given]
    times = [(time, other) for x, y in zip(kept, given, strict=True) for time, other in zip(x[:2], y[:2], strict=True)]
    assert all(abs(time - other) < 0.03 for time, other in times)  # within the AAC priming, 23 ms
    if codec == "ffv1":  # lossless: the frames the chunks encoded are the frames the single process encoded
        assert all(np.array_equal(a, b) for a, b in zip(frames_a, frames_b, strict=True))


def test_a_track_left_out_is_announced_once_before_the_work(local_ray, tmp_path: Path, caplog) -> None:
    source, clip = tmp_path / "source.mp4", tmp_path / "clip.mp4"
    make_clip(source, frames=12, size=SIZE)
    add_ttml(source, clip)
    announced: list[int] = []  # warnings so far, at each finished chunk

    def count(event) -> None:
        announced.append(sum("FFmpeg cannot read it" in record.getMessage() for record in caplog.records))

    with caplog.at_level(logging.WARNING):
        interpolate_distributed(clip, tmp_path / "out.mp4", workers=2, chunk_frames=4, on_chunk=count)
        assert announced == [1, 1, 1]  # before the first chunk was done
        assert sum("FFmpeg cannot read it" in record.getMessage() for record in caplog.records) == 1  # not at the join


def test_a_one_clip_job_raises_its_error(tmp_path: Path) -> None:
    settings = JobSettings(timing=Timing(multiplier=3))
    with pytest.raises(AmtVfiError, match="does not exist"):
        interpolate_distributed(tmp_path / "missing.mp4", tmp_path / "o.mp4", settings)
    clip = tmp_path / "clip.mp4"
    make_clip(clip, frames=4, size=SIZE)
    (tmp_path / "taken.mp4").write_bytes(b"someone else's")
    with pytest.raises(AmtVfiError, match="already exists"):
        interpolate_distributed(clip, tmp_path / "taken.mp4", settings)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "taken.mp4"]  # no manifest, no work folder
    with pytest.raises(AmtVfiError, match=r"Codec ffv1 cannot be stored in \.mov files \(.*/out\.mov\)"):
        interpolate_distributed(clip, tmp_path / "out.mov", JobSettings(codec="ffv1"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "taken.mp4"]


def test_reachability_is_checked_on_the_address_given(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[str, int]] = []

    def refuse(address: tuple[str, int], timeout: float) -> None:
        asked.append(address)
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(socket, "create_connection", refuse)
    for address in ("10.0.0.5:6379", "ray://head:10001", "[::1]:6379"):
        with pytest.raises(AmtVfiError, match="Cannot reach Ray at .*: Connection refused; start it"):
            _check_reachable(address, "start it")
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.6:6379")
    with pytest.raises(AmtVfiError, match="Cannot reach Ray at 10.0.0.6:6379"):
        _check_reachable("auto", "start it")
    assert asked == [("10.0.0.5", 6379), ("head", 10001), ("::1", 6379), ("10.0.0.6", 6379)]
    monkeypatch.delenv("RAY_ADDRESS")
    _check_reachable("auto", "start it")  # Ray finds a local cluster itself
    assert len(asked) == 4


def test_unfinished_chunk_temps_are_discarded(tmp_path: Path) -> None:
    work = tmp_path / ".out.amt-vfi-work"
    (work / "clip" / ".chunk_00002.partial-1a2b3c4d").mkdir(parents=True)
    (work / "clip" / ".chunk_00002.partial-1a2b3c4d" / "frame_000000.png").write_bytes(b"half")
    (work / "clip" / "chunk_00000").mkdir()
    (work / "clip" / "chunk_00000" / "frame_000000.png").write_bytes(b"done")
    _discard_unfinished(work)
    assert [p.name for p in (work / "clip").iterdir()] == ["chunk_00000"]
    empty = tmp_path / ".empty.amt-vfi-work"
    (empty / "clip").mkdir(parents=True)
    _discard_unfinished(empty)
    assert not empty.exists()


@pytest.mark.parametrize("stop", ["ctrl-c", "ctrl-c twice", "ctrl-c while ray starts", "kill"])
def test_ctrl_c_stops_a_job_and_the_local_ray_it_started_quietly(tmp_path: Path, stop: str) -> None:
    """A real SIGINT to the CLI's process group (what a terminal's Ctrl-C does; pressed twice, the second
    lands while Ray shuts down), or a SIGTERM to the CLI (what `kill` does; Ray's own handler would exit on
    the spot): exit status 130, the finished chunks kept for a rerun, and no Ray chatter about retrying
    the tasks it was stopping."""
    source = write_folder(tmp_path / "in", [scene_frame(i, CUTS, *SIZE) for i in range(240)])
    out = tmp_path / "out"
    command = [sys.executable, "-m", "amt_vfi", str(source), "-o", str(out), "--ray", "--workers", "2"]
    job = subprocess.Popen(
        [*command, "--chunk-frames", str(CHUNK)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 180
    while not _finished_chunks(out, source) and stop != "ctrl-c while ray starts":
        assert job.poll() is None and time.monotonic() < deadline, job.communicate()[0][-2000:]
        time.sleep(0.1)
    if stop == "ctrl-c while ray starts":  # Ray takes seconds to start: it is taken once Ray is up
        time.sleep(3.0)
    if stop.startswith("ctrl-c"):
        os.killpg(job.pid, signal.SIGINT)
        if stop == "ctrl-c twice":
            time.sleep(0.3)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(job.pid, signal.SIGINT)
    else:
        os.kill(job.pid, signal.SIGTERM)
    output = job.communicate(timeout=60)[0]
    assert job.returncode == 130, output[-2000:]
    assert "interrupted; finished chunks are kept; rerun the same command to resume" in output
    assert "retr" not in output and "Traceback" not in output, output[-2000:]
    assert not out.exists() and len(_finished_chunks(out, source)) < 20
    assert (len(_finished_chunks(out, source)) > 0) == (stop != "ctrl-c while ray starts")
    assert _left_in_session(job.pid) == [], "Ray processes outlived the command"


def _left_in_session(session: int, wait: float = 5.0) -> list[str]:
    """The processes still in a session (Ray's agents stay in the command's session), after `wait` s."""
    deadline = time.monotonic() + wait
    while True:
        listing = subprocess.run(["ps", "-eo", "sid=,args="], capture_output=True, text=True, check=True).stdout
        left = [line.split(None, 1)[1] for line in listing.splitlines() if line.split(None, 1)[0] == str(session)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def _finished_chunks(output: Path, source: Path) -> list[str]:
    try:
        return list(_manifest(output)["clips"][str(source)]["chunks"])
    except (OSError, KeyError, ValueError):  # not written yet
        return []
