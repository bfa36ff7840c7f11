"""The engine: golden equality, any frame size, streaming with bounded memory, fallbacks, caching."""

from __future__ import annotations

import gc
import math
import os
import subprocess
import sys
import weakref
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_golden

import amt_vfi
from amt_vfi.engine import cut_detector, model_cache, retime_plan
from amt_vfi.engine.padding import padding_for
from amt_vfi.errors import InputError, OutOfMemoryError


@pytest.fixture(scope="module")
def engine(amt_s_path: Path) -> amt_vfi.Interpolator:
    return amt_vfi.Interpolator(amt_s_path, device="cpu")


def _golden_node_plan(case: dict, count: int) -> list[amt_vfi.PlannedFrame]:
    skip = case["skip"]
    predicate = amt_vfi.skip_predicate(skip["frame_indices"], skip["is_skip_list"]) if skip else None
    return amt_vfi.multiplier_plan(count, case["multiplier"], predicate)


@pytest.mark.parametrize("correlation", ["all-pairs", "on-demand"])
@pytest.mark.parametrize("max_batch", [1, 4])
@pytest.mark.parametrize("case_id", ["n1", "n2"])
def test_engine_reproduces_golden_node_cases(
    amt_s_path: Path, golden_cases: dict, case_id: str, correlation: str, max_batch: int
) -> None:
    case = next(c for c in golden_cases["node"] if c["id"] == case_id)
    data = load_golden(case_id)
    engine = amt_vfi.Interpolator(amt_s_path, device="cpu", correlation=correlation, max_batch=max_batch)
    frames = data["frames"]
    output = torch.stack(list(engine.run(iter(frames), _golden_node_plan(case, frames.shape[0]))))
    assert output.shape == data["output"].shape
    diff = (output - data["output"]).abs()
    assert diff.max() <= 5e-4 and diff.mean() <= 2e-5


def test_engine_equals_network_forward_on_golden_model_case(engine: amt_vfi.Interpolator) -> None:
    data = load_golden("m1")
    frame0 = data["img0"][0].permute(1, 2, 0)
    frame1 = data["img1"][0].permute(1, 2, 0)
    output = engine.interpolate_pair(frame0, frame1, [0.5])
    expected = data["imgt_pred"][0].permute(1, 2, 0)
    assert (output[0] - expected).abs().max() <= 5e-4


@pytest.mark.parametrize("size", [(40, 56), (17, 300), (1, 1), (130, 7), (96, 96)])
def test_any_size_gives_finite_frames_of_that_size(engine: amt_vfi.Interpolator, size: tuple[int, int]) -> None:
    generator = torch.Generator().manual_seed(sum(size))
    frame0, frame1 = torch.rand(*size, 3, generator=generator), torch.rand(*size, 3, generator=generator)
    output = engine.interpolate_pair(frame0, frame1, [0.3, 0.7])
    assert output.shape == (2, *size, 3)
    assert torch.isfinite(output).all()
    assert output.min() >= 0 and output.max() <= 1


def test_padding_matches_the_seed_where_it_works_and_lifts_small_sizes() -> None:
    assert padding_for(130, 200) == padding_for(130, 200, 1.0)
    pad = padding_for(130, 200)
    assert (pad.top, pad.bottom, pad.left, pad.right) == (7, 7, 4, 4)
    pad = padding_for(135, 129)
    assert (pad.top, pad.bottom, pad.left, pad.right) == (4, 5, 7, 8)
    pad = padding_for(40, 56)
    assert (pad.top + pad.bottom + 40, pad.left + pad.right + 56) == (128, 128)
    pad = padding_for(300, 500, 0.5)
    assert ((300 + pad.top + pad.bottom) % 32, (500 + pad.left + pad.right) % 32) == (0, 0)
    with pytest.raises(InputError, match="16 / scale must be a whole number"):
        padding_for(100, 100, 0.3)


