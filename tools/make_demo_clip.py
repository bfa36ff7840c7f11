"""Writes amt_vfi/assets/demo.mp4: one second of moving shapes with a tone, small enough to ship.

python tools/make_demo_clip.py
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

WIDTH, HEIGHT, FPS, FRAMES = 320, 192, 12, 12
TARGET = Path(__file__).resolve().parents[1] / "amt_vfi" / "assets" / "demo.mp4"


def frame(index: int) -> np.ndarray:
    """A sky gradient, a ball on an arc and a sliding bar."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    image = np.zeros((HEIGHT, WIDTH, 3), np.float32)
    image[..., 2] = 0.55 + 0.4 * y / HEIGHT
    image[..., 1] = 0.35 + 0.3 * y / HEIGHT
    image[..., 0] = 0.15
    phase = index / FRAMES
    cx, cy = 40 + 240 * phase, 140 - 100 * math.sin(math.pi * phase)
    ball = (x - cx) ** 2 + (y - cy) ** 2 < 18**2
    image[ball] = (0.95, 0.75, 0.2)
    bar = (abs(x - (280 - 200 * phase)) < 10) & (y > 150)
    image[bar] = (0.2, 0.8, 0.3)
    return (image * 255).round().astype(np.uint8)


def main() -> None:
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(TARGET), "w") as container:
        video = container.add_stream("libx264", rate=FPS, options={"crf": "28", "preset": "veryslow"})
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        video.time_base = Fraction(1, FPS)
        audio = container.add_stream("aac", rate=22050, layout="mono")
        audio.bit_rate = 24000
        for index in range(FRAMES):
            picture = av.VideoFrame.from_ndarray(frame(index), format="rgb24")
            picture.pts = index
            container.mux(video.encode(picture))
        container.mux(video.encode())
        samples = 22050 * FRAMES // FPS
        tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(samples) / 22050)).astype(np.float32)
        for start in range(0, samples, 1024):
            chunk = av.AudioFrame.from_ndarray(tone[None, start : start + 1024], format="flt", layout="mono")
            chunk.sample_rate, chunk.pts = 22050, start
            container.mux(audio.encode(chunk))
        container.mux(audio.encode())
    print(f"wrote {TARGET} ({TARGET.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
