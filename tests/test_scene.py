"""Scene-cut detection: edits are found, camera pans of any speed and flat frames are not taken for edits."""

from __future__ import annotations

import pytest
import torch

from amt_vfi.engine import cut_detector


def natural_picture(height: int, width: int, seed: int) -> torch.Tensor:
    """H x W x 3 grey picture with the 1/f amplitude spectrum of natural images, in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    rows, columns = torch.fft.fftfreq(height)[:, None], torch.fft.rfftfreq(width)[None, :]
    frequency = torch.sqrt(rows**2 + columns**2)
    frequency[0, 0] = 1.0
    shape = (height, width // 2 + 1)
    spectrum = torch.complex(torch.randn(shape, generator=generator), torch.randn(shape, generator=generator))
    picture = torch.fft.irfft2(spectrum / frequency, s=(height, width))
    picture = (picture - picture.min()) / (picture.max() - picture.min())
    return picture[..., None].expand(height, width, 3)


def fine_texture(height: int, width: int, seed: int) -> torch.Tensor:
    """Detail a few pixels across everywhere and nothing larger (gravel, foliage, film grain)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, height // 4, width // 4, generator=generator)
    return torch.nn.functional.interpolate(coarse, size=(height, width), mode="bicubic")[0].permute(1, 2, 0)


@pytest.mark.parametrize("pan", [5, 20, 40, 80])
def test_a_camera_pan_is_not_a_cut_however_fast(pan: int) -> None:
    scene = natural_picture(360 + 200, 640 + 200, seed=1)
    frame0 = scene[100 : 100 + 360, 100 : 100 + 640]
    frame1 = scene[100 + pan // 2 : 100 + pan // 2 + 360, 100 - pan : 100 - pan + 640]
    assert not cut_detector()(frame0, frame1)


def test_a_pan_over_fine_texture_is_not_a_cut() -> None:
    texture = fine_texture(256 + 40, 448 + 40, seed=3)
    assert not cut_detector()(texture[:256, :448], texture[3 : 3 + 256, 5 : 5 + 448])


@pytest.mark.parametrize("size", [(360, 640), (64, 96)])
def test_an_edit_between_unrelated_pictures_is_a_cut(size: tuple[int, int]) -> None:
    assert cut_detector()(natural_picture(*size, seed=1), natural_picture(*size, seed=2))
    assert cut_detector()(fine_texture(*size, seed=1), fine_texture(*size, seed=2))


def test_flat_frames_differ_by_colour() -> None:
    black, grey = torch.zeros(90, 160, 3), torch.full((90, 160, 3), 0.5)
    red, green = torch.zeros(90, 160, 3), torch.zeros(90, 160, 3)
    red[..., 0], green[..., 1] = 1.0, 1.0
    picture = natural_picture(90, 160, seed=1)
    is_cut = cut_detector()
    assert not is_cut(black, black.clone())
    assert not is_cut(black, black + 0.01)  # a fade
    assert is_cut(black, grey)
    assert is_cut(red, green)  # colour slates of one brightness
    assert is_cut(black, picture)  # a cut from black


@pytest.mark.parametrize("bars", ["letterbox", "pillarbox"])
def test_black_bars_neither_hide_cuts_nor_make_pans_cuts(bars: str) -> None:
    def framed(picture: torch.Tensor) -> torch.Tensor:
        picture = picture.clone()
        if bars == "letterbox":
            picture[:50], picture[-50:] = 0.0, 0.0
        else:
            picture[:, :90], picture[:, -90:] = 0.0, 0.0
        return picture

    scene = natural_picture(360 + 100, 640 + 100, seed=4)
    assert cut_detector()(framed(natural_picture(360, 640, seed=1)), framed(natural_picture(360, 640, seed=2)))
    assert not cut_detector()(framed(scene[50:410, 50:690]), framed(scene[60:420, 30:670]))
