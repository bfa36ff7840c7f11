"""amt_vfi.media: reading and writing videos and image folders with real files made by PyAV and Pillow."""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from media_helpers import (
    add_chapters,
    add_subtitles,
    add_ttml,
    chapters_of,
    make_clip,
    pattern,
    psnr,
    stored_format,
    stream_summary,
    subtitle_codecs,
    subtitle_cues,
    write_dpx,
)
from PIL import Image, ImageOps, PngImagePlugin

from amt_vfi.media import (
    FrameSink,
    InconsistentFramesError,
    InputNotFoundError,
    MediaError,
    NotEnoughFramesError,
    OutputExistsError,
    PictureFormat,
    UnreadableInputError,
    UnsupportedOutputError,
    open_sink,
    open_source,
)
from amt_vfi.media.images import ImageFolderSource, image_size, read_image


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[np.ndarray]]:
    """24 frames, 320x240, 24 fps, H.264 with GOP 8 and an AAC sine track."""
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    return path, make_clip(path)


def write_all(sink: FrameSink, frames: list[np.ndarray]) -> None:
    with sink:
        for frame in frames:
            sink.write(frame)


def leftovers(folder: Path) -> list[str]:
    return sorted(entry.name for entry in folder.iterdir())


# --- video reading -------------------------------------------------------------------------------------