def test_alpha_channel_is_dropped_and_originals_are_bit_identical(engine: amt_vfi.Interpolator) -> None:
    frames = torch.rand(3, 64, 80, 4)
    output = list(engine.run(iter(frames), amt_vfi.multiplier_plan(3, 2)))
    assert len(output) == 5
    assert all(frame.shape == (64, 80, 3) for frame in output)
    assert torch.equal(output[0], frames[0, ..., :3]) and torch.equal(output[4], frames[2, ..., :3])


def test_bad_inputs_are_refused_clearly(engine: amt_vfi.Interpolator) -> None:
    good = torch.rand(32, 32, 3)
    with pytest.raises(InputError, match="H x W x C image tensor with C >= 3"):
        engine.interpolate_pair(torch.rand(32, 32), good, [0.5])
    with pytest.raises(InputError, match=r"frame0 has shape \(3, 32, 40\), which looks like C x H x W"):
        engine.interpolate_pair(torch.rand(3, 32, 40), torch.rand(3, 32, 40), [0.5])
    with pytest.raises(InputError, match="one size"):
        engine.interpolate_pair(good, torch.rand(32, 40, 3), [0.5])
    with pytest.raises(InputError, match="strictly between 0 and 1"):
        engine.interpolate_pair(good, good, [1.0])
    bad = good.clone()
    bad[3, 3, 1] = float("nan")
    with pytest.raises(InputError, match="NaN or infinite"):
        engine.interpolate_pair(bad, good, [0.5])
    with pytest.raises(InputError, match=r"pixel values outside \[-0.5, 2\]: frames hold values in \[0, 1\]"):
        engine.interpolate_pair(good * 255, good * 255, [0.5])
    with pytest.raises(InputError, match=r"map values in \[-1, 1\] with \(x \+ 1\) / 2"):
        engine.interpolate_pair(good * 2 - 1, good * 2 - 1, [0.5])
    stream = engine.run(iter(torch.rand(3, 8, 8, 3).mul(255).byte()), amt_vfi.multiplier_plan(3, 1))
    with pytest.raises(InputError, match="frame 0 must hold floats"):  # even where it is only passed on
        next(stream)
    with pytest.raises(InputError, match="at least 2 frames"):
        amt_vfi.multiplier_plan(1, 2)
    with pytest.raises(InputError, match=r"timesteps must be a list of numbers in \(0, 1\), e.g. \[0.5\], got 0.5"):
        engine.interpolate_pair(good, good, 0.5)
    with pytest.raises(InputError, match="timesteps must be a list of numbers"):
        engine.interpolate_pair(good, good, ["half"])
    with pytest.raises(InputError, match="frame0 is empty"):
        engine.interpolate_pair(torch.rand(0, 0, 3), torch.rand(0, 0, 3), [0.5])
    with pytest.raises(InputError, match="scale factor must be a number in"):
        amt_vfi.Interpolator(engine.model, scale_factor="0.5")
    assert amt_vfi.Interpolator(engine.model, scale_factor=np.float32(0.5)).scale_factor == 0.5


class _CountingFrames:
    """A frame generator that records how many of its frames are still alive."""

    def __init__(self, count: int, size: tuple[int, int]) -> None:
        self.count, self.size = count, size
        self.refs: list[weakref.ref] = []

    def __iter__(self):
        for index in range(self.count):
            frame = torch.full((*self.size, 3), index / self.count)
            self.refs.append(weakref.ref(frame))
            yield frame

    def alive(self) -> int:
        gc.collect()
        return sum(ref() is not None for ref in self.refs)


