"""Builders for the small media files used by tests/test_media.py (PyAV and Pillow, no external tools)."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.subtitles.subtitle import SubtitleSet

AUDIO_RATE = 44100


def pattern(index: int, width: int = 320, height: int = 240) -> np.ndarray:
    """A smooth, moving RGB test picture that survives lossy coding well (PSNR > 30 dB at crf 18)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    shift = index * 6.0
    red = 128 + 100 * np.sin((x + shift) / 23.0)
    green = 128 + 100 * np.cos((y - shift) / 17.0)
    blue = 128 + 60 * np.sin((x + y + 2 * shift) / 31.0)
    return np.stack([red, green, blue], axis=-1).round().astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two uint8 images."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def write_dpx(path: Path, pixels: np.ndarray, pixel_format: str) -> None:
    """A DPX file of H x W x 3 `pixels` (uint8, or uint16 scaled to 0..65535) stored as `pixel_format`."""
    picture = av.VideoFrame.from_ndarray(pixels, format="rgb48le" if pixels.dtype == np.uint16 else "rgb24")
    encoder = av.CodecContext.create("dpx", "w")
    encoder.width, encoder.height, encoder.pix_fmt = picture.width, picture.height, pixel_format
    path.write_bytes(b"".join(bytes(packet) for packet in encoder.encode(picture) + encoder.encode(None)))


def stored_format(path: Path) -> str:
    """The pixel format an image file holds, as FFmpeg decodes it."""
    with av.open(str(path)) as container:
        return next(container.decode(video=0)).format.name


def _mux_sine(container: av.container.OutputContainer, stream: av.audio.stream.AudioStream, seconds: float) -> None:
    samples = np.sin(2 * np.pi * 440 * np.arange(round(AUDIO_RATE * seconds)) / AUDIO_RATE).astype(np.float32)
    size = stream.codec_context.frame_size or 1024
    for start in range(0, len(samples), size):
        chunk = 0.3 * samples[start : start + size]
        frame = av.AudioFrame.from_ndarray(np.stack([chunk, chunk]), format="fltp", layout="stereo")
        frame.sample_rate = AUDIO_RATE
        frame.pts = start
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def make_clip(
    path: Path,
    *,
    frames: int = 24,
    fps: Fraction = Fraction(24),
    size: tuple[int, int] = (320, 240),
    gop: int = 8,
    audio_codec: str | None = "aac",
    rotation: int = 0,
    bt709: bool = False,
    timestamps: Sequence[int] | None = None,
    track_tags: dict[str, str] | None = None,
    audio_tags: Sequence[dict[str, str]] = ({},),
) -> list[np.ndarray]:
    """Write an H.264 clip (frame i at pts i in a 1/fps time base unless ``timestamps`` say otherwise)
    with tags on the video track and, with an audio codec, one sine track per entry of ``audio_tags``
    (its tags); returns the RGB frames that went in."""
    pictures = [pattern(i, *size) for i in range(frames)]
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps, options={"crf": "16"})
        video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
        video.time_base = 1 / fps
        video.codec_context.gop_size = gop
        video.metadata.update(track_tags or {})
        if rotation:
            video.set_display_rotation(rotation)
        if bt709:
            video.codec_context.color_primaries = 1
            video.codec_context.color_trc = 1
            video.codec_context.colorspace = 1
        streams = len(audio_tags) if audio_codec else 0
        audios = [container.add_stream(audio_codec, rate=AUDIO_RATE, layout="stereo") for _ in range(streams)]
        for audio, tags in zip(audios, audio_tags, strict=False):
            audio.metadata.update(tags)
        for index, picture in enumerate(pictures):
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            if bt709:
                frame = frame.reformat(format="yuv420p", dst_colorspace=1)
            frame.pts = index if timestamps is None else timestamps[index]
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        for audio in audios:
            _mux_sine(container, audio, frames / fps)
    return pictures


def add_subtitles(
    clip: Path,
    cues: Sequence[tuple[float, float, str]],
    out: Path,
    language: str = "eng",
    encoding: str = "utf-8",
    timed: bool = True,
    chapters: Sequence[tuple[float, float, str]] = (),
) -> None:
    """`clip` (an MP4 or MOV, whose packets carry decoding times) remuxed into Matroska `out` with a SubRip
    track of `cues` (start and end in seconds, text; none without cues) written in `encoding`, and
    `chapters` (start, end, title); `timed=False` leaves the cues without durations, as some muxers do."""
    with av.open(str(clip)) as source, av.open(str(out), "w") as target:
        streams = {stream.index: target.add_stream_from_template(stream) for stream in source.streams}
        packets = [(p, streams[p.stream.index]) for p in source.demux() if p.size]
        if cues:
            srt = out.with_suffix(".srt")
            lines = [f"{n}\n{_srt_time(a)} --> {_srt_time(b)}\n{text}\n\n" for n, (a, b, text) in enumerate(cues, 1)]
            srt.write_bytes("".join(lines).encode(encoding))
            with av.open(str(srt)) as subtitles:
                cue_stream = target.add_stream_from_template(subtitles.streams[0])
                cue_stream.metadata["language"] = language
                for packet in subtitles.demux(subtitles.streams[0]):
                    if packet.size:
                        packet.duration = packet.duration if timed else 0
                        packets.append((packet, cue_stream))
        if chapters:
            target.set_chapters(_chapter_entries(chapters))
        packets.sort(key=lambda item: (item[0].dts if item[0].dts is not None else item[0].pts) * item[0].time_base)
        for packet, stream in packets:
            packet.stream = stream
            target.mux(packet)


