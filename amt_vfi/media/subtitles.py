"""Text subtitles converted for a container that cannot hold their codec (SubRip into MP4, mov_text into
MKV, ...): the whole track is read before the work starts, so unreadable cues are reported then and not
when the output is finished, and its cues are made fit for every container on the way: no two on screen
at once (MP4 pushes an overlapping cue back until the one before it ends, delaying all that follow) and
none without an end.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from av.container import InputContainer, OutputContainer
from av.subtitles.subtitle import SubtitleSet

#: Text subtitle codecs, in the order a container's own is preferred (mov_text for MP4 and MOV, SubRip for
#: Matroska, WebVTT for WebM); each converts to every other through ASS dialogue lines.
TEXT_CODECS = ("mov_text", "subrip", "webvtt", "ass", "srt", "ssa", "text")
TIME_BASE = Fraction(1, 1000)  # milliseconds
#: How long a cue without a duration stays up at most (milliseconds), when no later cue ends it sooner.
LONGEST_UNTIMED_CUE = 5000
# The ASS header FFmpeg gives text subtitles without one (SubRip, mov_text): one default style.
ASS_HEADER = (
    b"[Script Info]\nScriptType: v4.00+\nPlayResX: 384\nPlayResY: 288\n\n[V4+ Styles]\nFormat: Name, Fontname, "
    b"Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, Underline, StrikeOut, "
    b"ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, "
    b"Encoding\nStyle: Default,Arial,16,&Hffffff,&Hffffff,&H0,&H0,0,0,0,0,100,100,0,0,1,1,0,2,10,10,10,0\n\n"
    b"[Events]\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n"
)
# An ASS dialogue line as FFmpeg's decoders give it: ReadOrder, Layer, Style, Name, MarginL, MarginR,
# MarginV, Effect, then the text (which may hold commas).
_FIELDS_BEFORE_TEXT = 8


@dataclass(frozen=True)
class Cue:
    """A subtitle on screen from `start` to `end` (milliseconds of output time) as an ASS dialogue line."""

    start: int
    end: int | None
    line: bytes

    @property
    def text(self) -> bytes:
        return self.line.split(b",", _FIELDS_BEFORE_TEXT)[-1]


@dataclass
class ConvertedTrack:
    """The packets of one converted track, and how many of its cues could not be converted."""

    packets: list[av.Packet]
    lost: int


def convert_track(
    source: Path, index: int, offset: Fraction, output: OutputContainer, codec: str
) -> tuple[av.stream.Stream, ConvertedTrack]:
    """Stream `index` of `source` as a new `codec` track of `output`, shifted by `offset` seconds."""
    with av.open(str(source)) as container:
        stream = container.streams[index]
        target = output.add_stream(codec)
        target.time_base = target.codec_context.time_base = TIME_BASE
        target.codec_context.subtitle_header = stream.codec_context.subtitle_header or ASS_HEADER
        cues, lost = _read_cues(container, stream, offset)
    packets = []
    for cue in _one_at_a_time(_with_ends(cues)):
        try:
            subtitle = SubtitleSet.create(cue.line, 0, cue.end - cue.start, pts=cue.start)
            packet = target.codec_context.encode_subtitle(subtitle)
        except av.FFmpegError:  # e.g. more text than mov_text holds
            lost += 1
            continue
        packet.pts = packet.dts = cue.start
        packet.duration, packet.time_base, packet.stream = cue.end - cue.start, TIME_BASE, target
        packets.append(packet)
    return target, ConvertedTrack(packets, lost)


def _read_cues(container: InputContainer, stream: av.stream.Stream, offset: Fraction) -> tuple[list[Cue], int]:
    """The cues of `stream` in output milliseconds (those before 0 dropped or cut to it), and how many
    could not be read (text that is not UTF-8, which FFmpeg's decoders refuse)."""
    cues, lost = [], 0
    for packet in container.demux(stream):
        if not packet.size or packet.pts is None:
            continue
        start = round((packet.pts * packet.time_base - offset) / TIME_BASE)
        end = start + round(packet.duration * packet.time_base / TIME_BASE) if packet.duration else None
        if end is not None and end <= 0:
            continue
        try:
            decoded = stream.codec_context.decode(packet)
        except av.FFmpegError:
            lost += 1
            continue
        cues += [cue for cue in (Cue(max(start, 0), end, subtitle.ass) for subtitle in decoded) if cue.text.strip()]
    return sorted(cues, key=lambda cue: cue.start), lost


def _with_ends(cues: list[Cue]) -> list[Cue]:
    """Cues (sorted by start) without a duration end where the next one starts, at most
    LONGEST_UNTIMED_CUE later."""
    ended = []
    for number, cue in enumerate(cues):
        if cue.end is None or cue.end <= cue.start:
            later = (other.start for other in itertools.islice(cues, number + 1, None) if other.start > cue.start)
            cue = Cue(cue.start, min(cue.start + LONGEST_UNTIMED_CUE, next(later, math.inf)), cue.line)
        ended.append(cue)
    return ended


def _one_at_a_time(cues: list[Cue]) -> list[Cue]:
    """Overlapping cues (sorted by start) as a sequence of cues that do not overlap: between any two
    moments where a cue starts or ends, one cue with the texts of all those on screen, earliest on top."""
    moments = sorted({moment for cue in cues for moment in (cue.start, cue.end)})
    flat: list[Cue] = []
    showing: list[Cue] = []
    waiting = iter(cues)
    upcoming = next(waiting, None)
    for start, end in itertools.pairwise(moments):
        showing = [cue for cue in showing if cue.end > start]
        while upcoming is not None and upcoming.start <= start:
            showing.append(upcoming)
            upcoming = next(waiting, None)
        if not showing:
            continue
        first = showing[0].line.split(b",", _FIELDS_BEFORE_TEXT)
        line = b",".join([*first[:-1], b"\\N".join(cue.text for cue in showing)])
        if flat and flat[-1].end == start and flat[-1].line == line:
            flat[-1] = Cue(flat[-1].start, end, line)
        else:
            flat.append(Cue(start, end, line))
    return flat
