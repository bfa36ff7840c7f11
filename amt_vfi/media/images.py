"""Folders of numbered images as frame sources and sinks.

PNG, TIFF and DPX are decoded with FFmpeg's image decoders because Pillow reduces 16-bit colour images
to 8 bits (and cannot read DPX); the other formats (JPEG, WebP, BMP) only hold 8-bit data and go through
Pillow. Frames are turned upright by their EXIF orientation (phone and camera pictures), as image viewers
show them. Output frames (named as `naming` says) are PNGs, or DPX files of the input's bit depth when the
input is a DPX sequence (film scans and VFX plates stay in their format).
"""

from __future__ import annotations

import io
import logging
import re
import struct
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from ..errors import some_of
from .base import (
    IMAGE_EXTENSIONS,
    PNG,
    VIDEO_EXTENSIONS,
    FrameSink,
    FrameSource,
    PictureFormat,
    SourceInfo,
    dtype_for,
    is_high_bit_depth,
    rgb_format,
)
from .errors import (
    InconsistentFramesError,
    NotEnoughFramesError,
    OutputWriteError,
    UnreadableInputError,
    translate_errors,
)
from .naming import frame_file_name

log = logging.getLogger(__name__)

DEFAULT_IMAGE_FPS = Fraction(24)

# Formats that can carry 16-bit colour, recognised by their magic bytes (DPX: big- and little-endian).
_FFMPEG_DECODERS = {b"\x89PNG": "png", b"II*\x00": "tiff", b"MM\x00*": "tiff", b"SDPX": "dpx", b"XPDS": "dpx"}
_DPX_BYTE_ORDER = {b"SDPX": ">", b"XPDS": "<"}


def natural_key(name: str) -> list[str | int]:
    """Sort key that orders embedded numbers by value, so ``f2.png`` comes before ``f10.png``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name.lower())]


def list_images(folder: Path) -> list[Path]:
    """Visible image files of ``folder`` in natural order; other files are ignored."""
    with translate_errors(UnreadableInputError, f"Cannot list input folder {folder}; check permissions"):
        entries = [
            entry
            for entry in folder.iterdir()
            if not entry.name.startswith(".") and entry.suffix.lower() in IMAGE_EXTENSIONS and entry.is_file()
        ]
    return sorted(entries, key=lambda entry: (natural_key(entry.name), entry.name))


def _decode_with_ffmpeg(data: bytes, decoder: str) -> tuple[np.ndarray, av.VideoFormat]:
    """The RGB pixels (uint16 for deep pictures) and the pixel format the file holds."""
    context = av.CodecContext.create(decoder, "r")
    decoded = context.decode(av.Packet(data)) + context.decode(None)
    if not decoded:
        raise ValueError("no picture in file")
    frame = decoded[0]
    return frame.to_ndarray(format=rgb_format(16 if is_high_bit_depth(frame.format) else 8)), frame.format


def _dpx_output(stored: av.VideoFormat) -> PictureFormat:
    """DPX frames written at the depth the input stores: 8 and 10 bits as they are (FFmpeg's DPX encoder
    has no 12-bit RGB), deeper ones as 16 bits."""
    bits = max(component.bits for component in stored.components)
    pixel_format = "rgb24" if bits <= 8 else "gbrp10le" if bits == 10 else "rgb48le"
    return PictureFormat("dpx", pixel_format, ".dpx")


_EXIF_ORIENTATION = 0x0112
_SIDEWAYS = (5, 6, 7, 8)  # orientations whose upright picture swaps width and height


def _orientation(image: Image.Image) -> int:
    if image.format == "PNG":  # getexif() would decode the whole PNG to look for a chunk after the pixels
        exif = Image.Exif()
        if image.info.get("exif"):
            exif.load(image.info["exif"])
    else:
        exif = image.getexif()
    orientation = exif.get(_EXIF_ORIENTATION, 1)
    return orientation if orientation in range(1, 9) else 1


def _upright(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """The picture as it is meant to be seen (what Pillow's `ImageOps.exif_transpose` does)."""
    turned = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.transpose(1, 0, 2),
        6: lambda a: np.rot90(a, k=-1),
        7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],
        8: lambda a: np.rot90(a, k=1),
    }.get(orientation)
    return pixels if turned is None else np.ascontiguousarray(turned(pixels))


