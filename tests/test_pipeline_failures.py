"""What the CLI's pipeline does when something goes wrong mid-run: threads stop, nothing is left behind."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from media_helpers import make_clip

from amt_vfi.cli import main
from amt_vfi.engine import Interpolator
from amt_vfi.errors import InputError
from amt_vfi.media import atomic
from amt_vfi.pipeline.background import BackgroundWriter, prefetch


def _threads(name: str) -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == name and thread.is_alive()]


def test_closing_prefetch_early_stops_its_thread_at_once() -> None:
    decoded = prefetch(range(5), depth=4)  # the producer ends with a full queue and _DONE still to put
    assert next(decoded) == 0
    time.sleep(0.3)
    start = time.monotonic()
    decoded.close()
    assert time.monotonic() - start < 1.0 and _threads("amt-vfi-prefetch") == []


def test_a_ctrl_c_while_the_decode_thread_starts_still_stops_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM right as a job starts: an interrupt inside Thread.start() left the decode thread running
    while the source was closed under it ('generator already executing', reported as a bug)."""
    real_start = threading.Thread.start

    def start_then_interrupted(thread: threading.Thread) -> None:
        real_start(thread)
        signal.raise_signal(signal.SIGINT)  # arrives before start() has returned

    def frames():
        for index in range(1000):
            time.sleep(0.01)
            yield index

    source = frames()
    monkeypatch.setattr(threading.Thread, "start", start_then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        next(prefetch(source))
    monkeypatch.undo()
    source.close()  # what closing the source does; the decode thread must not be inside it any more
    assert _threads("amt-vfi-prefetch") == []


def test_a_second_ctrl_c_while_finishing_still_waits_for_the_writer(monkeypatch: pytest.MonkeyPatch) -> None:
    written: list[int] = []

    def slow_write(item: int) -> None:
        time.sleep(0.05)
        written.append(item)

    writer = BackgroundWriter(slow_write)
    for item in range(4):
        writer.put(item)
    real_join = threading.Thread.join
    interrupted = []

    def join_interrupted_once(thread: threading.Thread, timeout: float | None = None) -> None:
        if not interrupted:
            interrupted.append(True)
            raise KeyboardInterrupt
        real_join(thread, timeout)

    monkeypatch.setattr(threading.Thread, "join", join_interrupted_once)
    with pytest.raises(KeyboardInterrupt):
        writer.finish()
    monkeypatch.undo()
    # The writer was not abandoned inside the sink: it had stopped before finish() gave up, dropping
    # what was still queued.
    assert _threads("amt-vfi-writer") == [] and len(written) < 4


def _clip(tmp_path: Path, frames: int = 12) -> Path:
    clip = tmp_path / "clip.mp4"
    make_clip(clip, frames=frames, size=(64, 48), audio_codec=None)
    return clip


def test_a_failure_with_slow_decoding_is_one_line_and_stops_the_decoder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from amt_vfi.media import video

    clip = _clip(tmp_path)
    real_iter = video.VideoSource._iter_from

    def slow_decoding(self, start_index: int):
        for frame in real_iter(self, start_index):
            time.sleep(0.05)
            yield frame

    calls = []
    real_launch = Interpolator._launch_pair

    def fails_on_third_pair(self, frame0, frame1, timesteps):
        calls.append(1)
        if len(calls) == 3:
            raise InputError("pair 3 cannot be interpolated")
        return real_launch(self, frame0, frame1, timesteps)

    monkeypatch.setattr(video.VideoSource, "_iter_from", slow_decoding)
    monkeypatch.setattr(Interpolator, "_launch_pair", fails_on_third_pair)
    assert main([str(clip), "-o", str(tmp_path / "out.mp4"), "-q"]) == 1
    err = capsys.readouterr().err
    assert err == "amt-vfi: error: pair 3 cannot be interpolated\n"
    assert _threads("amt-vfi-prefetch") == [] and _threads("amt-vfi-writer") == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        ("boom in the network", "amt-vfi: error: unexpected RuntimeError: boom in the network. This is a bug"),
        (
            "DefaultCPUAllocator: can't allocate memory: you tried to allocate 1966080000 bytes.",
            "amt-vfi: error: out of memory (DefaultCPUAllocator: can't allocate memory",  # not called a bug
        ),
    ],
)
def test_an_unexpected_error_is_one_line_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, failure: str, expected: str
) -> None:
    clip = _clip(tmp_path, frames=4)

    def broken(self, frame0, frame1, timesteps):
        raise RuntimeError(failure)

    monkeypatch.setattr(Interpolator, "_launch_pair", broken)
    assert main([str(clip), "-o", str(tmp_path / "out.mp4"), "-q"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(expected) and "Traceback" not in err
    assert ("AMT_VFI_DEBUG=1" in err) == ("bug" in err) and ("use --scale 0.5" in err) == ("out of memory" in err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]
    monkeypatch.setenv("AMT_VFI_DEBUG", "1")
    with pytest.raises(RuntimeError, match=failure[:20]):
        main([str(clip), "-o", str(tmp_path / "out.mp4"), "-q"])


def test_ctrl_c_during_the_swap_of_a_folder_output_is_held_until_it_is_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = tmp_path / "frames", tmp_path / ".frames.partial-test"
    for folder, content in ((old, b"old"), (new, b"new")):
        folder.mkdir()
        (folder / "frame_000000.png").write_bytes(content)
    real_rename = os.rename

    def rename_then_interrupt(source, target) -> None:
        real_rename(source, target)
        if Path(source) == old:  # the old output was just moved aside
            os.kill(os.getpid(), signal.SIGINT)

    handler = signal.getsignal(signal.SIGINT)
    monkeypatch.setattr(atomic.os, "rename", rename_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        atomic.commit(new, old, overwrite=True)
    assert (old / "frame_000000.png").read_bytes() == b"new"  # the swap finished before the interrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]
    assert signal.getsignal(signal.SIGINT) is handler
