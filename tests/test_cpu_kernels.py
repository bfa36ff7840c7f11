"""The fused CPU kernels: the same numbers as the PyTorch code they stand in for, and a clean fallback."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch

from amt_vfi.checkpoints import standin_state_dict
from amt_vfi.network import AMT, VARIANTS, cpu_kernels
from amt_vfi.network.layers import warp

CAN_BUILD = (
    sys.platform.startswith("linux")
    and shutil.which("cc") is not None
    and "libgomp" in (Path("/proc/self/maps").read_text() if sys.platform.startswith("linux") else "")
)
needs_kernels = pytest.mark.skipif(not CAN_BUILD, reason="needs Linux, a C compiler and PyTorch's libgomp")


@pytest.fixture
def rebuilt(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """A fresh attempt at building the kernels (into an empty cache), undone afterwards."""
    monkeypatch.setenv("AMT_VFI_CACHE", str(tmp_path / "cache"))
    cpu_kernels._library.cache_clear()
    yield tmp_path / "cache"
    cpu_kernels._library.cache_clear()


@needs_kernels
def test_kernels_are_built_once_into_the_user_cache(rebuilt: Path) -> None:
    assert cpu_kernels.status().startswith(f"on ({rebuilt / 'kernels'}")
    assert cpu_kernels.usable(torch.zeros(1))
    assert len(list((rebuilt / "kernels").glob("cpu_kernels-*.so"))) == 1
    assert not list((rebuilt / "kernels").glob(".*partial"))


def test_without_a_compiler_the_network_runs_its_pytorch_code(rebuilt: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", str(rebuilt / "no-such-compiler"))
    assert cpu_kernels.status().startswith("off: ")
    assert not cpu_kernels.usable(torch.zeros(1))
    model = AMT(VARIANTS["amt-s"]).eval()
    frames = torch.rand(2, 1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        frame = model(frames[0], frames[1], 0.5)
    assert frame.shape == (1, 3, 64, 64) and torch.isfinite(frame).all()
    assert not list(rebuilt.glob("**/*.partial"))


def test_switched_off_or_outside_their_scope_the_kernels_are_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not cpu_kernels.usable(torch.zeros(1, dtype=torch.float16))
    assert not cpu_kernels.usable(torch.zeros(1, requires_grad=True))  # they have no backward pass
    with torch.no_grad():
        assert cpu_kernels.usable(torch.zeros(1, requires_grad=True)) == CAN_BUILD
    for value in ("0", "off", "False"):
        monkeypatch.setenv(cpu_kernels.SWITCH_ENV, value)
        assert not cpu_kernels.usable(torch.zeros(1))
        assert cpu_kernels.status() == f"off: AMT_VFI_CPU_KERNELS={value}"


@needs_kernels
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("size", [(7, 11), (1, 9), (6, 1)])
def test_fused_warp_equals_grid_sample(layout: torch.memory_format, size: tuple[int, int]) -> None:
    height, width = size
    generator = torch.Generator().manual_seed(height * 100 + width)
    image = torch.rand(3, 5, height, width, generator=generator).contiguous(memory_format=layout)
    # Inside, on pixel centres, and far beyond every border.
    flow = torch.randn(3, 2, height, width, generator=generator) * (max(size) / 2)
    flow[0, :, 0, 0] = torch.tensor([1.0, 0.0])
    flow[1] = 1e4
    out = torch.empty_like(image)
    cpu_kernels.warp(image, flow, out)
    assert (out - warp(image, flow)).abs().max() <= 1e-5


@needs_kernels
def test_fused_warp_reads_no_memory_outside_for_nan_flows() -> None:
    image = torch.rand(1, 4, 5, 6)
    flow = torch.full((1, 2, 5, 6), float("nan"))
    flow[0, 0, 1, 1] = -float("inf")
    flow[0, 1, 2, 2] = float("inf")
    out = torch.empty_like(image)
    cpu_kernels.warp(image, flow, out)
    assert out.min() >= image.min() and out.max() <= image.max()


@needs_kernels
def test_kernels_refuse_tensors_they_would_misread() -> None:
    image = torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match=r"a flow of shape \(2, 2, 8, 4\)"):
        cpu_kernels.warp(image, torch.zeros(2, 2, 8, 4), torch.empty_like(image))
    with pytest.raises(ValueError, match="torch.float64"):
        cpu_kernels.warp(image.double(), torch.zeros(2, 2, 8, 8), torch.empty_like(image))
    with pytest.raises(ValueError, match="16 predicted channels for 3 fields"):
        cpu_kernels.compose(
            torch.rand(2, 3, 8, 8), torch.rand(1, 16, 8, 8), torch.rand(2, 1, 2, 4, 4), torch.rand(1), 3
        )
    with pytest.raises(ValueError, match="a prediction of 1x5 windows"):  # no output row, nothing to upsample
        cpu_kernels.compose(
            torch.rand(2, 3, 0, 8), torch.rand(1, 96, 1, 5), torch.rand(2, 1, 2, 0, 4), torch.rand(1), 3
        )
    transformed, bias = cpu_kernels.winograd_weights(torch.rand(20, 16, 3, 3), torch.rand(20))
    with pytest.raises(ValueError, match="an input that is not channels-last"):
        cpu_kernels.winograd_conv(torch.rand(1, 16, 8, 8), transformed, bias, 20)
    with pytest.raises(ValueError, match=r"transformed weights of shape \(36, 16, 32\) for 24 -> 20 channels"):
        cpu_kernels.winograd_conv(
            torch.rand(1, 24, 8, 8).contiguous(memory_format=torch.channels_last), transformed, bias, 20
        )


@needs_kernels
@pytest.mark.parametrize("variant", ["amt-s", "amt-l"])  # 3 and 5 flow fields
def test_fused_decode_equals_the_pytorch_decode(variant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model = AMT(VARIANTS[variant]).eval()
    model.load_state_dict(standin_state_dict(variant))
    model.to(memory_format=torch.channels_last)
    generator = torch.Generator().manual_seed(4)
    img0, img1 = torch.rand(2, 2, 3, 80, 144, generator=generator)
    img1 = img0.roll((3, -5), dims=(2, 3)) * 0.8 + img1 * 0.2  # motion, so the flows are not all zero
    embt = torch.tensor([0.25, 0.25, 0.6, 0.6]).view(-1, 1, 1, 1)
    calls = []
    for name in ("compose", "comb", "sigmoid_"):
        kernel = getattr(cpu_kernels, name)
        monkeypatch.setattr(
            cpu_kernels, name, lambda *args, kernel=kernel, name=name: calls.append(name) or kernel(*args)
        )
    with torch.inference_mode():
        features = model.encode(img0, img1, time_steps=2)
        fused = model.decode(features, embt)
        monkeypatch.setenv(cpu_kernels.SWITCH_ENV, "0")
        plain = model.decode(features, embt)
    assert sorted(calls) == ["comb", "compose", "sigmoid_"]  # each once, and none with the switch off
    assert (fused - plain).abs().max() <= 2e-5


@needs_kernels
def test_fused_correlation_is_written_for_the_next_convolution(monkeypatch: pytest.MonkeyPatch) -> None:
    from amt_vfi.network.correlation import WindowCorrelation

    generator = torch.Generator().manual_seed(6)
    fmap0, fmap1 = torch.randn(2, 1, 16, 12, 20, generator=generator)
    centres = torch.rand(2, 2, 2, 12, 20, generator=generator) * 24 - 2
    lookup = WindowCorrelation(fmap0, fmap1, volume_levels=2)
    fused = lookup(*centres)
    assert fused.is_contiguous(memory_format=torch.channels_last)  # what the update blocks' 1x1 convolution reads
    # Any number of queries: query q belongs to pair q % pairs.
    pairs = WindowCorrelation(torch.cat([fmap0, fmap1]), torch.cat([fmap1, fmap0]), volume_levels=2)
    three = torch.rand(2, 3, 2, 12, 20, generator=generator) * 24 - 2
    fused_three = pairs(*three)
    monkeypatch.setenv(cpu_kernels.SWITCH_ENV, "0")
    assert (fused_three - pairs(*three)).abs().max() <= 1e-5
    with pytest.raises(ValueError, match="an output of shape"):
        cpu_kernels.correlation(
            torch.stack(list(centres)),
            1,
            [lookup.sources] * 8,
            [cpu_kernels.ON_DEMAND] * 8,
            lookup.sources,
            torch.empty(2, 8, 12, 20),
        )


@needs_kernels
def test_a_damaged_library_in_the_cache_is_built_again(rebuilt: Path) -> None:
    built = cpu_kernels._compiled_library()
    built.write_bytes(b"not a shared library")
    assert cpu_kernels.status() == f"on ({built})"
    assert built.read_bytes().startswith(b"\x7fELF")


@needs_kernels
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_prelu_in_place_equals_prelu(layout: torch.memory_format) -> None:
    from amt_vfi.network.layers import PReLUInPlace

    layer = PReLUInPlace(5)
    with torch.no_grad():
        layer.weight.copy_(torch.linspace(-0.5, 0.5, 5))
    x = torch.randn(2, 5, 3, 7, generator=torch.Generator().manual_seed(8)).contiguous(memory_format=layout)
    expected = torch.nn.functional.prelu(x, layer.weight.detach())
    with torch.inference_mode():
        result = layer(x)
    assert result.data_ptr() == x.data_ptr() and torch.equal(result, expected)  # in place, same numbers
    trained = x.clone().requires_grad_()
    layer(trained).sum().backward()  # with gradients wanted it is PyTorch's PReLU, input untouched
    assert trained.grad is not None and layer.weight.grad is not None


@needs_kernels
def test_level0_read_transposed_serves_a_later_pytorch_lookup_too(monkeypatch: pytest.MonkeyPatch) -> None:
    from amt_vfi.network.correlation import WindowCorrelation

    generator = torch.Generator().manual_seed(10)
    fmap0, fmap1 = torch.randn(2, 2, 16, 10, 14, generator=generator)
    centres = torch.rand(2, 4, 2, 10, 14, generator=generator) * 18 - 2
    lookup = WindowCorrelation(fmap0, fmap1, volume_levels=4)  # built for the kernel: one level-0 GEMM
    fused = lookup(*centres)
    monkeypatch.setenv(cpu_kernels.SWITCH_ENV, "0")
    plain = lookup(*centres)  # the PyTorch lookup fills the left-out volume first
    reference = WindowCorrelation(fmap0, fmap1, volume_levels=4)(*centres)  # built without the kernel
    assert (plain - reference).abs().max() <= 1e-6
    assert (fused - reference).abs().max() <= 1e-5


def _comb_block(channels: int, kernel: int, seed: int) -> torch.nn.Sequential:
    """A comb_block of AMT's shape (C -> 2C -> 3, 'same' K x K convolutions), random PReLU slopes of both signs."""
    torch.manual_seed(seed)
    block = torch.nn.Sequential(
        torch.nn.Conv2d(channels, 2 * channels, kernel, padding=kernel // 2),
        torch.nn.PReLU(2 * channels),
        torch.nn.Conv2d(2 * channels, 3, kernel, padding=kernel // 2),
    )
    with torch.no_grad():
        block[1].weight.uniform_(-0.5, 0.5)
    return block


@needs_kernels
@pytest.mark.parametrize(
    ("channels", "kernel", "size"),
    [(9, 3, (37, 45)), (15, 7, (12, 70)), (9, 3, (1, 1)), (15, 7, (2, 3)), (9, 3, (5, 33))],
)
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_fused_comb_block_equals_the_convolutions(
    channels: int, kernel: int, size: tuple[int, int], layout: torch.memory_format
) -> None:
    block = _comb_block(channels, kernel, seed=channels + size[1])
    generator = torch.Generator().manual_seed(size[0])
    candidates = torch.randn(2, channels, *size, generator=generator).contiguous(memory_format=layout)
    average = torch.rand(2, 3, *size, generator=generator)
    with torch.inference_mode():
        expected = (average + block(candidates)).clamp(0.0, 1.0)
        result = cpu_kernels.comb(candidates, average, block[0], block[1].weight, block[2])
    assert 0.0 < expected.mean() < 1.0  # both clamps and the values between are exercised
    assert result.shape == expected.shape and (result - expected).abs().max() <= 1e-5  # float rounding


@needs_kernels
def test_fused_comb_block_refuses_shapes_it_would_misread() -> None:
    block = _comb_block(4, 3, seed=0)  # 8 hidden channels: not whole groups of the kernel's vector loop
    with pytest.raises(ValueError, match=r"a first convolution of shape \(8, 4, 3, 3\)"):
        cpu_kernels.comb(torch.rand(1, 4, 8, 8), torch.rand(1, 3, 8, 8), block[0], block[1].weight, block[2])
    block = _comb_block(9, 3, seed=0)
    with pytest.raises(ValueError, match=r"an average of shape \(1, 3, 8, 7\)"):
        cpu_kernels.comb(torch.rand(1, 9, 8, 8), torch.rand(1, 3, 8, 7), block[0], block[1].weight, block[2])


@needs_kernels
def test_fused_sigmoid_of_a_channel_slice_in_place() -> None:
    prediction = torch.randn(2, 24, 9, 13, generator=torch.Generator().manual_seed(3)).mul_(10)
    prediction = prediction.contiguous(memory_format=torch.channels_last)
    prediction[0, 17, 2, 3] = float("nan")
    prediction[0, 18, 2, 3:7] = torch.tensor([1e30, -1e30, 95.0, -95.0])
    original = prediction.clone()
    masks = prediction[:, 16:20]
    expected = torch.sigmoid(masks)
    assert cpu_kernels.sigmoid_(masks).data_ptr() == masks.data_ptr()
    assert torch.isnan(masks[0, 1, 2, 3]) and torch.isfinite(masks[:, :, :, 4:]).all()
    assert (masks - expected).nan_to_num().abs().max() <= 2e-7  # also where the logits are huge
    assert torch.equal(prediction[:, :16], original[:, :16]) and torch.equal(prediction[:, 20:], original[:, 20:])
    planar = torch.linspace(-30, 30, 2001).view(1, 1, 1, -1)
    assert (cpu_kernels.sigmoid_(planar.clone()) - torch.sigmoid(planar)).abs().max() <= 2e-7


@needs_kernels
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("relu", [False, True])
def test_fused_instance_norm_in_place(layout: torch.memory_format, relu: bool) -> None:
    from amt_vfi.network.encoders import instance_norm

    generator = torch.Generator().manual_seed(11)
    x = (torch.randn(3, 37, 9, 23, generator=generator) * 40 + 300).contiguous(memory_format=layout)
    expected = torch.nn.functional.instance_norm(x)
    expected = expected.relu() if relu else expected
    with torch.inference_mode():
        result = instance_norm(x, relu=relu)
    assert result.data_ptr() == x.data_ptr() and result.is_contiguous(memory_format=layout)
    assert (result - expected).abs().max() <= 2e-5  # a mean 7 standard deviations away loses nothing
    assert (result.min() == 0.0) == relu
    flat = cpu_kernels.instance_norm_(torch.full((2, 3, 1, 4), 5.0), 1e-5, relu)
    assert torch.equal(flat, torch.zeros(2, 3, 1, 4))  # no variance: zeros, not NaN


@needs_kernels
@pytest.mark.parametrize(
    ("batch", "in_channels", "out_channels", "size"),
    [(2, 32, 60, (37, 45)), (1, 60, 60, (8, 9)), (3, 132, 20, (1, 1)), (1, 33, 17, (5, 2))],
)
def test_winograd_convolution_equals_the_direct_one(
    batch: int, in_channels: int, out_channels: int, size: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    from amt_vfi.network.layers import conv

    torch.manual_seed(in_channels)
    layer = conv(in_channels, out_channels)
    x = torch.randn(batch, in_channels, *size).contiguous(memory_format=torch.channels_last)
    calls = []
    kernel = cpu_kernels.winograd_conv
    monkeypatch.setattr(cpu_kernels, "winograd_conv", lambda *args: calls.append(1) or kernel(*args))
    with torch.inference_mode():
        result = layer(x)
        expected = torch.nn.functional.conv2d(x, layer.weight, layer.bias, padding=1)
    assert calls and result.is_contiguous(memory_format=torch.channels_last)
    assert (result - expected).abs().max() <= 2e-5 * expected.abs().max()  # F(4x4, 3x3) in float32


@needs_kernels
def test_winograd_convolution_follows_its_weights_and_knows_its_scope(monkeypatch: pytest.MonkeyPatch) -> None:
    from amt_vfi.network.layers import conv

    layer = conv(40, 24)
    x = torch.randn(1, 40, 6, 7).contiguous(memory_format=torch.channels_last)
    calls = []
    kernel = cpu_kernels.winograd_conv
    monkeypatch.setattr(cpu_kernels, "winograd_conv", lambda *args: calls.append(1) or kernel(*args))
    with torch.inference_mode():
        layer(x)
    layer.load_state_dict({"weight": torch.randn(24, 40, 3, 3), "bias": torch.randn(24)})  # as a checkpoint does
    with torch.inference_mode():
        result = layer(x)
        expected = torch.nn.functional.conv2d(x, layer.weight, layer.bias, padding=1)
        assert (result - expected).abs().max() <= 2e-5 * expected.abs().max()  # not the old weights' transform
        assert len(calls) == 2
        layer(x.contiguous())  # channels-first input, a thin or a strided layer: oneDNN's convolution
        conv(8, 24)(torch.randn(1, 8, 6, 7).contiguous(memory_format=torch.channels_last))
        conv(40, 24, stride=2)(x)
    assert len(calls) == 2
    assert set(layer.state_dict()) == {"weight", "bias"}  # the transformed weights are no checkpoint keys
    assert "_winograd" in layer.__dict__
    layer.half()  # as when moved to a GPU: the transformed weights go with the old ones
    assert "_winograd" not in layer.__dict__


@needs_kernels
def test_winograd_convolution_of_weights_made_in_inference_mode() -> None:
    from amt_vfi.network.layers import conv

    x = torch.randn(1, 32, 5, 6).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        layer = conv(32, 16)  # inference tensors: no version counter to key the transformed weights on
        layer(x)
        layer.weight.mul_(2.0)
        layer.bias.zero_()
        result = layer(x)
        expected = torch.nn.functional.conv2d(x, layer.weight, layer.bias, padding=1)
    assert (result - expected).abs().max() <= 2e-5 * expected.abs().max()


def test_load_model_in_inference_mode_gives_ordinary_weights(tmp_path: Path) -> None:
    import amt_vfi

    path = tmp_path / "amt-s.pth"
    torch.save({"state_dict": standin_state_dict("amt-s")}, path)
    with torch.inference_mode():
        model = amt_vfi.load_model(path)
    assert not any(parameter.is_inference() for parameter in model.parameters())


@needs_kernels
@pytest.mark.parametrize("size", [(9, 14), (1, 1), (4, 3)])
def test_winograd_2x2_convolution_of_the_phases(size: tuple[int, int]) -> None:
    torch.manual_seed(size[1])
    weight, bias = torch.randn(96, 60, 2, 2) * 0.1, torch.randn(96)
    x = torch.randn(2, 60, *size).contiguous(memory_format=torch.channels_last)
    result = cpu_kernels.winograd_conv(x, *cpu_kernels.winograd_weights(weight, bias), 96)
    expected = torch.nn.functional.conv2d(x, weight, bias, padding=1)  # (H+1) x (W+1)
    assert result.shape == expected.shape and result.is_contiguous(memory_format=torch.channels_last)
    assert (result - expected).abs().max() <= 1e-5 * expected.abs().max()