@pytest.mark.parametrize("overlap", [False, True])
def test_streaming_holds_a_bounded_number_of_frames(engine: amt_vfi.Interpolator, overlap: bool) -> None:
    engine.overlap = overlap  # the GPU's way (the next pair queued before the last one is handed out)
    source = _CountingFrames(200, (16, 16))
    every_25th_pair = amt_vfi.skip_predicate(range(0, 199, 25), is_skip_list=False)
    stream = engine.run(source, amt_vfi.multiplier_plan(200, 2, every_25th_pair))
    peak = 0
    produced = 0
    for frame in stream:
        produced += 1
        del frame
        if produced % 7 == 0:  # a full garbage collection is slow; sample the count
            peak = max(peak, source.alive())
    assert produced == 200 + 8
    assert peak <= (5 if overlap else 3)  # overlapped: also the pair in flight and two originals behind it
    engine.overlap = False


def test_overlapped_streams_give_the_same_frames_in_the_same_order(engine: amt_vfi.Interpolator) -> None:
    generator = torch.Generator().manual_seed(1)
    scene = torch.rand(1, 3, 12, 16, generator=generator)
    scene = torch.nn.functional.interpolate(scene, size=(48, 64), mode="bilinear")[0].permute(1, 2, 0)
    frames = [scene, scene.roll(2, 1), 1 - scene, (1 - scene).roll(2, 1), scene.roll(4, 0)]
    plans = [
        amt_vfi.multiplier_plan(5, 3, amt_vfi.skip_predicate([2], is_skip_list=True)),
        amt_vfi.schedule_plan(5, [2, 0, 3, 2]),
    ]
    for plan in plans:
        outputs = []
        for overlap in (False, True):
            engine.overlap = overlap
            outputs.append(list(engine.run(iter(frames), plan, is_cut=cut_detector())))
        engine.overlap = False
        assert len(outputs[0]) == len(outputs[1]) == len(plan)
        assert all(torch.equal(a, b) for a, b in zip(*outputs, strict=True))


def test_schedule_and_skip_plans_follow_the_seed_formulas() -> None:
    n = 5
    keep = amt_vfi.skip_predicate([1, 3], is_skip_list=False)
    assert len(amt_vfi.multiplier_plan(n, 4, keep)) == n + 3 * 2
    assert len(amt_vfi.schedule_plan(n, [3, 2])) == 10
    zero_first = amt_vfi.schedule_plan(n, [0, 3, 1, 2])
    assert len(zero_first) == 7 and zero_first[0] == amt_vfi.PlannedFrame(1)
    zero_last = amt_vfi.schedule_plan(n, [2, 2, 2, 0])
    assert len(zero_last) == 6 and all(item.source != 4 for item in zero_last)
    skipped = amt_vfi.schedule_plan(n, [3, 3, 3, 3], amt_vfi.skip_predicate([2], True))
    assert [item.source for item in skipped if not item.is_original] == [0, 0, 1, 1, 3, 3]
    with pytest.raises(InputError, match="entry 1 is -2"):
        amt_vfi.schedule_plan(n, [2, -2])
    with pytest.raises(InputError, match="every multiplier the schedule gives the 4 frame pair"):
        amt_vfi.schedule_plan(n, [0, 0, 0, 0])
    with pytest.raises(InputError, match=r"the 2 frame pair\(s\) is 0.*entries past the last pair are not used"):
        amt_vfi.schedule_plan(3, [0, 0, 5])
    assert amt_vfi.multiplier_plan(n, 3.0) == amt_vfi.multiplier_plan(n, 3)
    with pytest.raises(InputError, match="multiplier must be a whole number, got 2.5"):
        amt_vfi.multiplier_plan(n, 2.5)
    with pytest.raises(InputError, match="multiplier schedule entry 1 must be a whole number, got '2'"):
        amt_vfi.schedule_plan(n, [2, "2"])


def test_retime_plan_hits_originals_and_keeps_duration() -> None:
    frames = retime_plan(24, Fraction(24), Fraction(60))
    assert len(frames) == 60
    assert frames[0] == amt_vfi.PlannedFrame(0) and frames[5] == amt_vfi.PlannedFrame(2)
    assert frames[1].source == 0 and frames[1].time == pytest.approx(0.4)
    doubled = retime_plan(24, Fraction(24), Fraction(48))
    assert len(doubled) == 48 and doubled[46] == amt_vfi.PlannedFrame(23) and doubled[47] == amt_vfi.PlannedFrame(23)
    assert all(item.is_original for item in doubled[::2])
    ntsc = Fraction(24000, 1001), Fraction(60000, 1001)
    assert retime_plan(11, 24000 / 1001, 60000 / 1001) == retime_plan(11, *ntsc)  # floats mean those rates
    assert retime_plan(11, *ntsc)[5] == amt_vfi.PlannedFrame(2)


