"""Carrying the audio and subtitle tracks (and chapters and attached files) of an input into a video
output while the video is encoded.

Packets are copied unchanged when the output container accepts the codec. Otherwise audio is re-encoded
(AAC, or the container's own default when it cannot hold AAC), text subtitles are converted to the
container's own text codec (see `subtitles`), and other subtitles are left out with a warning. Packets
are muxed in step with the video, so the file is interleaved and only converted subtitle tracks (small)
are held whole.
"""

from __future__ import annotations

import functools
import io
import logging
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
from av.container import InputContainer, OutputContainer

from . import subtitles
from .errors import InputNotFoundError, OutputWriteError, UnreadableInputError, translate_errors

log = logging.getLogger(__name__)

FALLBACK_AUDIO_CODEC = "aac"


# Containers that hold attached files (fonts for styled subtitles, cover art).
_HOLDS_ATTACHMENTS = frozenset({"matroska"})
# Muxers that move a file's packets later until no time is negative (chapters stay where they were put).
_SHIFTS_NEGATIVE_TIMES = frozenset({"matroska", "webm"})
# Muxers that shift every stream for a negative time too, but by whole video frames that they insert as
# empty ones (an AVI then lists more frames than it holds, and its picture starts late): a track that
# would start before 0 (AAC's priming, about 20 ms) is started at 0 instead.
_PADS_VIDEO_FOR_NEGATIVE_TIMES = frozenset({"avi"})


def _stream_start(stream: av.stream.Stream) -> Fraction:
    """Start time of ``stream`` in seconds (0 when unknown)."""
    if stream.start_time is None or stream.time_base is None:
        return Fraction(0)
    return stream.start_time * stream.time_base


def _supported_rate(codec: av.Codec, rate: int) -> int:
    """``rate`` if the encoder takes it, else the next higher one it takes (Opus has a fixed set)."""
    rates = sorted(codec.audio_rates or ())
    if not rates or rate in rates:
        return rate
    return next((candidate for candidate in rates if candidate > rate), rates[-1])


# The usual speaker layout for a channel count, for streams that do not name theirs.
_DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}


def _named_layout(stream: av.audio.AudioStream) -> av.AudioLayout | str:
    """The stream's channel layout, or the usual one for its channel count when it names no speakers (PCM
    in Matroska or AVI): MP4 cannot store a layout without names and fails only when the file is closed."""
    layout = stream.layout
    if any(channel.name == "NONE" for channel in layout.channels):
        return _DEFAULT_LAYOUTS.get(stream.channels, layout)
    return layout


# Stream tags that name a track for players (a film's languages, commentaries); the statistics that
# muxers compute (DURATION, ...) are theirs to write, and MP4's generic handler names say nothing.
_LABELS = ("language", "title", "handler_name")
_GENERIC_HANDLERS = frozenset({"SoundHandler", "SubtitleHandler", "VideoHandler"})


def _copy_labels(source: av.stream.Stream, target: av.stream.Stream) -> None:
    """The language, name and flags (default, forced, commentary, ...) of a track, for its copy."""
    for key in _LABELS:
        value = source.metadata.get(key)
        if value and value not in _GENERIC_HANDLERS:
            target.metadata[key] = value
    target.disposition = source.disposition


@functools.cache
def _matroska_codecs() -> frozenset[str]:
    with av.open(io.BytesIO(), "w", format="matroska") as probe:
        return frozenset(probe.supported_codecs)


def _muxer_takes_copy_of(container_format: str, stream: av.stream.Stream) -> bool:
    """Whether the muxer writes a header with a copy of `stream`: `supported_codecs` lists codecs some
    muxers refuse only then (Opus and FLAC in MOV), which would fail the job after all its work."""
    try:
        with av.open(io.BytesIO(), "w", format=container_format) as probe:
            probe.add_stream_from_template(stream)
            probe.start_encoding()
    except (av.FFmpegError, ValueError):
        return False
    return True


def announce_left_out_tracks(source: Path, container_format: str) -> None:
    """Warn now, before any work, about the tracks of `source` that an output in `container_format` will
    leave out (a job whose output is written at its very end, such as the Ray join)."""
    with av.open(io.BytesIO(), "w", format=container_format) as probe:
        TrackCarrier(probe, source).close()


def packet_time(packet: av.Packet) -> Fraction:
    """Decoding time of a packet in seconds, for interleaving."""
    timestamp = packet.dts if packet.dts is not None else packet.pts
    if timestamp is None or packet.time_base is None:
        return Fraction(0)
    return timestamp * packet.time_base