def test_video_info_and_frames(clip: tuple[Path, list[np.ndarray]]) -> None:
    path, written = clip
    with open_source(path) as source:
        info = source.info
        frames = list(source.frames())
    assert (info.width, info.height, info.fps, info.frame_count) == (320, 240, Fraction(24), 24)
    assert info.has_audio and info.is_video and info.bit_depth == 8
    assert not info.variable_frame_rate and info.rotation == 0
    assert len(frames) == 24 and frames[0].dtype == np.uint8 and frames[0].shape == (240, 320, 3)
    assert min(psnr(a, b) for a, b in zip(frames, written, strict=True)) > 30


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".avi"])  # AVI: no real pts, counted instead
def test_frames_from_matches_full_decode(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"gop{suffix}"
    make_clip(path, frames=20, gop=8, audio_codec=None)
    with open_source(path) as source:
        everything = list(source.frames())
        for start in (1, 7, 8, 9, 15, 19, 20, 25):
            chunk = list(source.frames_from(start))
            assert len(chunk) == len(everything[start:]), start
            assert all(np.array_equal(a, b) for a, b in zip(chunk, everything[start:], strict=True)), start


def test_variable_frame_rate_and_rotation_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "vfr.mkv"
    stamps = [0, 1, 2, 3, 5, 6, 9, 10, 11, 12, 13, 14]
    make_clip(path, frames=len(stamps), timestamps=stamps, rotation=90, audio_codec=None)
    with open_source(path) as source:
        assert source.info.variable_frame_rate
        assert source.info.rotation == 90
        assert source.info.frame_count == len(stamps)


def test_closing_the_source_stops_running_passes(clip: tuple[Path, list[np.ndarray]]) -> None:
    with open_source(clip[0]) as source:
        frames = source.frames()
        next(frames)
    assert next(frames, None) is None


def test_fps_override(clip: tuple[Path, list[np.ndarray]]) -> None:
    with open_source(clip[0], fps=Fraction(30)) as source:
        assert source.info.fps == 30


# --- video writing -------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_sink_copies_audio_and_metadata(tmp_path: Path, suffix: str) -> None:
    source_path = tmp_path / "src.mp4"
    frames = make_clip(source_path, rotation=90, bt709=True)
    out = tmp_path / f"out{suffix}"
    sink = open_sink(out, fps=Fraction(24), width=320, height=240, tracks_from=source_path, metadata_from=source_path)
    write_all(sink, frames)
    before, after = stream_summary(source_path), stream_summary(out)
    assert after["audio_codec"] == before["audio_codec"] == "aac"
    assert after["packets"] == before["packets"]  # every audio packet copied, nothing re-encoded
    assert abs(after["ends"]["audio"] - before["ends"]["audio"]) < 0.15
    assert abs(after["duration"] - 1.0) < 0.15
    order = after["order"]
    assert order.index("audio") < len(order) - order[::-1].index("video")  # interleaved, not appended
    with open_source(out) as copy:
        assert copy.info.rotation == 90 and copy.info.has_audio
        assert min(psnr(a, b) for a, b in zip(copy.frames(), frames, strict=True)) > 30
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.color_primaries == 1


@pytest.mark.parametrize(("suffix", "title_key"), [(".mkv", "title"), (".mp4", "name"), (".webm", "title")])
def test_audio_tracks_keep_their_languages_and_names(tmp_path: Path, suffix: str, title_key: str) -> None:
    """A film's dubbed and commentary tracks stay told apart (WebM re-encodes them to Opus)."""
    source = tmp_path / "film.mkv"
    tracks = ({"language": "eng", "title": "English"}, {"language": "fra", "title": "Français (commentaire)"})
    frames = make_clip(source, frames=12, size=(64, 48), audio_tags=tracks)
    out = tmp_path / f"out{suffix}"
    write_all(open_sink(out, fps=Fraction(24), width=64, height=48, tracks_from=source), frames)
    with av.open(str(out)) as container:
        labels = [(s.metadata.get("language"), s.metadata.get(title_key)) for s in container.streams.audio]
    assert labels == [("eng", "English"), ("fra", "Français (commentaire)")]


@pytest.mark.parametrize(
    ("suffix", "codec"), [(".mkv", "srt"), (".mp4", "mov_text"), (".mov", "mov_text"), (".webm", "webvtt")]
)
def test_subtitles_are_carried_in_the_containers_text_codec(tmp_path: Path, suffix: str, codec: str) -> None:
    source, film = tmp_path / "src.mp4", tmp_path / "film.mkv"
    frames = make_clip(source, frames=24, size=(64, 48))
    add_subtitles(source, [(0.1, 0.6, "Hello"), (0.7, 0.9, "World")], film, language="fra")
    out = tmp_path / f"out{suffix}"
    write_all(open_sink(out, fps=Fraction(48), width=64, height=48, tracks_from=film), frames)
    assert subtitle_codecs(out) == [codec]  # SubRip copied into MKV, converted for the others
    assert subtitle_cues(out) == [("fra", 0.1, b"Hello"), ("fra", 0.7, b"World")]
    back = tmp_path / f"back{suffix}.mkv"  # and converted back from theirs
    write_all(open_sink(back, fps=Fraction(48), width=64, height=48, tracks_from=out), frames)
    assert subtitle_cues(back) == subtitle_cues(out)


def _converted_cues(tmp_path: Path, cues: list, **made) -> list:
    """`cues` of a SubRip track (see add_subtitles) as they come out of an MP4 output."""
    source, film, out = tmp_path / "src.mp4", tmp_path / "film.mkv", tmp_path / "out.mp4"
    frames = make_clip(source, frames=72, size=(64, 48), audio_codec=None)
    add_subtitles(source, cues, film, **made)
    write_all(open_sink(out, fps=Fraction(24), width=64, height=48, tracks_from=film), frames)
    return [(start, text) for _, start, text in subtitle_cues(out)]


def test_overlapping_cues_are_shown_together_not_pushed_back(tmp_path: Path) -> None:
    """MP4 shows one cue at a time and would show 'Overlap' after 'Long one', delaying every later cue."""
    cues = [(0.2, 1.5, "Long one"), (0.8, 1.0, "Overlap"), (2.0, 2.4, "Next")]
    converted = _converted_cues(tmp_path, cues)
    assert converted == [(0.2, b"Long one"), (0.8, b"Long one\nOverlap"), (1.0, b"Long one"), (2.0, b"Next")]


def test_cues_without_durations_end_at_the_next_one(tmp_path: Path) -> None:
    converted = _converted_cues(tmp_path, [(0.2, 0.5, "one"), (0.6, 0.9, "two")], timed=False)
    assert converted == [(0.2, b"one"), (0.6, b"two")]
    with av.open(str(tmp_path / "out.mp4")) as container:
        shown = [p.duration * p.time_base for p in container.demux(container.streams.subtitles[0]) if p.size > 2]
    assert shown == [Fraction(2, 5), Fraction(5)]  # up to the next cue; the last one 5 s


def test_cues_that_are_not_utf8_are_left_out_with_a_warning(tmp_path: Path, caplog) -> None:
    with caplog.at_level("WARNING"):
        converted = _converted_cues(tmp_path, [(0.2, 0.5, "Café"), (0.6, 0.9, "ok")], encoding="latin-1")
    assert converted == [(0.6, b"ok")]  # the output is still written
    assert "leaving out 1 cues of subtitle track 1 of" in caplog.text


def test_avi_frames_are_timed_in_display_order(tmp_path: Path) -> None:
    frames = [pattern(i, 64, 48) for i in range(12)]
    out = tmp_path / "out.avi"
    write_all(open_sink(out, fps=Fraction(24), width=64, height=48), frames)
    with av.open(str(out)) as container:
        times = [frame.time for frame in container.decode(video=0)]
    assert len(times) == 12 and times == sorted(times)


def test_subtitles_a_container_cannot_hold_are_left_out_with_a_warning(tmp_path: Path, caplog) -> None:
    source, film = tmp_path / "src.mp4", tmp_path / "film.mkv"
    frames = make_clip(source, frames=12, size=(64, 48))
    add_subtitles(source, [(0.1, 0.3, "Hello")], film)
    out = tmp_path / "out.avi"
    with caplog.at_level("WARNING"):
        write_all(open_sink(out, fps=Fraction(48), width=64, height=48, tracks_from=film), frames)
    assert subtitle_codecs(out) == [] and stream_summary(out)["audio_codec"] == "aac"
    assert "cannot hold srt subtitles; leaving out subtitle track 2" in caplog.text and "an .mkv output" in caplog.text


@pytest.mark.parametrize("suffix", [".mkv", ".mp4", ".mov"])
def test_chapters_are_carried(tmp_path: Path, suffix: str) -> None:
    source, film = tmp_path / "src.mp4", tmp_path / "film.mkv"
    frames = make_clip(source, frames=48, size=(64, 48), audio_codec=None)
    add_chapters(source, [(0.0, 1.0, "Intro"), (1.0, 2.0, "Main")], film)
    out = tmp_path / f"out{suffix}"
    write_all(open_sink(out, fps=Fraction(24), width=64, height=48, tracks_from=film), frames)
    assert chapters_of(out) == chapters_of(film) and [title for *_, title in chapters_of(out)] == ["Intro", "Main"]


def test_attached_fonts_are_carried_into_matroska_and_announced_elsewhere(tmp_path: Path, caplog) -> None:
    source, film = tmp_path / "src.mp4", tmp_path / "film.mkv"
    frames = make_clip(source, frames=6, size=(64, 48))
    font = b"\x00\x01\x00\x00 not really a font" * 50
    with av.open(str(source)) as src, av.open(str(film), "w") as dst:
        streams = {s.index: dst.add_stream_from_template(s) for s in src.streams}
        dst.add_attachment("Subtitle Font.ttf", "font/ttf", font)
        for packet in src.demux():
            if packet.size:
                packet.stream = streams[packet.stream.index]
                dst.mux(packet)
    out = tmp_path / "out.mkv"
    write_all(open_sink(out, fps=Fraction(24), width=64, height=48, tracks_from=film), frames)
    with av.open(str(out)) as container:
        (attached,) = [s for s in container.streams if s.type == "attachment"]
        assert (attached.name, attached.mimetype, bytes(attached.data)) == ("Subtitle Font.ttf", "font/ttf", font)
    with caplog.at_level("WARNING"):
        write_all(open_sink(tmp_path / "out.mp4", fps=Fraction(24), width=64, height=48, tracks_from=film), frames)
    assert "leaving out the 1 attached files of" in caplog.text and "an .mkv output keeps them" in caplog.text


@pytest.mark.parametrize("suffix", [".mkv", ".webm", ".mp4"])
def test_chapters_stay_with_the_picture_when_the_sound_starts_first(tmp_path: Path, suffix: str) -> None:
    source, film = tmp_path / "src.mp4", tmp_path / "film.mkv"
    frames = make_clip(source, frames=36, size=(64, 48), timestamps=range(12, 48))  # video from 0.5 s, sound from 0
    add_chapters(source, [(0.0, 0.3, "Cold open"), (0.3, 1.0, "Intro"), (1.0, 2.0, "Main")], film)
    out = tmp_path / f"out{suffix}"
    write_all(open_sink(out, fps=Fraction(24), width=64, height=48, tracks_from=film), frames)
    assert [(round(start, 1), title) for start, _, title in chapters_of(out)[:2]] == [(0.0, "Intro"), (0.5, "Main")]
    start, _, _ = chapters_of(film)[-1]
    assert 0.45 < start < 0.55  # after the first frame (the AAC priming moves it a little)
    assert chapters_of(out)[-1] == chapters_of(film)[-1]  # Matroska's muxer moved the packets, not the chapters


def test_subtitles_before_the_first_frame_are_dropped_or_cut_to_it(tmp_path: Path) -> None:
    source, film = tmp_path / "src.mp4", tmp_path / "film.mkv"
    frames = make_clip(source, frames=24, size=(64, 48), timestamps=range(12, 36), audio_codec=None)  # from 0.5 s
    add_subtitles(source, [(0.1, 0.3, "before"), (0.4, 0.8, "across"), (1.0, 1.2, "after")], film)
    out = tmp_path / "out.mkv"
    write_all(open_sink(out, fps=Fraction(24), width=64, height=48, tracks_from=film), frames)
    assert [(start, text) for _, start, text in subtitle_cues(out)] == [(0.0, b"across"), (0.5, b"after")]
    with av.open(str(out)) as container:
        across = next(p for p in container.demux(container.streams.subtitles[0]) if p.size)
        assert across.duration * across.time_base == Fraction(3, 10)  # it still ends at 0.8 s


def test_a_track_ffmpeg_cannot_read_is_left_out_with_a_warning(tmp_path: Path, caplog) -> None:
    source, film = tmp_path / "src.mp4", tmp_path / "film.mp4"
    frames = make_clip(source, frames=12, size=(64, 48))
    add_ttml(source, film)
    out = tmp_path / "out.mp4"
    with caplog.at_level("WARNING"):
        write_all(open_sink(out, fps=Fraction(24), width=64, height=48, tracks_from=film), frames)
    assert "leaving out subtitle track 2 of" in caplog.text and "FFmpeg cannot read it" in caplog.text
    assert subtitle_cues(out) == [] and stream_summary(out)["audio_codec"] == "aac"


def test_sink_takes_the_metadata_of_an_open_source(tmp_path: Path) -> None:
    source_path = tmp_path / "src.mp4"
    frames = make_clip(source_path, rotation=90, bt709=True, audio_codec=None)
    out = tmp_path / "out.mp4"
    with open_source(source_path) as source:
        write_all(open_sink(out, fps=Fraction(24), width=320, height=240, metadata_from=source), frames)
    with open_source(out) as copy:
        assert copy.info.rotation == 90
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.color_primaries == 1


def test_audio_reencoded_when_container_cannot_hold_it(clip: tuple[Path, list[np.ndarray]], tmp_path: Path) -> None:
    out = tmp_path / "out.webm"
    write_all(
        open_sink(out, fps=Fraction(24), width=64, height=48, tracks_from=clip[0]),
        [pattern(i, 64, 48) for i in range(6)],
    )
    summary = stream_summary(out)
    assert summary["video_codec"] == "vp9"
    assert summary["audio_codec"] in {"opus", "vorbis"}
    assert abs(summary["ends"]["audio"] - 1.0) < 0.15


@pytest.mark.parametrize("codec", ["opus", "flac"])
def test_audio_the_mov_muxer_refuses_is_reencoded_not_failed_at_the_end(tmp_path: Path, codec: str) -> None:
    frames = [pattern(i, 64, 48) for i in range(12)]
    source = tmp_path / ("source.webm" if codec == "opus" else "source.mkv")
    if codec == "opus":  # a WebM output gets Opus audio
        make_clip(tmp_path / "aac.mp4", frames=12, size=(64, 48))
        write_all(open_sink(source, fps=Fraction(24), width=64, height=48, tracks_from=tmp_path / "aac.mp4"), frames)
    else:
        make_clip(source, frames=12, size=(64, 48), audio_codec=codec)
    assert stream_summary(source)["audio_codec"] == codec
    out = tmp_path / "out.mov"  # MOV's muxer lists Opus and FLAC but refuses them when the header is written
    write_all(open_sink(out, fps=Fraction(24), width=64, height=48, tracks_from=source), frames)
    summary = stream_summary(out)
    assert summary["audio_codec"] == "aac" and abs(summary["ends"]["audio"] - 0.5) < 0.1


@pytest.mark.parametrize("codec", ["aac", "mp3"])
def test_avi_with_primed_audio_holds_every_frame_it_lists(tmp_path: Path, codec: str) -> None:
    source = tmp_path / "source.mkv"  # AAC and MP3 packets start before 0 (the encoder's priming)
    make_clip(source, frames=12, size=(64, 48), audio_codec=codec)
    out = tmp_path / "out.avi"
    write_all(
        open_sink(out, fps=Fraction(24), width=64, height=48, tracks_from=source),
        [pattern(i, 64, 48) for i in range(12)],
    )
    with av.open(str(out)) as container:
        assert container.streams.video[0].frames == 12  # the muxer padded the picture with 2 empty frames
        audio = [p for p in container.demux(container.streams.audio[0]) if p.size]
        assert audio[0].pts == 0
    with open_source(out) as copy:  # refused before as "incomplete or damaged"
        assert copy.info.frame_count == 12
    assert abs(stream_summary(out)["ends"]["audio"] - 0.5) < 0.1


def test_pcm_without_speaker_names_is_copied_into_mp4(tmp_path: Path) -> None:
    source = tmp_path / "camera.mkv"  # Matroska stores a channel count, not the speakers
    make_clip(source, frames=12, size=(64, 48), audio_codec="pcm_s16le")
    with av.open(str(source)) as container:
        assert container.streams.audio[0].layout.name == "2 channels"
    out = tmp_path / "out.mp4"
    write_all(
        open_sink(out, fps=Fraction(24), width=64, height=48, tracks_from=source),
        [pattern(i, 64, 48) for i in range(12)],
    )
    summary = stream_summary(out)
    assert summary["audio_codec"] == "pcm_s16le" and abs(summary["ends"]["audio"] - 0.5) < 0.1
    with av.open(str(out)) as container:
        assert container.streams.audio[0].layout.name == "stereo"


def test_rates_above_1000_fps_are_refused_where_times_are_milliseconds(tmp_path: Path) -> None:
    for suffix in (".mkv", ".webm"):
        with pytest.raises(UnsupportedOutputError, match=rf"{suffix} files store times in milliseconds.* have 1200"):
            open_sink(tmp_path / f"fast{suffix}", fps=Fraction(1200), width=64, height=48)
    assert not list(tmp_path.iterdir())
    frames = [pattern(i, 64, 48) for i in range(4)]
    write_all(open_sink(tmp_path / "fast.mp4", fps=Fraction(1200), width=64, height=48), frames)
    with av.open(str(tmp_path / "fast.mp4")) as container:
        assert len({frame.pts for frame in container.decode(video=0)}) == 4  # distinct times there


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_ntsc_rate_round_trip(tmp_path: Path, suffix: str) -> None:
    rate = Fraction(30000, 1001)
    out = tmp_path / f"ntsc{suffix}"
    frames = [pattern(i, 160, 120) for i in range(12)]
    write_all(open_sink(out, fps=rate, width=160, height=120), frames)
    with open_source(out) as source:
        assert source.info.fps == rate and not source.info.variable_frame_rate
        assert len(list(source.frames())) == 12
    assert stream_summary(out)["duration"] == pytest.approx(12 / rate, abs=0.002)


def test_odd_size_is_padded_by_edge_replication(tmp_path: Path) -> None:
    out = tmp_path / "odd.mp4"
    frames = [pattern(i, 161, 121) for i in range(4)]
    sink = open_sink(out, fps=Fraction(24), width=161, height=121)
    write_all(sink, frames)
    assert (sink.encoded_width, sink.encoded_height) == (162, 122)
    with open_source(out) as source:
        decoded = list(source.frames())
    assert decoded[0].shape == (122, 162, 3)
    assert min(psnr(a[:121, :161], b) for a, b in zip(decoded, frames, strict=True)) > 30
    assert psnr(decoded[0][:121, 161], frames[0][:, 160]) > 30


def test_lossless_16_bit_video(tmp_path: Path) -> None:
    out = tmp_path / "deep.mkv"
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 65536, (48, 64, 3), dtype=np.uint16) for _ in range(3)]
    write_all(open_sink(out, fps=Fraction(24), width=64, height=48, bit_depth=16, codec="ffv1"), frames)
    with open_source(out) as source:
        assert source.info.bit_depth == 16
        assert all(np.array_equal(a, b) for a, b in zip(source.frames(), frames, strict=True))