def test_plans_take_numpy_and_torch_numbers() -> None:
    assert amt_vfi.multiplier_plan(3, np.int64(2)) == amt_vfi.multiplier_plan(3, 2)
    assert (
        amt_vfi.schedule_plan(3, np.array([2, 3]))
        == amt_vfi.schedule_plan(3, torch.tensor([2, 3]))
        == (amt_vfi.schedule_plan(3, [2, 3]))
    )
    for bad in (torch.tensor([2, 3]), np.bool_(True), 10**400):
        with pytest.raises(InputError, match="multiplier must be a whole number"):
            amt_vfi.multiplier_plan(3, bad)


def test_plan_arguments_are_checked_and_skip_lists_take_any_whole_numbers() -> None:
    assert amt_vfi.multiplier_plan(4.0, 2) == amt_vfi.multiplier_plan(4, 2)
    skip_tensor = amt_vfi.skip_predicate(torch.tensor([1]), is_skip_list=True)
    keep_tensor = amt_vfi.skip_predicate(torch.tensor([1]), is_skip_list=False)
    assert len(amt_vfi.multiplier_plan(4, 2, skip_tensor)) == 6  # pair 1 skipped
    assert len(amt_vfi.multiplier_plan(4, 2, keep_tensor)) == 5  # only pair 1 interpolated
    assert amt_vfi.schedule_plan(3, []) == amt_vfi.multiplier_plan(3, 2)  # a short schedule goes on with 2s
    for call, message in [
        (lambda: amt_vfi.multiplier_plan("4", 2), "frame_count must be a whole number, got '4'"),
        (lambda: amt_vfi.retime_plan(4, float("nan"), 60), "frame rates must be positive numbers"),
        (lambda: amt_vfi.retime_plan(4, 24, math.inf), "frame rates must be positive numbers"),
        (lambda: amt_vfi.retime_plan(4, 25, 1e-9), "frame rates must be 0.001 to 1,000,000 frames per second"),
        (lambda: amt_vfi.retime_plan(4, 25, 1e9), "frame rates must be 0.001 to 1,000,000 frames per second"),
        (lambda: amt_vfi.schedule_plan(4, 3), "multipliers must be a list of whole numbers, one per pair, got 3"),
        (lambda: amt_vfi.skip_predicate(["1"], is_skip_list=True), "pair index must be a whole number, got '1'"),
        (lambda: amt_vfi.Interpolator("amt-s", max_batch=2.5), "max_batch must be a whole number, got 2.5"),
        (lambda: amt_vfi.load_model("amt-s.pth", device=None), "device must be one of auto, cpu"),
    ]:
        with pytest.raises(InputError, match=message):
            call()


def test_rgb_and_rgba_frames_mix(engine: amt_vfi.Interpolator) -> None:
    frame0, frame1 = torch.rand(32, 40, 3), torch.rand(32, 40, 3)
    with_alpha = torch.cat([frame1, torch.ones(32, 40, 1)], dim=-1)
    assert torch.equal(
        engine.interpolate_pair(frame0, with_alpha, [0.5]), engine.interpolate_pair(frame0, frame1, [0.5])
    )