def _read(path: Path) -> tuple[np.ndarray, PictureFormat]:
    """The upright RGB pixels of one image, and how a folder output of such images is written."""
    with translate_errors(UnreadableInputError, f"Cannot read image {path}; is the file damaged?"):
        data = path.read_bytes()
        decoder = _FFMPEG_DECODERS.get(data[:4])
        if decoder == "dpx":  # no EXIF orientation in DPX
            pixels, stored = _decode_with_ffmpeg(data, decoder)
            return pixels, _dpx_output(stored)
        with Image.open(io.BytesIO(data)) as image:
            orientation = _orientation(image)
            pixels = _decode_with_ffmpeg(data, decoder)[0] if decoder else np.array(image.convert("RGB"))
        return _upright(pixels, orientation), PNG


def _has_alpha(path: Path) -> bool:
    """Whether an image carries transparency (read from its header; DPX, which Pillow cannot open, is
    taken as opaque)."""
    try:
        with Image.open(path) as image:
            return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    except OSError:
        return False


def read_image(path: Path) -> np.ndarray:
    """Decode one image to H x W x 3 RGB, upright, uint16 for files of more than 8 bits and uint8
    otherwise; alpha is dropped."""
    return _read(path)[0]


# A DPX image header holds pixels per line and lines per element (32 bits each) at bytes 772-779.
_DPX_SIZE_AT = 772


def _dpx_size(header: bytes) -> tuple[int, int]:
    """(width, height) from the first bytes of a DPX file."""
    if len(header) < _DPX_SIZE_AT + 8:
        raise ValueError("DPX header cut short")
    return struct.unpack(_DPX_BYTE_ORDER[header[:4]] + "II", header[_DPX_SIZE_AT : _DPX_SIZE_AT + 8])


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of the upright picture, from the file header, without decoding the pixels."""
    with translate_errors(UnreadableInputError, f"Cannot read image {path}; is the file damaged?"):
        with path.open("rb") as file:
            header = file.read(_DPX_SIZE_AT + 8)
        if header[:4] in _DPX_BYTE_ORDER:
            return _dpx_size(header)
        with Image.open(path) as image:
            width, height = image.size
            return (height, width) if _orientation(image) in _SIDEWAYS else (width, height)


def convert_depth(frame: np.ndarray, bit_depth: int) -> np.ndarray:
    """Bring a frame to the folder's bit depth, so a stray 8-bit file in a 16-bit folder still fits."""
    dtype = dtype_for(bit_depth)
    if frame.dtype == dtype:
        return frame
    if dtype == np.uint16:
        return frame.astype(np.uint16) * 257
    return ((frame.astype(np.uint32) + 128) // 257).astype(np.uint8)


class ImageFolderSource(FrameSource):
    """Frames from the images of a folder; the first image fixes the size and bit depth."""

    def __init__(self, folder: Path, fps: Fraction | None = None) -> None:
        files = list_images(folder)
        videos = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS) if not files else []
        if videos:
            raise NotEnoughFramesError(
                f"Input folder {folder} has no images but holds videos ({', '.join(videos[:3])}, ...): give "
                "each video as an input (a list file can name them), or the folder alone to do every video in it"
            )
        openexr = sorted(p.name for p in folder.iterdir() if p.suffix.lower() == ".exr")
        if openexr and len(files) < 2:
            raise UnreadableInputError(
                f"Input folder {folder} holds OpenEXR images, which amt-vfi does not read (their linear-light "
                "values above 1 would need a tone curve the network was not trained on); convert them to 16-bit "
                "TIFF or PNG, or to DPX, first"
            )
        if openexr:
            log.warning(
                "leaving out the OpenEXR images of %s (%s): amt-vfi does not read OpenEXR",
                folder,
                some_of(openexr, 3),
            )
        if len(files) < 2:
            found = "no images" if not files else f"only one image ({files[0].name})"
            kinds = ", ".join(sorted(IMAGE_EXTENSIONS))
            raise NotEnoughFramesError(
                f"Input folder {folder} has {found}; interpolation needs at least 2 frames ({kinds})"
            )
        first, picture_format = _read(files[0])
        height, width = first.shape[:2]
        if _has_alpha(files[0]):
            log.warning(
                "the images of %s have an alpha channel, which is left out: the output frames are opaque RGB "
                "(transparent areas show the colour stored under them)",
                folder,
            )
        for file in files[1:]:
            self._check_size(file, image_size(file), files[0], (width, height))
        self.files = files
        info = SourceInfo(
            width=width,
            height=height,
            fps=fps or DEFAULT_IMAGE_FPS,
            frame_count=len(files),
            bit_depth=16 if first.dtype == np.uint16 else 8,
            has_audio=False,
            is_video=False,
            variable_frame_rate=False,
            rotation=0,
            picture_format=picture_format,
        )
        super().__init__(folder, info)

    @staticmethod
    def _check_size(file: Path, size: tuple[int, int], first: Path, first_size: tuple[int, int]) -> None:
        if size != first_size:
            raise InconsistentFramesError(
                f"Image {file} is {size[0]}x{size[1]} but {first} is {first_size[0]}x{first_size[1]}; "
                "all frames in a folder must have the same size"
            )

    def _iter_from(self, start_index: int) -> Iterator[np.ndarray]:
        size = (self.info.width, self.info.height)
        for file in self.files[start_index:]:
            frame = read_image(file)
            self._check_size(file, (frame.shape[1], frame.shape[0]), self.files[0], size)
            yield convert_depth(frame, self.info.bit_depth)