# --- image folders -------------------------------------------------------------------------------------


def test_transparent_images_are_announced(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for name, mode in (("opaque", "RGB"), ("transparent", "RGBA")):
        folder = tmp_path / name
        folder.mkdir()
        for index in range(2):
            Image.fromarray(pattern(index, 40, 30)).convert(mode).save(folder / f"f{index}.png")
        caplog.clear()
        with open_source(folder) as source:
            assert source.info.frame_count == 2
        warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        if mode == "RGBA":
            assert len(warned) == 1 and warned[0].startswith(f"the images of {folder} have an alpha channel")
        else:
            assert warned == []


def test_image_folder_natural_order_and_modes(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    base = pattern(0, 40, 30)
    images = {
        "f1.png": Image.fromarray(base),
        "f2.png": Image.fromarray(base).convert("RGBA"),
        "f10.png": Image.fromarray(base).convert("L"),
        "f11.png": Image.fromarray(base).convert("P"),
        "f12.png": Image.fromarray(base).convert("LA"),
        "f20.bmp": Image.fromarray(base),
        "f100.jpg": Image.fromarray(base),
    }
    for name, image in images.items():
        image.save(folder / name)
    Image.fromarray(base).save(folder / ".hidden.png")
    (folder / "notes.txt").write_text("not an image")
    with open_source(folder) as source:
        assert source.info.frame_count == 7 and source.info.fps == 24 and not source.info.is_video
        assert [path.name for path in source.files] == list(images)
        frames = list(source.frames())
        assert len(list(source.frames_from(5))) == 2
    assert all(frame.shape == (30, 40, 3) and frame.dtype == np.uint8 for frame in frames)
    assert np.array_equal(frames[0], base) and np.array_equal(frames[1], base)
    assert np.array_equal(frames[2][..., 0], frames[2][..., 2])  # grey spread over three channels
    assert np.array_equal(frames[4], frames[2])  # LA: alpha dropped, grey kept
    assert psnr(frames[6], base) > 30


@pytest.mark.parametrize("suffix", [".png", ".webp"])  # decoded by FFmpeg / by Pillow
def test_exif_orientation_turns_frames_upright(tmp_path: Path, suffix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "phone"
    folder.mkdir()
    stored = pattern(0, 40, 30)  # 40 wide, 30 high as stored in the file
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        Image.fromarray(stored).save(folder / f"f{orientation}{suffix}", exif=exif, lossless=True)
    for orientation in range(1, 9):
        path = folder / f"f{orientation}{suffix}"
        with Image.open(path) as image:
            upright = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
        frame = read_image(path)
        assert np.array_equal(frame, upright) and frame.flags.writeable, orientation
        assert image_size(path) == (frame.shape[1], frame.shape[0]), orientation
    plain = tmp_path / "plain.png"  # no EXIF at all, the usual PNG
    Image.fromarray(stored).save(plain)
    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", lambda self: pytest.fail("decoded twice"))
    assert np.array_equal(read_image(plain), stored)  # FFmpeg decodes it; Pillow only reads the header
    monkeypatch.undo()
    sideways = tmp_path / "sideways"
    sideways.mkdir()
    for name in ("f1.png", "f6.png"):
        (sideways / name).write_bytes((folder / f"f6{suffix}").read_bytes())
    with open_source(sideways) as source:  # sizes from the header agree with the decoded frames
        assert (source.info.width, source.info.height) == (30, 40)
        assert [frame.shape for frame in source.frames()] == [(40, 30, 3)] * 2


def test_16_bit_png_round_trip_is_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 65536, (31, 17, 3), dtype=np.uint16) for _ in range(3)]
    out = tmp_path / "deep"
    write_all(open_sink(out, fps=Fraction(24), width=17, height=31, bit_depth=16), frames)
    assert leftovers(out) == ["frame_000000.png", "frame_000001.png", "frame_000002.png"]
    with open_source(out) as source:
        assert source.info.bit_depth == 16 and (source.info.width, source.info.height) == (17, 31)
        assert all(np.array_equal(a, b) for a, b in zip(source.frames(), frames, strict=True))


@pytest.mark.parametrize(
    ("stored", "bits", "written"),
    [
        ("gbrp10le", 10, "gbrp10le"),  # film scans: 10-bit, little-endian ("XPDS")
        ("gbrp10be", 10, "gbrp10le"),  # big-endian ("SDPX") headers are read too
        ("rgb48be", 16, "rgb48le"),
        ("rgb24", 8, "rgb24"),
    ],
)
def test_dpx_sequences_are_read_at_full_depth_and_written_as_dpx(
    tmp_path: Path, stored: str, bits: int, written: str
) -> None:
    folder = tmp_path / "plates"
    folder.mkdir()
    rng = np.random.default_rng(3)
    top = (1 << bits) - 1
    codes = [rng.integers(0, top + 1, (9, 17, 3)) for _ in range(2)]  # 17 wide, 9 high
    for index, values in enumerate(codes):
        scaled = values * 65535 // top if bits > 8 else values
        write_dpx(folder / f"shot.{1001 + index}.dpx", scaled.astype(np.uint16 if bits > 8 else np.uint8), stored)
    assert (folder / "shot.1001.dpx").read_bytes()[:4] == (b"SDPX" if stored.endswith("be") else b"XPDS")
    assert image_size(folder / "shot.1001.dpx") == (17, 9)
    with open_source(folder) as source:
        assert (source.info.width, source.info.height, source.info.bit_depth) == (17, 9, 16 if bits > 8 else 8)
        assert source.info.picture_format == PictureFormat("dpx", written, ".dpx")
        frames = list(source.frames())
    for frame, values in zip(frames, codes, strict=True):
        assert np.array_equal(frame >> (16 - bits) if bits > 8 else frame, values)  # every code value kept
    out = tmp_path / "out"
    sink = open_sink(
        out,
        fps=Fraction(24),
        width=17,
        height=9,
        bit_depth=source.info.bit_depth,
        picture_format=source.info.picture_format,
    )
    write_all(sink, frames)
    assert sorted(p.name for p in out.iterdir()) == ["frame_000000.dpx", "frame_000001.dpx"]
    assert stored_format(out / "frame_000000.dpx") == written
    assert all(np.array_equal(read_image(out / f"frame_00000{i}.dpx"), frames[i]) for i in range(2))


def test_an_openexr_folder_is_refused_with_what_to_do(tmp_path: Path, caplog) -> None:
    folder = tmp_path / "renders"
    folder.mkdir()
    for index in range(2):
        (folder / f"beauty.{index:04d}.exr").write_bytes(b"v/1\x01")
    with pytest.raises(UnreadableInputError, match="OpenEXR images.*convert them to 16-bit TIFF or PNG, or to DPX"):
        open_source(folder)
    Image.fromarray(pattern(0, 16, 8)).save(folder / "thumb.png")  # one stray picture beside the renders
    with pytest.raises(UnreadableInputError, match="OpenEXR images"):
        open_source(folder)
    Image.fromarray(pattern(1, 16, 8)).save(folder / "thumb2.png")
    with caplog.at_level("WARNING"), open_source(folder) as source:
        assert source.info.frame_count == 2
    assert "leaving out the OpenEXR images of" in caplog.text and "(beauty.0000.exr, beauty.0001.exr)" in caplog.text


def test_picture_formats_are_ones_an_overwrite_recognises() -> None:
    with pytest.raises(ValueError, match=r"picture suffix must be one of \.png, \.dpx, not '\.tif'"):
        PictureFormat("tiff", None, ".tif")


def test_a_dpx_file_cut_short_is_a_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "plates"
    folder.mkdir()
    for index in range(2):
        write_dpx(folder / f"{index}.dpx", pattern(index, 16, 8), "rgb24")
    (folder / "1.dpx").write_bytes((folder / "1.dpx").read_bytes()[:500])
    with pytest.raises(UnreadableInputError, match=r"Cannot read image .*1\.dpx"):
        ImageFolderSource(folder)


def test_16_bit_grey_png_is_read_as_uint16(tmp_path: Path) -> None:
    folder = tmp_path / "grey"
    folder.mkdir()
    grey = np.arange(2 * 3 * 4, dtype=np.uint16).reshape(2, 12) * 5000
    for index in range(2):
        Image.fromarray(grey).save(folder / f"{index}.png")
    with open_source(folder) as source:
        frame = next(source.frames())
    assert frame.dtype == np.uint16 and np.array_equal(frame[..., 1], grey)


# --- errors --------------------------------------------------------------------------------------------


def test_missing_input(tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError, match="nothing.mp4"):
        open_source(tmp_path / "nothing.mp4")


def test_unreadable_input(tmp_path: Path) -> None:
    fake = tmp_path / "fake.mp4"
    fake.write_text("this is not a video\n" * 20)
    with pytest.raises(UnreadableInputError, match="fake.mp4"):
        open_source(fake)


def _cut_short(clip: Path, path: Path, keep: float) -> Path:
    """`clip` with its index moved to the front (as streaming MP4s have it), then only its first `keep`
    of the bytes: what an interrupted download leaves."""
    whole = path.with_name("whole.mp4")
    with av.open(str(clip)) as source, av.open(str(whole), "w", options={"movflags": "faststart"}) as target:
        video = target.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = video
                target.mux(packet)
    data = whole.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


@pytest.mark.parametrize("frames", [30, 150])  # found while probing / while decoding
def test_a_video_cut_short_is_reported_as_incomplete(tmp_path: Path, frames: int) -> None:
    clip = tmp_path / "clip.mp4"
    make_clip(clip, frames=frames, size=(96, 64), audio_codec=None)
    short = _cut_short(clip, tmp_path / "short.mp4", 0.6)
    expected = f"short.mp4 is incomplete or damaged: its header lists {frames} frames"
    with pytest.raises(UnreadableInputError, match=expected), open_source(short) as source:
        for _ in source.frames():
            pass


@pytest.mark.parametrize("frames", [60, 240])  # found while probing / while counting and decoding
def test_a_matroska_file_cut_short_is_reported_with_the_duration_its_header_gives(tmp_path: Path, frames: int) -> None:
    """Matroska keeps no frame count: its demuxer just stops where the bytes end (or turn to garbage)."""
    clip = tmp_path / "clip.mkv"
    make_clip(clip, frames=frames, size=(96, 64))
    short = tmp_path / "short.mkv"
    short.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    expected = (
        rf"short.mkv is incomplete or damaged: its header gives the video {frames / 24:.2f} s but the frames end "
        r"at \d\.\d\d s"
    )
    with pytest.raises(UnreadableInputError, match=expected), open_source(short) as source:
        source.count_frames()
    with pytest.raises(UnreadableInputError, match=expected), open_source(short) as source:
        for _ in source.frames():
            pass


def test_a_matroska_file_with_gaps_is_complete(tmp_path: Path) -> None:
    """Frames dropped by a recorder leave gaps before the end: the duration tag is still reached."""
    clip = tmp_path / "gaps.mkv"
    stamps = [i for i in range(120) if i % 10 != 3]  # 12 of 120 frames missing, the last one there
    make_clip(clip, frames=len(stamps), size=(96, 64), timestamps=stamps, audio_codec=None)
    with open_source(clip) as source:
        assert source.count_frames() == len(stamps)
        assert sum(1 for _ in source.frames()) == len(stamps)


def test_stale_statistics_tags_of_a_remuxed_matroska_file_are_not_believed(tmp_path: Path) -> None:
    """mkvmerge's per-language statistics tags survive remuxing unchanged; FFmpeg's own DURATION is fresh."""
    clip = tmp_path / "remuxed.mkv"
    stale = {"DURATION-eng": "00:10:00.000000000", "NUMBER_OF_FRAMES-eng": "14400"}
    make_clip(clip, frames=30, size=(96, 64), audio_codec=None, track_tags=stale)
    with open_source(clip) as source:
        assert source.count_frames() == 30
        assert sum(1 for _ in source.frames()) == 30


def test_packets_that_do_not_decode_are_reported_not_left_to_the_plan(tmp_path: Path) -> None:
    clip, broken = tmp_path / "clip.mkv", tmp_path / "broken.mkv"
    make_clip(clip, frames=12, size=(96, 64), audio_codec=None)
    with av.open(str(clip)) as source, av.open(str(broken), "w") as target:
        stream = target.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.size and packet.dts is not None:  # Matroska gives reordered frames no dts: lose them
                packet.stream = stream
                target.mux(packet)
    expected = r"broken.mkv is incomplete or damaged: it holds (\d+) frames but only (\d+) can be decoded"
    with pytest.raises(UnreadableInputError, match=expected) as caught, open_source(broken) as source:
        planned = source.count_frames()
        for _ in source.frames():
            pass
    held, decoded = (int(n) for n in re.search(expected, str(caught.value)).groups())
    assert held == planned and decoded < held


def test_a_whole_matroska_file_starting_late_is_complete(tmp_path: Path) -> None:
    """The duration tag is the end time: a clip whose first frame is at 2 s is not taken for a cut one."""
    clip = tmp_path / "late.mkv"
    make_clip(clip, frames=80, size=(96, 64), timestamps=range(48, 128))
    with open_source(clip) as source:
        assert source.count_frames() == 80
        assert sum(1 for _ in source.frames()) == 80


@pytest.mark.parametrize("count", [0, 1])
def test_too_few_images(tmp_path: Path, count: int) -> None:
    for index in range(count):
        Image.new("RGB", (8, 8)).save(tmp_path / f"{index}.png")
    with pytest.raises(NotEnoughFramesError, match="at least 2 frames") as caught:
        open_source(tmp_path)
    assert str(tmp_path) in str(caught.value)


def test_a_folder_of_videos_is_not_taken_for_an_empty_image_folder(tmp_path: Path) -> None:
    (tmp_path / "a.mp4").write_bytes(b"")
    with pytest.raises(NotEnoughFramesError, match=r"has no images but holds videos \(a.mp4, ...\)"):
        ImageFolderSource(tmp_path)


def test_single_image_file(tmp_path: Path) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "one.png")
    with pytest.raises(NotEnoughFramesError, match="one.png"):
        open_source(tmp_path / "one.png")