def test_a_refilled_frame_buffer_is_refused(engine: amt_vfi.Interpolator) -> None:
    clip = torch.rand(3, 32, 40, 3)
    buffer = torch.empty(32, 40, 3)

    def refilled():
        for frame in clip:
            buffer.copy_(frame)
            yield buffer

    array = np.empty((32, 40, 3), dtype=np.float32)

    def refilled_array():
        for frame in clip:
            array[...] = frame.numpy()
            yield torch.from_numpy(array)  # a new tensor each time, over the same memory

    plan = amt_vfi.multiplier_plan(3, 2)
    for producer in (refilled, refilled_array):
        with pytest.raises(InputError, match="frame 0 changed while frame 1 was read: .* yield buffer.clone"):
            list(engine.run(producer(), plan))
    expected = list(engine.run(iter(clip), plan))
    same_tensor_twice = [clip[0], clip[0], clip[1]]  # unchanged repeats are fine
    assert len(list(engine.run(iter(same_tensor_twice), plan))) == 5
    batch = torch.empty_like(clip)

    def slots_of_one_batch():  # a reader filling a preallocated batch slot by slot
        for index, frame in enumerate(clip):
            batch[index].copy_(frame)
            yield batch[index]

    assert all(torch.equal(a, b) for a, b in zip(engine.run(slots_of_one_batch(), plan), expected, strict=True))

    def first_frame_edited():
        first = clip[0].clone()
        yield first
        first.zero_()  # changed in place after it was handed over
        yield clip[1].clone()
        yield clip[2].clone()

    with pytest.raises(InputError, match="frame 0 changed while frame 1 was read"):
        list(engine.run(first_frame_edited(), plan))
    with torch.inference_mode():
        held = clip.clone()
    expanded = held[:1].expand(3, -1, -1, -1)  # ComfyUI runs nodes in inference mode; a held frame repeated
    assert len(list(engine.run(iter(expanded), plan))) == 5
    assert len(list(engine.run(iter([held[0], held[0], held[1]]), plan))) == 5


def test_scene_cut_holds_frames_instead_of_blending(engine: amt_vfi.Interpolator) -> None:
    generator = torch.Generator().manual_seed(0)
    scene_a = torch.rand(1, 3, 12, 16, generator=generator)
    scene_a = torch.nn.functional.interpolate(scene_a, size=(96, 128), mode="bilinear")[0].permute(1, 2, 0)
    scene_b = 1 - scene_a.flip(0)
    frames = [scene_a, scene_a.roll(2, 1), scene_b, scene_b.roll(2, 1)]
    output = list(engine.run(iter(frames), amt_vfi.multiplier_plan(4, 4), is_cut=cut_detector()))
    assert len(output) == 13
    cut = output[4:9]  # frame 1, three in-betweens, frame 2
    assert torch.equal(cut[1], frames[1]) and torch.equal(cut[2], frames[2]) and torch.equal(cut[3], frames[2])
    assert not torch.equal(output[1], frames[0]) and not torch.equal(output[1], frames[1])


