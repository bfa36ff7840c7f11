"""Joining finished chunks into the final output without decoding or encoding a frame.

Video chunks are remuxed: their packets are copied into one container with timestamps shifted by the
chunk's first output frame, and the input's audio and subtitles are carried alongside exactly as the single-process
sink does. Image chunks are linked into one folder under their global frame numbers. Either way the
result is built in a temp next to the output and renamed into place at the end.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import av

from ..media import OutputWriteError, frame_file_name
from ..media.atomic import atomic_output
from ..media.errors import translate_errors
from ..media.tracks import TrackCarrier, packet_time
from ..media.video import CONTAINER_FORMATS, is_untimed


class Part(NamedTuple):
    """A finished chunk: its file or folder, its first frame's number in the output, its frame count."""

    path: Path
    first_output: int
    frames: int


def _frames(timestamp: int, time_base: Fraction, fps: Fraction) -> int:
    """A timestamp in any container's time base as a whole number of output frames."""
    return round(timestamp * time_base * fps)


def _video_packets(path: Path, fps: Fraction) -> Iterator[tuple[av.Packet, int]]:
    """A chunk's video packets, each with the number of its frame in the chunk. A container without
    presentation times (AVI) holds no reordered frames either (see VideoSink): frames are numbered in
    file order there."""
    with av.open(str(path)) as chunk:
        packets = (packet for packet in chunk.demux(chunk.streams.video[0]) if packet.size)
        if is_untimed(chunk.format.name):
            yield from ((packet, number) for number, packet in enumerate(packets))
        else:
            yield from ((packet, _frames(packet.pts, packet.time_base, fps)) for packet in packets)


def _decode_times(parts: Sequence[Part], fps: Fraction) -> Iterator[int]:
    """Decode timestamps (in output frames) for the packets of all chunks, in file order.

    Matroska keeps none where frames are reordered, so they are made up the way encoders make them: the
    presentation times in sorted order, all moved back by the largest reordering delay, so that no frame
    is decoded after it is shown and the times keep increasing from one chunk to the next.
    """
    shown = [part.first_output + frame for part in parts for _, frame in _video_packets(part.path, fps)]
    ordered = sorted(shown)
    delay = max((first - late for first, late in zip(ordered, shown, strict=True)), default=0)
    return (time - delay for time in ordered)


def _remux(parts: Sequence[Part], temp: Path, container: str, fps: Fraction, tracks_from: Path | None) -> None:
    decode_times = _decode_times(parts, fps)
    with av.open(str(parts[0].path)) as first, av.open(str(temp), "w", format=container) as out:
        stream = out.add_stream_from_template(first.streams.video[0])  # codec, size, colour, rotation
        frame_base = 1 / fps  # packets are stamped in frames; the muxer may pick a finer time base
        stream.time_base = frame_base
        stream.codec_context.framerate = fps
        tracks = TrackCarrier(out, tracks_from, warn=False) if tracks_from is not None else None  # announced
        try:
            for part in parts:
                for packet, frame in _video_packets(part.path, fps):
                    base = packet.time_base
                    packet.pts = part.first_output + frame
                    packet.dts = next(decode_times)
                    packet.duration = _frames(packet.duration or 0, base, fps)
                    packet.time_base = frame_base
                    packet.stream = stream
                    out.mux(packet)
                    if tracks is not None:
                        tracks.mux_until(out, packet_time(packet))
            if tracks is not None:
                tracks.mux_until(out, None)
        finally:
            if tracks is not None:
                tracks.close()


def stitch_video(
    parts: Sequence[Part], output: Path, *, fps: Fraction, tracks_from: Path | None, overwrite: bool
) -> None:
    """Join video chunks, in order, into `output` at `fps`."""
    with (
        atomic_output(output, overwrite=overwrite, directory=False) as temp,
        translate_errors(OutputWriteError, f"Cannot join the chunks of {output}"),
    ):
        _remux(parts, temp, CONTAINER_FORMATS[output.suffix.lower()], fps, tracks_from)


def _link(source: Path, target: Path) -> None:
    """A hard link costs no space or time; copy where the file system has none."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def assemble_folder(parts: Sequence[Part], output: Path, *, overwrite: bool, suffix: str = ".png") -> None:
    """Join image chunks (their pictures' file suffix `suffix`), in order, into the folder `output`."""
    with (
        atomic_output(output, overwrite=overwrite, directory=True) as temp,
        translate_errors(OutputWriteError, f"Cannot gather the chunks of {output}"),
    ):
        for part in parts:
            for index in range(part.frames):
                target = frame_file_name(part.first_output + index, suffix)
                _link(part.path / frame_file_name(index, suffix), temp / target)