def encode_picture(frame: np.ndarray, picture_format: PictureFormat = PNG) -> bytes:
    """The file bytes of an RGB frame; PNGs have 16 bits per channel for uint16 input (Pillow cannot
    write 16-bit RGB)."""
    deep = frame.dtype == np.uint16
    picture = av.VideoFrame.from_ndarray(frame, format=rgb_format(16 if deep else 8))
    encoder = av.CodecContext.create(picture_format.codec, "w")
    encoder.width, encoder.height = picture.width, picture.height
    encoder.pix_fmt = picture_format.pixel_format or ("rgb48be" if deep else "rgb24")
    return b"".join(bytes(packet) for packet in encoder.encode(picture) + encoder.encode(None))


class ImageFolderSink(FrameSink):
    """Writes numbered pictures (PNG unless `picture_format` says otherwise) into a temp folder that
    replaces the destination folder at the end.

    `rotation` (counter-clockwise degrees, a multiple of 90) is the display rotation of a source video:
    a picture file has no such tag, so the frames are turned upright as they are written.
    """

    def __init__(
        self,
        folder: Path,
        *,
        width: int,
        height: int,
        bit_depth: int,
        overwrite: bool,
        rotation: int = 0,
        picture_format: PictureFormat = PNG,
    ) -> None:
        super().__init__(folder, width=width, height=height, bit_depth=bit_depth, overwrite=overwrite, directory=True)
        self._quarter_turns = round(rotation / 90) % 4
        self._picture_format = picture_format

    def _open(self) -> None:
        """Nothing to open: each frame is its own file."""

    def _write(self, frame: np.ndarray) -> None:
        target = self._temp / frame_file_name(self.frames_written, self._picture_format.suffix)
        upright = np.ascontiguousarray(np.rot90(frame, self._quarter_turns)) if self._quarter_turns else frame
        with translate_errors(OutputWriteError, f"Cannot write {target.name} for output {self.path}"):
            target.write_bytes(encode_picture(upright, self._picture_format))

    def _finish(self) -> None:
        """Every frame is already on disk."""

    def _cancel(self) -> None:
        """Nothing to close; the temp folder is removed by the base class."""
