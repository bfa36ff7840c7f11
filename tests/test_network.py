"""The network is AMT: official keys and shapes, golden outputs, and the exactness of our shortcuts."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import DATA, load_golden

from amt_vfi.checkpoints import standin_state_dict
from amt_vfi.network import AMT, CHECKPOINT_VARIANTS, VARIANTS, correlation, cpu_kernels
from amt_vfi.network.correlation import WindowCorrelation, build_correlation, volume_bytes

MODES = ("all-pairs", "on-demand")


@pytest.mark.parametrize("name", ["amt-s", "amt-l", "amt-g", "gopro_amt-s"])
def test_state_dict_matches_official_manifest(name: str) -> None:
    manifest = json.loads((DATA / "manifests" / f"{name}.json").read_text())
    model = AMT(CHECKPOINT_VARIANTS[name])
    assert {key: list(value.shape) for key, value in model.state_dict().items()} == manifest


@pytest.fixture(scope="module")
def models() -> dict[str, AMT]:
    built = {}
    for name in ("amt-s", "amt-l"):
        model = AMT(VARIANTS[name])
        model.load_state_dict(standin_state_dict(name))
        built[name] = model.eval()
    return built


@pytest.fixture(params=["fused CPU kernels where built", "PyTorch only"])
def kernels(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test with the fused CPU kernels (where they can be built) and with PyTorch operations only."""
    if request.param == "PyTorch only":
        monkeypatch.setenv("AMT_VFI_CPU_KERNELS", "0")
    return request.param


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", ["m1", "m2"])
def test_golden_model_cases(models: dict[str, AMT], golden_cases: dict, case: str, mode: str, kernels: str) -> None:
    spec = next(c for c in golden_cases["model"] if c["id"] == case)
    data = load_golden(case)
    model = models[spec["model"]]
    with torch.inference_mode():
        features = model.encode(data["img0"], data["img1"], spec["scale"], correlation=mode)
        output = model.decode(features, data["embt"])
    diff = (output - data["imgt_pred"]).abs()
    assert output.shape == data["imgt_pred"].shape
    assert diff.max() <= 5e-4
    assert diff.mean() <= 2e-5


def _random_features(seed: int, batch: int = 1, dim: int = 16, h: int = 24, w: int = 20):
    generator = torch.Generator().manual_seed(seed)
    fmap0 = torch.randn(batch, dim, h, w, generator=generator)
    fmap1 = torch.randn(batch, dim, h, w, generator=generator)
    # Centres that wander inside, near and beyond the borders, with fractional parts.
    centres = [torch.rand(batch * 3, 2, h, w, generator=generator) * (w + 16) - 8 for _ in range(2)]
    return fmap0, fmap1, centres