def add_chapters(clip: Path, chapters: Sequence[tuple[float, float, str]], out: Path) -> None:
    """`clip` (an MP4) remuxed into Matroska `out` with `chapters` (start and end in seconds, title)."""
    add_subtitles(clip, [], out, chapters=chapters)


def _chapter_entries(chapters: Sequence[tuple[float, float, str]]) -> list[dict]:
    return [
        {
            "id": n,
            "start": round(start * 1000),
            "end": round(end * 1000),
            "time_base": Fraction(1, 1000),
            "metadata": {"title": title},
        }
        for n, (start, end, title) in enumerate(chapters, 1)
    ]


def chapters_of(path: Path) -> list[tuple[float, float, str]]:
    """(start, end in seconds after the first video frame, title) of every chapter of a file."""
    with av.open(str(path)) as container:
        first_frame = float(next(container.decode(container.streams.video[0])).time)
        return [
            (
                round(float(c["start"] * c["time_base"]) - first_frame, 3),
                round(float(c["end"] * c["time_base"]) - first_frame, 3),
                c["metadata"].get("title"),
            )
            for c in container.chapters()
        ]


_ASS_HEADER = (
    b"[Script Info]\nScriptType: v4.00+\nPlayResX: 320\nPlayResY: 240\n\n[V4+ Styles]\nFormat: Name, Fontname, "
    b"Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, Underline, StrikeOut, "
    b"ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, "
    b"Encoding\nStyle: Default,Arial,20,&H00FFFFFF,&H000000FF,&H00000000,&H00000000,0,0,0,0,100,100,0,0,1,1,0,2,"
    b"10,10,10,1\n\n[Events]\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n"
)


def add_ttml(clip: Path, out: Path) -> None:
    """`clip` remuxed into MP4 `out` with a TTML subtitle track: one FFmpeg writes but cannot decode."""
    with av.open(str(clip)) as source, av.open(str(out), "w") as target:
        streams = {stream.index: target.add_stream_from_template(stream) for stream in source.streams}
        ttml = target.add_stream("ttml")
        ttml.time_base = ttml.codec_context.time_base = Fraction(1, 1000)
        ttml.codec_context.subtitle_header = _ASS_HEADER
        cue = ttml.codec_context.encode_subtitle(SubtitleSet.create(b"0,0,Default,,0,0,0,,hola", 0, 300, pts=100))
        cue.pts, cue.dts, cue.duration, cue.time_base = 100, 100, 300, Fraction(1, 1000)
        packets = [(p, streams[p.stream.index]) for p in source.demux() if p.size] + [(cue, ttml)]
        packets.sort(key=lambda item: (item[0].dts if item[0].dts is not None else item[0].pts) * item[0].time_base)
        for packet, stream in packets:
            packet.stream = stream
            target.mux(packet)


def _srt_time(seconds: float) -> str:
    millis = round(seconds * 1000)
    return f"{millis // 3_600_000:02d}:{millis // 60_000 % 60:02d}:{millis // 1000 % 60:02d},{millis % 1000:03d}"


def subtitle_cues(path: Path) -> list[tuple[str | None, float, bytes]]:
    """(language, start in seconds after the first video frame, text) of every subtitle cue of a file,
    whatever its text codec (empty samples, which MP4 muxers put in gaps, are no cues)."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        first_frame = float(next(container.decode(video)).time)
    with av.open(str(path)) as container:
        subtitles = list(container.streams.subtitles)  # demux([]) would read every stream
        return [
            (
                packet.stream.metadata.get("language"),
                round(float(packet.pts * packet.time_base) - first_frame, 3),
                cue.dialogue,
            )
            for packet in (container.demux(subtitles) if subtitles else [])
            if packet.size
            for cue in packet.stream.codec_context.decode(packet)
        ]


def subtitle_codecs(path: Path) -> list[str]:
    with av.open(str(path)) as container:
        return [stream.codec_context.name for stream in container.streams.subtitles]


def stream_summary(path: Path) -> dict[str, object]:
    """Codec names, packet counts and durations (seconds) of a media file, per stream type."""
    with av.open(str(path)) as container:
        summary: dict[str, object] = {"duration": container.duration / 1e6 if container.duration else None}
        order = []
        for stream in container.streams:
            if stream.codec_context is not None:  # MP4's chapter track has none
                summary[f"{stream.type}_codec"] = stream.codec_context.name
        counts: dict[str, int] = {}
        ends: dict[str, float] = {}
        for packet in container.demux():
            if not packet.size:
                continue
            kind = packet.stream.type
            counts[kind] = counts.get(kind, 0) + 1
            order.append(kind)
            end = (packet.pts + (packet.duration or 0)) * packet.time_base
            ends[kind] = max(ends.get(kind, 0.0), float(end))
        summary["packets"] = counts
        summary["ends"] = ends
        summary["order"] = order
    return summary