def test_inconsistent_sizes(tmp_path: Path) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "a1.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "a2.png")
    Image.new("RGB", (10, 8)).save(tmp_path / "a3.png")
    with pytest.raises(InconsistentFramesError, match=r"a3\.png is 10x8 but .*a1\.png is 8x8"):
        open_source(tmp_path)


def test_unsupported_outputs_leave_nothing(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedOutputError, match="out.gif"):
        open_sink(tmp_path / "out.gif", fps=Fraction(24), width=8, height=8)
    with pytest.raises(UnsupportedOutputError, match="ffv1"):
        open_sink(tmp_path / "out.webm", fps=Fraction(24), width=8, height=8, codec="ffv1")
    assert leftovers(tmp_path) == []


def test_wrong_frame_shape(tmp_path: Path) -> None:
    with (
        pytest.raises(ValueError, match="shape"),
        open_sink(tmp_path / "o", fps=24, width=8, height=8) as sink,
    ):
        sink.write(np.zeros((8, 9, 3), np.uint8))
    assert leftovers(tmp_path) == []


# --- atomic outputs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["out.mp4", "out_frames"])
@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_failed_write_leaves_nothing(tmp_path: Path, name: str, error: type[BaseException]) -> None:
    with pytest.raises(error), open_sink(tmp_path / name, fps=Fraction(24), width=32, height=32) as sink:
        sink.write(pattern(0, 32, 32))
        raise error("stop")
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("name", ["out.mkv", "out_frames"])
def test_existing_output_kept_unless_overwrite(tmp_path: Path, name: str) -> None:
    out = tmp_path / name
    first = [pattern(i, 32, 32) for i in range(5)]
    write_all(open_sink(out, fps=Fraction(24), width=32, height=32), first)
    with pytest.raises(OutputExistsError, match="--overwrite") as caught:
        open_sink(out, fps=Fraction(24), width=32, height=32)
    assert str(out) in str(caught.value) and isinstance(caught.value, MediaError)
    with open_source(out) as source:
        assert source.info.frame_count == 5

    write_all(open_sink(out, fps=Fraction(24), width=32, height=32, overwrite=True), first[:2])
    with open_source(out) as source:
        assert source.info.frame_count == 2
    assert leftovers(tmp_path) == [name]


def test_overwrite_happens_only_at_commit(tmp_path: Path) -> None:
    out = tmp_path / "keep.mp4"
    write_all(open_sink(out, fps=Fraction(24), width=32, height=32), [pattern(i, 32, 32) for i in range(3)])
    original = out.read_bytes()
    with pytest.raises(RuntimeError), open_sink(out, fps=24, width=32, height=32, overwrite=True) as sink:
        sink.write(pattern(0, 32, 32))
        assert out.read_bytes() == original
        assert any(name.startswith(".keep.mp4.partial-") for name in leftovers(tmp_path))
        raise RuntimeError
    assert out.read_bytes() == original and leftovers(tmp_path) == ["keep.mp4"]


def test_empty_existing_folder_is_not_an_existing_output(tmp_path: Path) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    write_all(open_sink(out, fps=Fraction(24), width=8, height=8), [np.zeros((8, 8, 3), np.uint8)] * 2)
    assert leftovers(out) == ["frame_000000.png", "frame_000001.png"]