class TrackCarrier:
    """Adds the audio and subtitle tracks, chapters and attached files of ``source`` to ``output`` and feeds
    the tracks' packets on demand."""

    def __init__(self, output: OutputContainer, source: Path, *, warn: bool = True) -> None:
        """`warn=False` keeps the tracks left out to the debug log (they were announced before the work)."""
        self._warn = log.warning if warn else log.debug
        if not source.exists():
            raise InputNotFoundError(f"{source} (the audio and subtitles of the output) does not exist; check the path")
        with translate_errors(UnreadableInputError, f"Cannot read the audio and subtitles of {source}"):
            self._input: InputContainer = av.open(str(source))
        try:
            self._setup(output, source)
        except BaseException:
            self.close()
            raise

    def _setup(self, output: OutputContainer, source: Path) -> None:
        video = self._input.streams.video
        # Keep the tracks aligned with the first video frame, which becomes time 0 in the output.
        self._offset = _stream_start(video[0]) if video else Fraction(0)
        self._targets: dict[int, av.stream.Stream] = {}
        self._transcoded: set[int] = set()  # audio re-encoded
        self._converted: dict[int, list[av.Packet]] = {}  # subtitles converted, read whole beforehand
        with translate_errors(OutputWriteError, f"Cannot add the tracks and attachments of {source} to the output"):
            for stream in (*self._input.streams.audio, *self._input.streams.subtitles):
                if stream.codec_context is None:  # FFmpeg has no decoder for it (TTML, teletext, ...)
                    self._warn(
                        "leaving out %s track %d of %s: FFmpeg cannot read it", stream.type, stream.index, source
                    )
                elif stream.type == "audio":
                    self._add_audio(output, stream, source)
                else:
                    self._add_subtitles(output, stream, source)
            self._add_attachments(output, source)
        for index, target in self._targets.items():
            _copy_labels(self._input.streams[index], target)
        self._lead = self._muxer_lead(output)
        self._starts_at_zero = output.format.name in _PADS_VIDEO_FOR_NEGATIVE_TIMES
        self._delays: dict[tuple[bool, int], int] = {}  # per stream (copied: input's, re-encoded: output's)
        chapters = [chapter for chapter in map(self._chapter_shifted, self._input.chapters()) if chapter]
        if chapters:
            output.set_chapters(chapters)
        self._source = source
        self._packets = self._generate()
        self._pending: av.Packet | None = None

    def _add_audio(self, output: OutputContainer, stream: av.audio.AudioStream, source: Path) -> None:
        """A copy of the track where the container holds its codec, else a re-encoding."""
        supported = output.supported_codecs
        fallback = FALLBACK_AUDIO_CODEC if FALLBACK_AUDIO_CODEC in supported else output.default_audio_codec
        name = stream.codec_context.name
        if name in supported and _muxer_takes_copy_of(output.format.name, stream):
            target = output.add_stream_from_template(stream)
            target.codec_context.layout = _named_layout(stream)
            self._targets[stream.index] = target
        elif fallback in supported:
            log.info("re-encoding %s audio from %s to %s", name, source, fallback)
            rate = _supported_rate(av.Codec(fallback, "w"), stream.rate)
            self._targets[stream.index] = output.add_stream(fallback, rate=rate, layout=_named_layout(stream))
            self._transcoded.add(stream.index)
        else:
            self._warn("the output container cannot hold audio; leaving out audio track %d of %s", stream.index, source)

    def _add_subtitles(self, output: OutputContainer, stream: av.stream.Stream, source: Path) -> None:
        """A copy of the track where the container holds its codec; text subtitles converted to a text
        codec it holds (SubRip in MKV to mov_text in MP4, and back); bitmap ones left out otherwise."""
        name, supported = stream.codec_context.name, output.supported_codecs
        if name in supported:
            self._targets[stream.index] = output.add_stream_from_template(stream)
            return
        text_codec = next((codec for codec in subtitles.TEXT_CODECS if codec in supported), None)
        if name in subtitles.TEXT_CODECS and text_codec is not None:
            log.info("converting %s subtitles of %s to %s", name, source, text_codec)
            target, converted = subtitles.convert_track(source, stream.index, self._offset, output, text_codec)
            if converted.lost:
                what = (converted.lost, stream.index, source)
                self._warn("leaving out %d cues of subtitle track %d of %s: they are not UTF-8 text or too long", *what)
            self._targets[stream.index] = target
            self._converted[stream.index] = converted.packets
            return
        hint = " (an .mkv output keeps it)" if name in _matroska_codecs() else ""
        self._warn(
            "the output container cannot hold %s subtitles; leaving out subtitle track %d of %s%s",
            name,
            stream.index,
            source,
            hint,
        )

    def _add_attachments(self, output: OutputContainer, source: Path) -> None:
        """Files attached to the source (the fonts its styled subtitles are drawn with, cover art): kept
        where the container holds attachments (Matroska), else left out with a warning."""
        attached = [stream for stream in self._input.streams if stream.type == "attachment"]
        if not attached:
            return
        if output.format.name not in _HOLDS_ATTACHMENTS:
            self._warn(
                "leaving out the %d attached files of %s (fonts of styled subtitles, cover art, ...): %s files "
                "cannot hold them; an .mkv output keeps them",
                len(attached),
                source,
                output.format.name,
            )
            return
        for stream in attached:
            name = stream.name or f"attachment_{stream.index}"
            output.add_attachment(name, stream.mimetype or "application/octet-stream", bytes(stream.data))

    def _muxer_lead(self, output: OutputContainer) -> Fraction:
        """How far the output's muxer will move every packet, but not the chapters, later: Matroska stores
        no negative times, so audio that starts before the first video frame shifts the whole file."""
        if output.format.name not in _SHIFTS_NEGATIVE_TIMES:
            return Fraction(0)
        audio = [self._input.streams[index] for index in self._targets if self._input.streams[index].type == "audio"]
        return max([Fraction(0)] + [self._offset - _stream_start(stream) for stream in audio])

    def _chapter_shifted(self, chapter: dict) -> dict | None:
        """A chapter (a film's scenes) in output time, like the tracks; None if it ends before the video.
        Where the muxer will move the packets `_lead` later, the picture starts there."""
        shift = round((self._offset - self._lead) / chapter["time_base"])
        picture = round(self._lead / chapter["time_base"])
        start, end = chapter["start"] - shift, chapter["end"] - shift
        return {**chapter, "start": max(start, picture), "end": end} if end > picture else None

    def _shifted(self, packet: av.Packet) -> av.Packet | None:
        """`packet` moved to output time; a subtitle that ends before the first video frame is dropped
        and one that spans it starts there (MP4 muxers turn negative subtitle times into garbage)."""
        shift = round(self._offset / packet.time_base) if packet.time_base is not None else 0
        if shift:
            if packet.pts is not None:
                packet.pts -= shift
            if packet.dts is not None:
                packet.dts -= shift
        if packet.stream.type == "subtitle" and packet.pts is not None and packet.pts < 0:
            end = packet.pts + (packet.duration or 0)
            if end <= 0:
                return None
            packet.pts, packet.dts, packet.duration = 0, 0, end
        if self._starts_at_zero and packet.stream.type == "audio":
            stream = (packet.stream.container is self._input, packet.stream.index)
            delay = self._delays.setdefault(stream, max(0, -min(packet.pts or 0, packet.dts or 0)))
            if packet.pts is not None:
                packet.pts += delay
            if packet.dts is not None:
                packet.dts += delay
        return packet

    def _generate(self) -> Iterator[av.Packet]:
        """The packets of every carried track in time order: demuxed as the file goes, the converted
        subtitles (already in output time) slotted in."""
        cues = sorted((p for packets in self._converted.values() for p in packets), key=packet_time)
        next_cue = 0
        inputs = [s for s in self._input.streams if s.index in self._targets and s.index not in self._converted]
        for packet in self._input.demux(inputs) if inputs else ():
            for produced in self._output_packets(packet):
                while next_cue < len(cues) and packet_time(cues[next_cue]) <= packet_time(produced):
                    yield cues[next_cue]
                    next_cue += 1
                yield produced
        yield from cues[next_cue:]
        for index in self._transcoded:
            for encoded in self._targets[index].encode(None):
                yield self._shifted(encoded)

    def _output_packets(self, packet: av.Packet) -> Iterator[av.Packet]:
        """A demuxed packet as output packets: copied (shifted to output time) or re-encoded audio."""
        target = self._targets[packet.stream.index]
        if packet.stream.index not in self._transcoded:
            shifted = self._shifted(packet) if packet.size else None  # in the source's time base
            if shifted is not None:
                shifted.stream = target
                yield shifted
            return
        for frame in packet.decode():
            for encoded in target.encode(frame):
                yield self._shifted(encoded)

    def mux_until(self, output: OutputContainer, until: Fraction | None) -> None:
        """Mux the packets that decode before ``until`` seconds (all remaining ones for ``None``)."""
        with translate_errors(
            OutputWriteError, f"Cannot copy the audio and subtitles of {self._source} into the output"
        ):
            while True:
                packet = self._pending if self._pending is not None else next(self._packets, None)
                if packet is None:
                    return
                if until is not None and packet_time(packet) > until:
                    self._pending = packet
                    return
                self._pending = None
                output.mux(packet)

    def close(self) -> None:
        """Release the source file."""
        self._input.close()