def _brute_force_lookup(fmap_src: torch.Tensor, fmap_tgt: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Reference semantics written out point by point: pooled volume, zero-padded bilinear, x slow."""
    batch, dim, h, w = fmap_src.shape
    volume = torch.einsum("bdp,bdq->bpq", fmap_src.flatten(2), fmap_tgt.flatten(2)) / dim**0.5
    planes = volume.view(batch, h * w, h, w)
    steps = centres.shape[0] // batch
    out = torch.zeros(centres.shape[0], 4 * 49, h, w)
    for level in range(4):
        level_h, level_w = planes.shape[-2:]
        for n in range(centres.shape[0]):
            plane = planes[n % batch]
            for a in range(7):
                for b in range(7):
                    x = centres[n, 0] / 2**level + (a - 3)
                    y = centres[n, 1] / 2**level + (b - 3)
                    x0, y0 = x.floor(), y.floor()
                    value = torch.zeros(h, w)
                    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
                        xi, yi = (x0 + dx).long(), (y0 + dy).long()
                        weight = (1 - (x - x0 - dx).abs()) * (1 - (y - y0 - dy).abs())
                        inside = (xi >= 0) & (xi < level_w) & (yi >= 0) & (yi < level_h)
                        idx = yi.clamp(0, level_h - 1) * level_w + xi.clamp(0, level_w - 1)
                        sampled = plane.flatten(1).gather(1, idx.flatten().unsqueeze(1)).view(h, w)
                        value += weight * sampled * inside
                    out[n, level * 49 + a * 7 + b] = value
        planes = torch.nn.functional.avg_pool2d(planes, 2, 2)
    assert steps >= 1
    return out


@pytest.mark.parametrize("volume_levels", [0, 1, 2, 3, 4])
def test_every_volume_split_equals_brute_force(volume_levels: int, kernels: str) -> None:
    fmap0, fmap1, (fwd, bwd) = _random_features(0)
    expected = torch.cat([_brute_force_lookup(fmap0, fmap1, fwd), _brute_force_lookup(fmap1, fmap0, bwd)], 1)
    got = WindowCorrelation(fmap0, fmap1, volume_levels)(fwd, bwd)
    assert got.shape == (3, 392, 24, 20)
    assert (got - expected).abs().max() <= 1e-5


def test_row_by_row_gathers_equal_strided_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMT_VFI_CPU_KERNELS", "0")  # both are PyTorch paths
    fmap0, fmap1, (fwd, bwd) = _random_features(5, batch=2)
    fwd, bwd = fwd[:4], bwd[:4]
    expected = [WindowCorrelation(fmap0, fmap1, levels)(fwd, bwd) for levels in (0, 2)]
    monkeypatch.setattr(correlation, "STRIDED_GATHER_DEVICES", ())  # the path devices such as MPS take
    for levels, want in zip((0, 2), expected, strict=True):
        assert torch.equal(WindowCorrelation(fmap0, fmap1, levels)(fwd, bwd), want)


def test_correlation_modes_agree_on_odd_sizes_and_batches() -> None:
    fmap0, fmap1, (fwd, bwd) = _random_features(1, batch=2, dim=84, h=17, w=23)
    fwd, bwd = fwd[:4], bwd[:4]
    all_pairs = WindowCorrelation(fmap0, fmap1, 4)(fwd, bwd)
    on_demand = WindowCorrelation(fmap0, fmap1, 0)(fwd, bwd)
    assert (all_pairs - on_demand).abs().max() <= 1e-5


def test_non_finite_centres_sample_zeros(kernels: str) -> None:
    fmap0, fmap1, (fwd, bwd) = _random_features(4)
    fwd[0, :, :5] = float("nan")
    bwd[1, 0, :, :3] = float("inf")
    for levels in (0, 4):
        got = WindowCorrelation(fmap0, fmap1, levels)(fwd, bwd)
        assert torch.isfinite(got).all()
        assert got[0, :196, :5].abs().max() == 0
        assert got[1, 196:, :, :3].abs().max() == 0


def test_auto_mode_keeps_the_coarsest_volumes_that_fit() -> None:
    fmap0, fmap1, _ = _random_features(2)
    assert volume_bytes(1, 24, 20, 4) == 2 * 480 * (480 + 120 + 30 + 6) * 4
    assert build_correlation(fmap0, fmap1, "auto", budget_bytes=1 << 30).volume_levels == 4
    assert build_correlation(fmap0, fmap1, "auto", budget_bytes=volume_bytes(1, 24, 20, 2)).volume_levels == 2
    assert build_correlation(fmap0, fmap1, "auto", budget_bytes=1000).volume_levels == 0
    assert build_correlation(fmap0, fmap1, "all-pairs", budget_bytes=1000).volume_levels == 4
    assert build_correlation(fmap0, fmap1, "on-demand", budget_bytes=1 << 30).volume_levels == 0
    with pytest.raises(ValueError, match="correlation mode"):
        build_correlation(fmap0, fmap1, "fast")


def _frames(seed: int, h: int = 128, w: int = 160) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 3, h // 8, w // 8 + 2, generator=generator)
    base = torch.nn.functional.interpolate(base, size=(h, w + 16), mode="bilinear", align_corners=False)
    return base[..., :w].contiguous(), base[..., 6 : w + 6].contiguous()


def test_model_output_equal_across_correlation_modes(models: dict[str, AMT]) -> None:
    img0, img1 = _frames(3)
    embt = torch.full((1, 1, 1, 1), 0.4)
    with torch.inference_mode():
        outputs = [models["amt-s"].decode(models["amt-s"].encode(img0, img1, correlation=m), embt) for m in MODES]
    assert (outputs[0] - outputs[1]).abs().max() <= 1e-4


@pytest.mark.parametrize("mode", MODES)
def test_time_step_batch_equals_separate_forwards(models: dict[str, AMT], mode: str) -> None:
    model = models["amt-l"]
    img0, img1 = _frames(4)
    times = [0.25, 0.5, 0.75]
    model.correlation_mode = mode
    try:
        batched = model.interpolate(img0, img1, times)
        with torch.inference_mode():
            separate = torch.cat([model(img0, img1, torch.full((1, 1, 1, 1), t)) for t in times])
    finally:
        model.correlation_mode = "auto"
    assert batched.shape == (3, 3, 128, 160)
    assert (batched - separate).abs().max() <= 1e-5


def test_scale_factor_half_runs_at_reduced_size(models: dict[str, AMT]) -> None:
    img0, img1 = _frames(5, h=256, w=256)
    model = models["amt-s"]
    seen: list[tuple[int, ...]] = []
    hook = model.feat_encoder.register_forward_hook(lambda module, args, out: seen.append(tuple(args[0].shape)))
    try:
        with torch.inference_mode():
            half = model(img0, img1, torch.full((1, 1, 1, 1), 0.5), scale_factor=0.5)
            full = model(img0, img1, torch.full((1, 1, 1, 1), 0.5))
    finally:
        hook.remove()
    assert seen == [(2, 3, 128, 128), (2, 3, 256, 256)]  # the encoder saw half the size, then the whole
    assert half.shape == full.shape == (1, 3, 256, 256)
    assert torch.isfinite(half).all()
    assert 0 < (half - full).abs().mean() < 0.05


def test_unpadded_size_is_refused_with_advice(models: dict[str, AMT]) -> None:
    img = torch.rand(1, 3, 130, 200)
    with pytest.raises(ValueError, match="multiple of 16: pad the frames first"):
        models["amt-s"](img, img, torch.full((1, 1, 1, 1), 0.5))


@pytest.mark.parametrize(("size", "scale"), [((32, 32), 1.0), ((48, 256), 1.0), ((64, 96), 0.5)])
def test_working_sizes_below_the_minimum_are_refused_with_advice(models: dict[str, AMT], size, scale) -> None:
    img = torch.rand(1, 3, *size)
    with pytest.raises(ValueError, match="below the 64 px per side .*Interpolator pads frames of any size"):
        models["amt-s"](img, img, torch.full((1, 1, 1, 1), 0.5), scale_factor=scale)


def test_integer_frames_and_non_finite_times_are_refused(models: dict[str, AMT]) -> None:
    model = models["amt-s"]
    img0, img1 = _frames(8, h=64, w=64)
    as_bytes = (img0 * 255).to(torch.uint8)
    with pytest.raises(ValueError, match=r"floating-point tensors with values in \[0, 1\], got torch.uint8"):
        model(as_bytes, as_bytes, 0.5)  # gave an all-white frame
    with pytest.raises(ValueError, match="time steps must be finite numbers .*got nan"), torch.inference_mode():
        model(img0, img1, float("nan"))
    with pytest.raises(ValueError, match="time steps must be finite numbers .*got 0.5, inf"):
        model.interpolate(img0, img1, [0.5, float("inf")])


def test_the_smallest_working_size_gives_finite_frames(models: dict[str, AMT]) -> None:
    img0, img1 = _frames(6, h=64, w=64)
    with torch.inference_mode():
        assert torch.isfinite(models["amt-s"](img0, img1, torch.full((1, 1, 1, 1), 0.5))).all()


def test_time_steps_as_numbers_and_none_at_all(models: dict[str, AMT]) -> None:
    model = models["amt-s"]
    img0, img1 = _frames(7)
    pairs0, pairs1 = torch.cat([img0, img1]), torch.cat([img1, img0])
    with torch.inference_mode():
        tensor = model(pairs0, pairs1, torch.full((2, 1, 1, 1), 0.3))
        assert torch.equal(model(pairs0, pairs1, 0.3), tensor)  # one number: the time of every pair
        features = model.encode(img0, img1)
        assert (model.decode(features, [0.3]) - tensor[:1]).abs().max() <= 1e-5  # batch sizes round apart
    assert model.interpolate(img0, img1, []).shape == (0, 3, 128, 160)


def test_mps_safe_warp_equals_border_warp(monkeypatch: pytest.MonkeyPatch) -> None:
    from amt_vfi.network.layers import warp

    generator = torch.Generator().manual_seed(6)
    image = torch.rand(2, 3, 20, 30, generator=generator)
    flow = (torch.rand(2, 2, 20, 30, generator=generator) - 0.5) * 40
    padding_modes: list[str] = []
    real_grid_sample = torch.nn.functional.grid_sample

    def spy(*args, **kwargs):
        padding_modes.append(kwargs["padding_mode"])
        return real_grid_sample(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "grid_sample", spy)
    assert (warp(image, flow) - warp(image, flow, clamp_coordinates=True)).abs().max() <= 1e-6
    assert padding_modes == ["border", "zeros"]  # the safe variant avoids "border", which some MPS builds lack


def test_large_frames_encoded_one_at_a_time_give_the_same_frame(
    models: dict[str, AMT], monkeypatch: pytest.MonkeyPatch
) -> None:
    from amt_vfi.network import model as model_module

    img0, img1 = _frames(7)
    embt = torch.full((1, 1, 1, 1), 0.5)
    with torch.inference_mode():
        together = models["amt-s"](img0, img1, embt)
        monkeypatch.setattr(model_module, "SEPARATE_ENCODING_VALUES", 0)
        apart = models["amt-s"](img0, img1, embt)
    assert (together - apart).abs().max() <= 1e-5


def test_row_bands_equal_the_whole_frame() -> None:
    from amt_vfi.network.layers import in_row_bands

    layer = AMT(VARIANTS["amt-l"]).comb_block.eval()  # two 7x7 convolutions: radius 6
    x = torch.randn(2, 15, 75, 33)
    with torch.inference_mode():
        whole = layer(x)
        banded = in_row_bands(layer, x, halo=6, band_pixels=33 * 10)
    assert banded.shape == whole.shape
    assert (banded - whole).abs().max() <= 1e-5


def test_instance_norm_statistics_survive_float16() -> None:
    from amt_vfi.network.encoders import instance_norm

    x = torch.zeros(1, 2, 64, 64)
    x[0, 0, 3, 5] = 300.0  # squared, 9e4: beyond float16's largest value (65504)
    expected = torch.nn.functional.instance_norm(x)
    half = instance_norm(x.half())
    assert half.dtype == torch.float16 and torch.isfinite(half).all()
    assert (half.float() - expected).abs().max() < 0.05


def test_flows_stay_float32_in_a_bfloat16_network() -> None:
    model = AMT(VARIANTS["amt-s"]).eval()
    model.load_state_dict(standin_state_dict("amt-s"))
    model.to(torch.bfloat16)
    generator = torch.Generator().manual_seed(3)
    img0, img1 = torch.rand(2, 1, 3, 128, 128, generator=generator)
    with torch.inference_mode():
        features = model.encode(img0, img1)
        context = features.context
        flow0, flow1, feature = model.decoder4(context[3][:1], context[3][1:], torch.full((1, 1, 1, 1), 0.5))
        assert (flow0.dtype, flow1.dtype, feature.dtype) == (torch.float32, torch.float32, torch.bfloat16)
        flow0, flow1, feature = model.decoder3(feature, context[2], flow0, flow1)
        assert (flow0.dtype, feature.dtype) == (torch.float32, torch.bfloat16)
        frame = model.decode(features, torch.full((1, 1, 1, 1), 0.5))
    assert frame.dtype == torch.float32 and torch.isfinite(frame).all()


def test_cached_constants_serve_inference_and_autograd_alike() -> None:
    from amt_vfi.network.layers import device_constant, warp

    image = torch.rand(1, 3, 16, 16)
    with torch.inference_mode():
        warp(image, torch.zeros(1, 2, 16, 16))  # makes the constants of this size inside inference mode
    flow = torch.zeros(1, 2, 16, 16, requires_grad=True)
    warp(image, flow).sum().backward()  # and they still serve autograd
    assert flow.grad is not None and torch.isfinite(flow.grad).all()
    assert device_constant([1.0, 2.0], torch.float32, "cpu") is device_constant((1.0, 2.0), torch.float32, "cpu")


def test_side_channels_refined_in_place_keep_autograd_working() -> None:
    from amt_vfi.network.layers import SideChannelResBlock

    torch.manual_seed(5)
    block = SideChannelResBlock(12, 4)
    x = torch.randn(2, 12, 9, 10, requires_grad=True)

    def split_and_cat(t: torch.Tensor, layer: torch.nn.Module) -> torch.Tensor:
        keep, side = t.split([8, 4], dim=1)
        return torch.cat([keep, layer(side)], dim=1)

    out = split_and_cat(block.conv1(x), block.conv2)
    out = split_and_cat(block.conv3(out), block.conv4)
    expected = block.prelu(x + block.conv5(out))
    (expected_grad,) = torch.autograd.grad(expected.square().sum(), x)
    result = block(x)  # the side channels are overwritten in place: the backward pass must still be right
    result.square().sum().backward()
    assert (result - expected).abs().max() <= 1e-6
    assert (x.grad - expected_grad).abs().max() <= 1e-5
    with torch.inference_mode():
        channels_last = x.detach().contiguous(memory_format=torch.channels_last)
        assert (block(channels_last) - expected).abs().max() <= 1e-6


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])  # oneDNN / Winograd
def test_decoder1_phases_interleave_to_its_transposed_convolution(
    layout: torch.memory_format, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoder = AMT(VARIANTS["amt-l"]).decoder1.eval().to(memory_format=layout)  # 5 flow fields
    generator = torch.Generator().manual_seed(9)
    feature = torch.randn(2, decoder.convblock[0][0].in_channels - 2 * 44 - 4, 8, 12, generator=generator)
    feature = feature.contiguous(memory_format=layout)
    context = torch.randn(4, 44, 8, 12, generator=generator).contiguous(memory_format=layout)
    flow0, flow1 = torch.randn(2, 2, 2, 8, 12, generator=generator)
    calls = []
    winograd = cpu_kernels.winograd_conv
    monkeypatch.setattr(cpu_kernels, "winograd_conv", lambda *args: calls.append(args[1].shape[0]) or winograd(*args))
    with torch.inference_mode():
        expected = decoder.predict(feature, context, flow0, flow1)
        phases = decoder.predict_phases(feature, context, flow0, flow1)
        assert phases.shape == (2, 4 * 40, 9, 13)
        interleaved = torch.nn.functional.pixel_shuffle(phases, 2)[..., 1:-1, 1:-1]
        assert (interleaved - expected).abs().max() <= 1e-5
        decoder.load_state_dict({key: value * 0.5 for key, value in decoder.state_dict().items()})
        changed = torch.nn.functional.pixel_shuffle(decoder.predict_phases(feature, context, flow0, flow1), 2)
    assert (changed[..., 1:-1, 1:-1] - decoder.predict(feature, context, flow0, flow1)).abs().max() <= 1e-5
    phase_convolutions = calls.count(16)  # 4 x 4 positions: the 2x2 convolution of the phases
    assert phase_convolutions == (2 if layout == torch.channels_last and cpu_kernels.usable(feature) else 0)