def test_out_of_memory_falls_back_then_explains(amt_s_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = amt_vfi.Interpolator(amt_s_path, device="cpu", correlation="auto", max_batch=4)
    calls: list[tuple[int, str]] = []
    real_launch = engine._launch

    def flaky(pair, times, padding, mode, batch):
        calls.append((batch, mode))
        if len(calls) < 4:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_launch(pair, times, padding, mode, batch)

    monkeypatch.setattr(engine, "_launch", flaky)
    frame = torch.rand(64, 64, 3)
    output = engine.interpolate_pair(frame, frame.flip(1), [0.2, 0.4, 0.6, 0.8])
    assert output.shape == (4, 64, 64, 3)
    assert calls == [(4, "auto"), (2, "auto"), (1, "auto"), (1, "on-demand")]

    def always_oom(*args):
        raise RuntimeError("CUDA error: out of memory")

    monkeypatch.setattr(engine, "_launch", always_oom)
    with pytest.raises(OutOfMemoryError, match="scale factor of 0.5"):
        engine.interpolate_pair(frame, frame, [0.5])


def test_bf16_precision_stays_close_to_fp32(amt_s_path: Path) -> None:
    data = load_golden("m1")
    frame0, frame1 = data["img0"][0].permute(1, 2, 0), data["img1"][0].permute(1, 2, 0)
    reference = amt_vfi.Interpolator(amt_s_path, device="cpu").interpolate_pair(frame0, frame1, [0.5])
    engine = amt_vfi.Interpolator(amt_s_path, device="cpu", precision="bf16")
    assert engine.model.comb_block[0].weight.dtype == torch.bfloat16
    bf16 = engine.interpolate_pair(frame0, frame1, [0.5])
    mse = float(((bf16 - reference) ** 2).mean())
    assert mse > 0 and 10 * math.log10(1.0 / mse) > 30  # close, yet really computed in bfloat16
    with pytest.raises(InputError, match="fp16 is not supported on the CPU"):
        amt_vfi.Interpolator(amt_s_path, device="cpu", precision="fp16")


def test_models_are_cached_per_file_device_and_dtype(amt_s_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    amt_vfi.release_models()
    loads: list[Path] = []
    real_load = model_cache.load_model
    monkeypatch.setattr(model_cache, "load_model", lambda path, **kw: loads.append(path) or real_load(path, **kw))
    first = amt_vfi.Interpolator(amt_s_path, device="cpu")
    second = amt_vfi.Interpolator(str(amt_s_path), device="cpu")
    by_name = amt_vfi.Interpolator("amt-s", device="cpu")
    assert first.model is second.model is by_name.model
    assert len(loads) == 1
    amt_vfi.Interpolator(amt_s_path, device="cpu", precision="bf16")
    assert len(loads) == 2
    assert amt_vfi.release_models() == 2
    amt_vfi.Interpolator(amt_s_path, device="cpu")
    assert len(loads) == 3


def test_allocation_failures_of_every_kind_count_as_out_of_memory() -> None:
    from amt_vfi.engine.devices import is_out_of_memory

    for message in (
        "CUDA out of memory. Tried to allocate 2.00 GiB",
        "cuDNN error: CUDNN_STATUS_ALLOC_FAILED",
        "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
        "Invalid buffer size: 9.50 GB",
        "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory",
    ):
        assert is_out_of_memory(RuntimeError(message)), message
    assert not is_out_of_memory(RuntimeError("Expected all tensors to be on the same device"))
    assert not is_out_of_memory(ValueError("out of memory"))  # not from torch


def test_results_land_in_ordinary_memory_where_pinning_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    from amt_vfi.engine import interpolator

    real_empty = torch.empty

    def no_pinning(*args, pin_memory: bool = False, **kwargs):
        if pin_memory:
            raise RuntimeError("CUDA error: out of memory (cudaHostAlloc)")
        return real_empty(*args, **kwargs)

    monkeypatch.setattr(interpolator.torch, "empty", no_pinning)
    buffer = interpolator._host_buffer((2, 4, 4, 3), torch.device("cuda"))
    assert buffer.shape == (2, 4, 4, 3) and buffer.dtype == torch.float32 and not buffer.is_pinned()


def test_unavailable_device_is_explained(amt_s_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(InputError, match="this PyTorch sees no CUDA GPU; use the device .cpu. or .auto."):
        amt_vfi.Interpolator(amt_s_path, device="cuda")


def test_offload_keeps_the_model_cached_and_the_next_engine_moves_it_back(
    amt_s_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from amt_vfi.engine import interpolator as interpolator_module

    released: list[torch.device] = []
    monkeypatch.setattr(interpolator_module, "release_cached_memory", released.append)
    engine = amt_vfi.Interpolator(amt_s_path, device="cpu")
    moved: list[object] = []
    monkeypatch.setattr(engine.model, "to", lambda *args, **kwargs: moved.append(args) or engine.model)
    engine.offload()
    assert moved == [("cpu",)] and released == [torch.device("cpu")]
    again = amt_vfi.Interpolator(amt_s_path, device="cpu")
    assert again.model is engine.model
    assert moved[1:2] == [(torch.device("cpu"),)]


def test_a_network_offloaded_by_another_engine_comes_back_for_the_next_pair(
    amt_s_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = amt_vfi.Interpolator(amt_s_path, device="cpu")
    moved: list[object] = []
    monkeypatch.setattr(engine.model, "to", lambda *args, **kwargs: moved.append(args) or engine.model)
    engine.interpolate_pair(torch.rand(16, 16, 3), torch.rand(16, 16, 3), [0.5])
    assert moved == []  # already where it belongs
    engine.device = torch.device("cuda", 1)  # as if the network had been offloaded from this GPU
    engine._network_on_device()
    assert moved == [(torch.device("cuda", 1),)]
    calls: list[bool] = []
    monkeypatch.setattr(engine, "_network_on_device", lambda: calls.append(True))
    engine.device = torch.device("cpu")
    engine.interpolate_pair(torch.rand(16, 16, 3), torch.rand(16, 16, 3), [0.5])
    assert calls == [True]  # checked before every pair


_REFAULT_PROBE = """
import resource, sys, torch
from amt_vfi.engine.cpu_memory import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] != "default" else False
if sys.argv[1] == "keep-then-return":
    kept = keep_freed_memory(False)
def page_faults_of_layer_like_work():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.ones(8 << 20)  # 32 MB
    for _ in range(4):
        x = x * 2 + 1
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
steady = min([page_faults_of_layer_like_work() for _ in range(8)][2:])
print(kept, steady)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keeping_freed_memory_stops_refaulting_large_blocks() -> None:
    def probe(mode: str, **env: str) -> tuple[str, int]:
        done = subprocess.run(
            [sys.executable, "-c", _REFAULT_PROBE, mode],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, **env},
        )
        kept, faults = done.stdout.split()
        return kept, int(faults)

    kept, faults = probe("keep")
    assert kept == "True" and faults < 500  # freed blocks are reused as they are
    _, default_faults = probe("default")
    assert default_faults > 30_000  # 4 KB pages of fresh 32 MB blocks, faulted in again and again
    kept, faults = probe("keep-then-return")
    assert kept == "False" and faults > 30_000
    assert probe("keep", AMT_VFI_RETURN_FREED_MEMORY="1")[0] == "False"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_engines_owning_the_process_keep_freed_memory_up_to_1080p(
    amt_s_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from amt_vfi.engine import cpu_memory, interpolator

    engine = amt_vfi.Interpolator(amt_s_path, device="cpu", autotune=True)
    frame = torch.rand(40, 56, 3)
    try:
        engine.interpolate_pair(frame, frame.flip(0), [0.5])
        assert cpu_memory._state is True
        monkeypatch.setattr(interpolator, "KEEP_FREED_MEMORY_PIXELS", 64 * 64)  # as if the frame were 4K
        engine.interpolate_pair(frame, frame.flip(0), [0.5])
        assert cpu_memory._state is False
    finally:
        cpu_memory.keep_freed_memory(False)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_streams_keep_freed_memory_only_while_they_run(amt_s_path: Path) -> None:
    from amt_vfi.engine import cpu_memory

    cpu_memory.keep_freed_memory(False)  # whatever earlier tests in this process asked for (the CLI's)
    engine = amt_vfi.Interpolator(amt_s_path, device="cpu")
    frames = [torch.rand(40, 56, 3) for _ in range(3)]
    during = [cpu_memory._state for _ in engine.run(iter(frames), amt_vfi.multiplier_plan(3, 2))]
    assert during[-1] is True  # kept while the stream ran
    assert cpu_memory._state is False  # and handed back at its end
    engine.interpolate_pair(frames[0], frames[1], [0.5])
    assert cpu_memory._state is False  # a single pair leaves the process alone


def test_resample_plan_interpolates_over_frames_left_out() -> None:
    plan = amt_vfi.engine.resample_plan([0, 2, 3], [Fraction(j, 2) for j in range(8)])
    frame = amt_vfi.PlannedFrame
    assert plan == [
        frame(0),
        frame(0, 0.25),
        frame(0, 0.5),
        frame(0, 0.75),
        frame(1),
        frame(1, 0.5),
        frame(2),
        frame(2),  # past the last keyframe: held
    ]
    assert amt_vfi.engine.resample_plan(range(3), [Fraction(1, 3), Fraction(2)]) == [frame(0, 1 / 3), frame(2)]
    with pytest.raises(InputError, match="at least 2 increasing"):
        amt_vfi.engine.resample_plan([0, 0], [Fraction(0)])


def test_distinct_frames_leave_out_repeats_but_keep_the_last_frame() -> None:
    generator = torch.Generator().manual_seed(2)
    picture = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8, generator=generator), size=(64, 64))
    a = picture[0].permute(1, 2, 0)
    b = a.roll(3, 1)
    recompressed = (a + torch.randn(a.shape, generator=generator) / 2000).clamp(0, 1)  # a repeat with noise
    assert amt_vfi.engine.distinct_frames([a, recompressed, b, b.clone(), b]) == [0, 2, 4]
    assert amt_vfi.engine.distinct_frames([a, b]) == [0, 1]
    assert amt_vfi.engine.distinct_frames([a, a]) == [0, 1]
    assert amt_vfi.engine.duplicate_score(a, b) > 100 * amt_vfi.engine.duplicate_score(a, recompressed)


def test_least_device_memory_covers_the_measured_peaks(engine: amt_vfi.Interpolator) -> None:
    # On an H200 a 1080p AMT-S pair peaked at 1.2 GB in fp16 with the on-demand correlation: 2.4 GB in fp32.
    assert 2.4e9 < engine.least_device_memory(1080, 1920) < 3.6e9
    assert engine.least_device_memory(1, 1) < 50e6  # padded to the 128 x 128 minimum, weights included


def test_default_gpu_budget_follows_a_per_process_memory_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    from amt_vfi.engine.memory import GIB, default_budget

    # An 80 GB card with 70 GB free, 2 GB in use and 1 GB cached by this process: capped at 24 GB, the
    # process may take 22 GB more, so the pair gets 60% of that instead of 60% of the free 71 GB.
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (70 * GIB, 80 * GIB))
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device: 2 * GIB)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device: 3 * GIB)
    fractions: list[int] = []
    monkeypatch.setattr(torch.cuda, "get_per_process_memory_fraction", lambda index: fractions.append(index) or 0.3)
    assert default_budget(torch.device("cuda", 1)) == int(22 * GIB * 0.6)
    assert fractions == [1]  # asked with an index: a bare "cuda" is refused there
    monkeypatch.setattr(torch.cuda, "get_per_process_memory_fraction", lambda index: 1.0)
    assert default_budget(torch.device("cuda", 0)) == int(71 * GIB * 0.6)


def test_compiled_decoders_give_the_eager_frames(amt_s_path: Path) -> None:
    generator = torch.Generator().manual_seed(3)
    frame0, frame1 = torch.rand(40, 56, 3, generator=generator), torch.rand(40, 56, 3, generator=generator)
    eager = amt_vfi.Interpolator(amt_s_path, device="cpu").interpolate_pair(frame0, frame1, [0.25, 0.5])
    compiled = amt_vfi.Interpolator(amt_s_path, device="cpu", compile=True)
    assert compiled.interpolate_pair(frame0, frame1, [0.25, 0.5]).sub(eager).abs().max() < 1e-4


def test_scale_factors_that_would_pad_frames_up_are_refused(amt_s_path: Path) -> None:
    with pytest.raises(InputError, match="scale factor 0.0625 is below 0.25: smaller frames would be padded"):
        amt_vfi.Interpolator(amt_s_path, device="cpu", scale_factor=0.0625)  # 256x448 padded to 2048 px
    assert amt_vfi.Interpolator(amt_s_path, device="cpu", scale_factor=0.25).scale_factor == 0.25
