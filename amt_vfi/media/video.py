"""Video files as frame sources and sinks (PyAV).

Reading converts every frame to packed RGB (uint8, or uint16 for sources with more than 8 bits) and
reports the rotation without applying it. Writing encodes H.264 ``yuv420p`` by default; sizes that the
pixel format's chroma subsampling cannot represent (odd width or height for 4:2:0) are padded on the
right/bottom by repeating the edge pixels, so no content is lost; :attr:`VideoSink.encoded_width` /
:attr:`VideoSink.encoded_height` give the encoded size. Frame ``i`` gets timestamp ``i`` in a ``1/fps``
time base.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from itertools import chain, islice, pairwise
from pathlib import Path

import av
import numpy as np
from av.container import InputContainer
from av.video.stream import VideoStream

from .base import FrameSink, FrameSource, SourceInfo, as_rate, is_high_bit_depth, rgb_format
from .errors import (
    LIBRARY_ERRORS,
    MediaError,
    NotEnoughFramesError,
    OutputWriteError,
    UnreadableInputError,
    UnsupportedOutputError,
    translate_errors,
)
from .tracks import TrackCarrier, packet_time

log = logging.getLogger(__name__)

# H.264 (libx264), or the container's own codec where it cannot hold H.264 (VP9 in WebM); a codec named
# explicitly is used as it is, or refused.
DEFAULT_CODEC = "auto"
_H264 = "libx264"
# Frames whose timestamps are checked for a variable frame rate, plus slack for B-frame reordering:
# sorting the pts of the first N + margin packets yields the first N presentation timestamps.
VFR_SAMPLE = 50
REORDER_MARGIN = 16

# Containers that store no presentation times (AVI): their demuxers make pts up, which do not follow
# display order with B-frames. Reading counts frames from the start there; writing uses no B-frames.
_UNTIMED_FORMATS = frozenset({"avi"})


def is_untimed(format_name: str) -> bool:
    """Whether a container format (FFmpeg's name, possibly a comma-separated list) stores no presentation
    times, so that its frames are numbered in file order."""
    return bool(_UNTIMED_FORMATS.intersection(format_name.split(",")))


CONTAINER_FORMATS = {
    ".mp4": "mp4",
    ".m4v": "mp4",
    ".mkv": "matroska",
    ".mov": "mov",
    ".webm": "webm",
    ".avi": "avi",
}
# Containers that store times in milliseconds: above 1000 frames per second, frames would share times.
_MILLISECOND_FORMATS = frozenset({"matroska", "webm"})
# Used instead of the default codec when the container cannot hold H.264.
_NATIVE_CODECS = {"webm": "libvpx-vp9"}
_CRF_CODECS = frozenset({"libx264", "libx265", "libvpx-vp9", "libaom-av1", "libsvtav1"})
# Encoder options: keep libx265 from printing its banner to the terminal; let MJPEG store video-range
# YUV (the colour tags say so), as FFmpeg's `-strict unofficial` does.
_ENCODER_OPTIONS = {"libx265": {"x265-params": "log-level=error"}, "mjpeg": {"strict": "unofficial"}}
# Encoders whose constant-quality scale ends before the 63 of VP9 and AV1 (x264 clamps by itself).
_MOST_CRF = {"libx265": 51}
# Preferred pixel formats by (codec is lossy, bit depth): compact YUV 4:2:0 for lossy codecs, RGB for
# lossless ones such as FFV1 so they stay lossless.
_PIXEL_FORMATS = {
    (True, 8): ("yuv420p",),
    (True, 16): ("yuv420p10le", "yuv420p12le", "yuv420p"),
    (False, 8): ("gbrp", "bgr0", "rgb24", "yuv444p"),
    (False, 16): ("gbrp16le", "rgb48le", "gbrp12le", "gbrp10le", "yuv444p16le"),
}


@dataclass(frozen=True)
class ColorInfo:
    """Colour tags of a video (FFmpeg ``AVCOL_*`` enum values; 2, or 0 for the range, mean unspecified)."""

    primaries: int = 2
    trc: int = 2
    colorspace: int = 2
    color_range: int = 0


def _open_input(path: Path) -> InputContainer:
    with translate_errors(
        UnreadableInputError,
        f"Cannot read {path} as a video; check that it is a video file that FFmpeg decodes",
    ):
        return av.open(str(path))


def _video_stream(container: InputContainer, path: Path) -> VideoStream:
    if not container.streams.video:
        raise UnreadableInputError(f"Input {path} has no video stream; pass a video file or an image folder")
    return container.streams.video[0]


def _packets(container: InputContainer, stream: VideoStream) -> Iterator[av.Packet]:
    """Real packets of ``stream`` (no flush markers, nothing the demuxer marks for discarding)."""
    for packet in container.demux(stream):
        if packet.size and not packet.is_discard:
            yield packet


@dataclass
class _PacketScan:
    """What a pass over a stream's packets found: how many, their pts sorted (None when not kept or when a
    packet has none) and the latest time one of them stops showing (in the stream's time base)."""

    count: int = 0
    stamps: list[int] | None = field(default_factory=list)
    last_stop: int | None = None


def _seconds(stamp: int | None, time_base: Fraction | None) -> Fraction | None:
    return stamp * time_base if stamp is not None and time_base else None


def _later_stop(last_stop: int | None, item: av.Packet | av.VideoFrame) -> int | None:
    """The later of `last_stop` and when `item` (a packet or frame) stops showing, in its time base."""
    if item.pts is None:
        return last_stop
    stop = item.pts + (item.duration or 0)
    return stop if last_stop is None or stop > last_stop else last_stop


def _scan_packets(
    container: InputContainer, stream: VideoStream, count: float = math.inf, keep_stamps: bool = True
) -> _PacketScan:
    """The first ``count + REORDER_MARGIN`` packets (all of them in a shorter file), so the first ``count``
    sorted stamps are the first presentation timestamps."""
    scan = _PacketScan(stamps=[] if keep_stamps else None)
    for packet in _packets(container, stream):
        scan.count += 1
        if packet.pts is None:
            scan.stamps = None
        elif scan.stamps is not None:
            scan.stamps.append(packet.pts)
        scan.last_stop = _later_stop(scan.last_stop, packet)
        if scan.count >= count + REORDER_MARGIN:
            break
    if scan.stamps is not None:
        scan.stamps.sort()
    return scan


def _frame_rate(stream: VideoStream, stamps: list[int] | None, path: Path) -> Fraction:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return Fraction(rate)
    if stamps and len(stamps) > 1 and stream.time_base:
        steps = sorted(b - a for a, b in pairwise(stamps))
        median = steps[len(steps) // 2] * stream.time_base
        if median > 0:
            return (1 / median).limit_denominator(1001)
    raise UnreadableInputError(f"Cannot tell the frame rate of {path}; pass the frame rate explicitly")


def _is_variable(stamps: list[int], time_base: Fraction, fps: Fraction) -> bool:
    """Any step between consecutive frames off by more than half a frame period."""
    period = 1 / fps
    return any(abs((b - a) * time_base - period) > period / 2 for a, b in pairwise(stamps))


@dataclass(frozen=True)
class ListedExtent:
    """What a file's header says it holds, to tell a file cut short or damaged: a frame count (MP4, MOV),
    or for Matroska and WebM, which keep none, the end time of the video track (the DURATION tag that
    FFmpeg and mkvmerge write). A time, not a count: frames dropped by a recorder leave gaps, not an end."""

    frames: int | None = None
    end: Fraction | None = None  # seconds
    period: Fraction = Fraction(0)  # one frame, the slack allowed at the end
    packets: int | None = None  # frames counted in a pass over the packets, where the header has no count

    def shortfall(self, found: int, reached: Fraction | None) -> str | None:
        """What is missing, or None when `found` frames reaching `reached` seconds are all there is. One
        frame of slack for counts (a muxer may count, or write, a packet that carries no picture), two for
        times."""
        if self.frames is not None and found + 1 < self.frames:
            return f"its header lists {self.frames} frames but it holds only {found}"
        if self.packets is not None and found + 1 < self.packets:
            return f"it holds {self.packets} frames but only {found} can be decoded"
        if self.end is not None and reached is not None and reached + 2 * self.period < self.end:
            return f"its header gives the video {float(self.end):.2f} s but the frames end at {float(reached):.2f} s"
        return None


_DURATION_TAG = re.compile(r"^(\d+):(\d{2}):(\d{2})(?:\.(\d+))?$")


def _track_end(stream: VideoStream) -> Fraction | None:
    """The DURATION tag of a Matroska track in seconds: FFmpeg writes it afresh on every mux. Tags with a
    language suffix (mkvmerge's statistics) are not used: remuxing tools copy them unchanged."""
    tagged = _DURATION_TAG.match(stream.metadata.get("DURATION", "").strip())
    if tagged is None:
        return None
    hours, minutes, seconds, fraction = tagged.groups()
    fraction = fraction or "0"
    return int(hours) * 3600 + int(minutes) * 60 + int(seconds) + Fraction(int(fraction), 10 ** len(fraction))


def _listed_extent(stream: VideoStream, rate: Fraction) -> ListedExtent:
    if stream.frames:
        return ListedExtent(frames=stream.frames)
    return ListedExtent(end=_track_end(stream), period=1 / rate)


def _check_complete(path: Path, listed: ListedExtent, found: int, reached: Fraction | None) -> None:
    """Refuse a file that holds less than its header says: a copy or download cut short, or a Matroska
    file whose damaged middle made the demuxer stop early (it says nothing of it)."""
    missing = listed.shortfall(found, reached)
    if missing is not None:
        raise UnreadableInputError(
            f"{path} is incomplete or damaged: {missing} (a download or copy cut short?); get the whole file again"
        )


def _counted(path: Path, listed: ListedExtent, scan: _PacketScan, time_base: Fraction | None) -> ListedExtent:
    """Check a pass over all the packets against the header, and keep its count where the header has
    none: decoding must then find every one of those frames."""
    _check_complete(path, listed, scan.count, _seconds(scan.last_stop, time_base))
    return listed if listed.frames else dataclasses.replace(listed, packets=scan.count)


def _rotation(frame: av.VideoFrame, tag: str | None) -> int:
    """Counter-clockwise display rotation in 0..359 from the display matrix, else the ``rotate`` tag."""
    degrees = getattr(frame, "rotation", 0) or tag or 0
    try:
        return round(float(degrees)) % 360
    except ValueError:
        return 0


def probe_video(path: Path, fps: Fraction | None = None) -> tuple[SourceInfo, ColorInfo, ListedExtent]:
    """Metadata of a video from its header, the timestamps of its first frames and its first frame, and
    what its header says it holds."""
    with _open_input(path) as container:
        stream = _video_stream(container, path)
        with translate_errors(UnreadableInputError, f"Cannot read the frames of {path}; the file may be damaged"):
            scanned = _scan_packets(container, stream, VFR_SAMPLE)
        stamps = None if scanned.stamps is None else scanned.stamps[:VFR_SAMPLE]
        rate = _frame_rate(stream, stamps, path)
        variable = bool(stamps and stream.time_base) and _is_variable(stamps, stream.time_base, rate)
        whole_file = scanned.stamps is not None and scanned.count < VFR_SAMPLE + REORDER_MARGIN
        listed = _listed_extent(stream, rate)
        if whole_file:
            listed = _counted(path, listed, scanned, stream.time_base)
        frame_count = stream.frames or (scanned.count if whole_file else None)
        has_audio = bool(container.streams.audio)
        rotate_tag = stream.metadata.get("rotate")
    with _open_input(path) as container:
        stream = _video_stream(container, path)
        with translate_errors(UnreadableInputError, f"Cannot decode {path}; the file may be damaged"):
            first = next(container.decode(stream), None)
    if first is None:
        raise NotEnoughFramesError(f"Input {path} has no decodable frames; interpolation needs at least 2 frames")
    if frame_count is not None and frame_count < 2:
        raise NotEnoughFramesError(f"Input {path} has {frame_count} frame; interpolation needs at least 2 frames")
    info = SourceInfo(
        width=first.width,
        height=first.height,
        fps=fps or rate,
        frame_count=frame_count,
        bit_depth=16 if is_high_bit_depth(first.format) else 8,
        has_audio=has_audio,
        is_video=True,
        variable_frame_rate=variable,
        rotation=_rotation(first, rotate_tag),
    )
    color = ColorInfo(int(first.color_primaries), int(first.color_trc), int(first.colorspace), int(first.color_range))
    return info, color, listed


class VideoSource(FrameSource):
    """Decodes a video file's first video stream, one pass per :meth:`frames` call."""

    def __init__(self, path: Path, fps: Fraction | None = None) -> None:
        info, self.color, self._listed = probe_video(path, fps)
        super().__init__(path, info)

    def count_frames(self) -> int:
        """The container's count, else one pass over the packets (no decoding), checked against the
        duration the header gives."""
        if self.info.frame_count is not None:
            return self.info.frame_count
        with _open_input(self.path) as container:
            stream = _video_stream(container, self.path)
            with translate_errors(UnreadableInputError, f"Cannot read the packets of {self.path}"):
                scan = _scan_packets(container, stream, keep_stamps=False)
            self._listed = _counted(self.path, self._listed, scan, stream.time_base)
        return scan.count

    def _iter_from(self, start_index: int) -> Iterator[np.ndarray]:
        pixel_format = rgb_format(self.info.bit_depth)
        with _open_input(self.path) as container:
            stream = _video_stream(container, self.path)
            stream.thread_type = "AUTO"
            decoded, last_stop = 0, None
            with translate_errors(UnreadableInputError, f"Cannot decode {self.path}; the file may be damaged"):
                for frame in self._decoded_from(container, stream, start_index):
                    yield frame.to_ndarray(format=pixel_format)
                    decoded += 1
                    last_stop = _later_stop(last_stop, frame)
            _check_complete(self.path, self._listed, start_index + decoded, _seconds(last_stop, stream.time_base))

    def _decoded_from(
        self, container: InputContainer, stream: VideoStream, start_index: int
    ) -> Iterator[av.VideoFrame]:
        """Decoded frames from ``start_index`` on: seek to the keyframe before it, then drop by pts."""
        if start_index == 0:
            return container.decode(stream)
        stamps = None
        if not is_untimed(container.format.name):
            with _open_input(self.path) as scan:
                stamps = _scan_packets(scan, _video_stream(scan, self.path), start_index + 1).stamps
        if stamps is None:
            return islice(container.decode(stream), start_index, None)
        if len(stamps) <= start_index:
            return iter(())
        return _seek_to(container, stream, stamps[start_index], stamps[0])


def _seek_to(container: InputContainer, stream: VideoStream, target: int, earliest: int) -> Iterator[av.VideoFrame]:
    """Frames with pts >= ``target``; seeks further back while the landing keyframe is after the target."""
    step = max(1, round(1 / stream.time_base))  # one second, doubled on each retry
    position = target
    while True:
        container.seek(position, stream=stream, backward=True)
        decoded = container.decode(stream)
        first = next(decoded, None)
        landed = first is not None and first.pts is not None and first.pts <= target
        if landed or position <= earliest:
            break
        position = max(earliest, target - step)
        step *= 2
    if first is None:
        return
    for frame in chain([first], decoded):
        if frame.pts is not None and frame.pts >= target:
            yield frame
            break
    yield from decoded


def _metadata_of(source: str | Path | VideoSource) -> tuple[SourceInfo, ColorInfo] | None:
    """What an open source already knows, else what probing the file finds; None for a folder or a file
    that cannot be probed (logged: metadata is never worth failing a job for)."""
    if isinstance(source, VideoSource):
        return source.info, source.color
    if Path(source).is_dir():
        return None
    try:
        return probe_video(Path(source))[:2]
    except (MediaError, *LIBRARY_ERRORS) as exc:
        log.warning("not copying the metadata of %s: %s", source, exc)
        return None


def display_rotation(source: str | Path | VideoSource) -> int:
    """The counter-clockwise display rotation of a video (0 when it has none or cannot be read)."""
    metadata = _metadata_of(source)
    return metadata[0].rotation if metadata is not None else 0


def choose_pixel_format(codec: av.Codec, bit_depth: int) -> str:
    """The encoder pixel format for ``codec``: see ``_PIXEL_FORMATS``, else the codec's first format."""
    supported = [fmt.name for fmt in codec.video_formats or ()]
    for name in _PIXEL_FORMATS[(bool(codec.lossy), bit_depth)]:
        if name in supported:
            return name
    return supported[0] if supported else "yuv420p"


def _subsampling(pixel_format: str) -> tuple[int, int]:
    """How many pixels (x, y) share one chroma sample; the encoded size must be a multiple of these."""
    probe = av.VideoFormat(pixel_format, 64, 64)
    return 64 // min(c.width for c in probe.components), 64 // min(c.height for c in probe.components)


def _stored_codec(container: av.container.OutputContainer, codec: str, path: Path) -> str:
    """The codec the video of `path` is encoded with: `codec`, or for 'auto' H.264, or the container's
    own where the container cannot hold H.264 (WebM)."""
    if codec == DEFAULT_CODEC:
        native = _NATIVE_CODECS.get(container.format.name, container.default_video_codec)
        codec = _H264 if _H264 in container.supported_codecs else native
    if codec not in container.supported_codecs:
        raise UnsupportedOutputError(
            f"Codec {codec} cannot be stored in {path.suffix} files ({path}); pick another codec or container"
        )
    return codec


def check_crf(codec: str, crf: int) -> None:
    """Refuse a quality value the encoder would reject only when it opens, after the work has begun."""
    most = _MOST_CRF.get(codec)
    if most is not None and crf > most:
        raise UnsupportedOutputError(f"crf (--crf) {crf} is beyond {codec}'s range of 0 to {most}; use {most} or less")


def _check_video_encoder(codec: str, path: Path) -> None:
    if codec not in av.codecs_available:
        raise UnsupportedOutputError(f"Codec {codec} is not available for {path}; pick another codec")
    try:
        kind = av.Codec(codec, "w").type
    except (av.FFmpegError, ValueError):  # no encoder of that name
        kind = None
    if kind != "video":
        raise UnsupportedOutputError(
            f"Codec {codec} is not a video encoder; pick one such as {_H264}, libx265 or ffv1 for {path}"
        )


def check_video_output(path: Path, codec: str = DEFAULT_CODEC) -> None:
    """Refuse, before any work, an output `path` whose container is unknown or cannot hold `codec`."""
    container_format = CONTAINER_FORMATS.get(path.suffix.lower())
    if container_format is None:
        known = ", ".join(sorted(CONTAINER_FORMATS))
        raise UnsupportedOutputError(f"Cannot write {path}: use one of {known} or an output folder for PNGs")
    if codec != DEFAULT_CODEC:
        _check_video_encoder(codec, path)
    with av.open(io.BytesIO(), "w", format=container_format) as container:
        _stored_codec(container, codec, path)


class VideoSink(FrameSink):
    """Encodes frames into a video container, optionally carrying the audio and subtitle tracks and the
    metadata of another file."""

    def __init__(
        self,
        path: Path,
        *,
        fps: Fraction,
        width: int,
        height: int,
        bit_depth: int = 8,
        overwrite: bool = False,
        crf: int = 18,
        codec: str = DEFAULT_CODEC,
        tracks_from: Path | None = None,
        metadata_from: Path | VideoSource | None = None,
    ) -> None:
        check_video_output(path, codec)
        check_crf(codec, crf)
        self._format = CONTAINER_FORMATS[path.suffix.lower()]
        self.fps = as_rate(fps)
        if self._format in _MILLISECOND_FORMATS and self.fps > 1000:
            raise UnsupportedOutputError(
                f"{path.suffix} files store times in milliseconds, so at most 1000 frames per second, and this "
                f"output would have {float(self.fps):g}; write .mp4 or .mov, or use a smaller multiplier"
            )
        self._codec, self._crf = codec, crf
        self._tracks_from, self._metadata_from = tracks_from, metadata_from
        self._container: av.container.OutputContainer | None = None
        self._tracks: TrackCarrier | None = None
        self._colorspace: int | None = None
        self._color_range: int | None = None
        super().__init__(path, width=width, height=height, bit_depth=bit_depth, overwrite=overwrite, directory=False)

    def _open(self) -> None:
        with translate_errors(OutputWriteError, f"Cannot start writing {self.path}"):
            self._container = av.open(str(self._temp), "w", format=self._format)
            self._stream = self._add_video_stream(self._container)
        if self._metadata_from is not None:
            self._copy_metadata(self._metadata_from)
        if self._tracks_from is not None:
            self._tracks = TrackCarrier(self._container, self._tracks_from)

    def _add_video_stream(self, container: av.container.OutputContainer) -> VideoStream:
        codec = _stored_codec(container, self._codec, self.path)
        self._pixel_format = choose_pixel_format(av.Codec(codec, "w"), self.bit_depth)
        step_x, step_y = _subsampling(self._pixel_format)
        self._pad = (-self.height % step_y, -self.width % step_x)
        self.encoded_height = self.height + self._pad[0]
        self.encoded_width = self.width + self._pad[1]
        stream = container.add_stream(codec, rate=self.fps)
        stream.width, stream.height = self.encoded_width, self.encoded_height
        stream.pix_fmt = self._pixel_format
        stream.time_base = 1 / self.fps
        options = dict(_ENCODER_OPTIONS.get(codec, {}))
        if codec in _CRF_CODECS:
            options["crf"] = str(self._crf)
            stream.codec_context.bit_rate = 0  # constant quality, not a bitrate cap
        stream.codec_context.options = options
        if codec == "libx265" and self._format in ("mp4", "mov"):
            stream.codec_context.codec_tag = "hvc1"  # the tag Apple players require for HEVC
        if is_untimed(self._format):  # B-frames would be shown out of order
            stream.codec_context.max_b_frames = 0
        return stream

    def _copy_metadata(self, source: Path | VideoSource) -> None:
        """Best effort: rotation and colour tags of ``source``; problems are logged, never raised."""
        metadata = _metadata_of(source)
        if metadata is not None:
            self._apply_metadata(metadata[0].rotation, metadata[1])

    def _apply_metadata(self, rotation: int, color: ColorInfo) -> None:
        stream = self._stream
        if rotation:
            if hasattr(stream, "set_display_rotation"):
                stream.set_display_rotation(rotation)
            else:
                stream.metadata["rotate"] = str(rotation)
        context, unspecified = stream.codec_context, ColorInfo()
        if color.primaries != unspecified.primaries:
            context.color_primaries = color.primaries
        if color.trc != unspecified.trc:
            context.color_trc = color.trc
        if av.VideoFormat(self._pixel_format).is_rgb:
            return  # the YUV matrix and range do not apply to RGB output
        if color.colorspace != unspecified.colorspace:
            context.colorspace = self._colorspace = color.colorspace
        if color.color_range != unspecified.color_range:
            context.color_range = self._color_range = color.color_range

    def _write(self, frame: np.ndarray) -> None:
        if any(self._pad):
            frame = np.pad(frame, ((0, self._pad[0]), (0, self._pad[1]), (0, 0)), mode="edge")
        picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format=rgb_format(self.bit_depth))
        picture = picture.reformat(
            format=self._pixel_format, dst_colorspace=self._colorspace, dst_color_range=self._color_range
        )
        picture.pts = self.frames_written
        with translate_errors(OutputWriteError, f"Cannot encode frame {self.frames_written} of {self.path}"):
            self._mux(self._stream.encode(picture))

    def _mux(self, packets: list[av.Packet]) -> None:
        assert self._container is not None
        for packet in packets:
            self._container.mux(packet)
            if self._tracks is not None:
                self._tracks.mux_until(self._container, packet_time(packet))

    def _finish(self) -> None:
        assert self._container is not None
        with translate_errors(OutputWriteError, f"Cannot finish writing {self.path}"):
            self._mux(self._stream.encode(None))
            if self._tracks is not None:
                self._tracks.mux_until(self._container, None)
            self._container.close()
            if self._tracks is not None:
                self._tracks.close()

    def _cancel(self) -> None:
        for resource in (self._container, self._tracks):
            if resource is not None:
                with contextlib.suppress(Exception):
                    resource.close()
