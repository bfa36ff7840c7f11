"""The ComfyUI nodes, imported the way ComfyUI imports a custom-node folder, with no ComfyUI present.

ComfyUI's own modules are faked minimally where a test needs them (progress, cancel, cache release,
device). Tests about ordering, counts and bookkeeping replace the network with a linear blend (a
deterministic function of the pair and the time), so they run in milliseconds; the golden cases, small
frames, RGBA and a schedule-vs-int comparison run the real network.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from comfy_pack import PACK, ROOT, _cpu_outside_comfyui, load_pack, pack, smooth_frames
from conftest import load_golden

from amt_vfi.checkpoints import standin_state_dict

OFFICIAL = ["amt-s.pth", "amt-l.pth", "amt-g.pth", "gopro_amt-s.pth"]


@pytest.fixture(scope="module")
def nodes(pack: types.ModuleType) -> types.ModuleType:
    return pack.amt_vfi.comfy.nodes


@pytest.fixture(scope="module")
def errors(pack: types.ModuleType) -> types.ModuleType:
    return pack.amt_vfi.errors


def vfi(nodes, frames, multiplier=2, states=None, ckpt="amt-s.pth", clear=1, **options) -> torch.Tensor:
    (output,) = nodes.NODE_CLASS_MAPPINGS["AMT VFI"]().vfi(ckpt, frames, clear, multiplier, states, **options)
    return output


def states(nodes, text: str, is_skip_list: bool):
    (result,) = nodes.NODE_CLASS_MAPPINGS["Make Interpolation State List"]().create_options(text, is_skip_list)
    return result


def numbered_frames(count: int, height: int = 8, width: int = 12, channels: int = 3) -> torch.Tensor:
    """Frame i is filled with i / 100, so any blend of frames tells which pair and time it came from."""
    values = torch.arange(count, dtype=torch.float32) / 100
    return values.view(-1, 1, 1, 1).expand(count, height, width, channels).contiguous()


@pytest.fixture
def blend(monkeypatch: pytest.MonkeyPatch, pack: types.ModuleType) -> list[SimpleNamespace]:
    """Replace the network with a linear blend; record every pair call (first frame's value, times, model)."""
    calls: list[SimpleNamespace] = []

    engine = pack.amt_vfi.engine.interpolator

    def fake_launch_pair(self, frame0, frame1, timesteps):
        first = round(float(frame0[0, 0, 0]) * 100)
        calls.append(SimpleNamespace(first=first, times=list(timesteps), model=self.model))
        blended = torch.stack([(1 - t) * frame0[..., :3] + t * frame1[..., :3] for t in timesteps]).float()
        return engine._PendingFrames.done(blended)

    monkeypatch.setattr(engine.Interpolator, "_launch_pair", fake_launch_pair)
    return calls


@pytest.fixture
def fake_comfy(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """Minimal `comfy.model_management` and `comfy.utils` in sys.modules, recording what the node calls."""
    state = SimpleNamespace(device_calls=0, empty_calls=0, interrupt_checks=0, interrupt_after=None, bars=[])

    class InterruptProcessingException(Exception):
        pass

    def get_torch_device():
        state.device_calls += 1
        return torch.device("cpu")

    def soft_empty_cache(force: bool = False) -> None:
        state.empty_calls += 1

    def throw_exception_if_processing_interrupted() -> None:
        state.interrupt_checks += 1
        if state.interrupt_after is not None and state.interrupt_checks > state.interrupt_after:
            raise InterruptProcessingException("Processing interrupted")

    class ProgressBar:
        def __init__(self, total: int) -> None:
            self.total, self.current, self.updates = total, 0, []
            state.bars.append(self)

        def update(self, value: int) -> None:
            self.current += value
            self.updates.append(value)

    comfy = types.ModuleType("comfy")
    model_management = types.ModuleType("comfy.model_management")
    utils = types.ModuleType("comfy.utils")
    model_management.get_torch_device = get_torch_device
    model_management.soft_empty_cache = soft_empty_cache
    model_management.throw_exception_if_processing_interrupted = throw_exception_if_processing_interrupted
    model_management.InterruptProcessingException = InterruptProcessingException
    utils.ProgressBar = ProgressBar
    comfy.model_management, comfy.utils = model_management, utils
    for name, module in (("comfy", comfy), ("comfy.model_management", model_management), ("comfy.utils", utils)):
        monkeypatch.setitem(sys.modules, name, module)
    state.InterruptProcessingException = InterruptProcessingException
    return state


# -- import and declarations ----------------------------------------------------------------------


def test_pack_imports_like_comfyui_without_comfy_gpu_network_or_output(tmp_path: Path) -> None:
    script = f"""
        import importlib.util, sys
        def no_network(event, args):
            if event.startswith(("socket.connect", "socket.getaddrinfo", "urllib.Request")):
                raise AssertionError("network used at import: " + event)
        sys.addaudithook(no_network)
        spec = importlib.util.spec_from_file_location("{PACK}", {str(ROOT / "__init__.py")!r})
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        assert not [m for m in sys.modules if m == "comfy" or m.startswith(("comfy.", "folder_paths"))]
        assert "torch" in sys.modules
        print(sorted(module.NODE_CLASS_MAPPINGS), end="")
    """
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no warnings, no log lines
    names = ["AMT Model Loader", "AMT VFI", "Make Interpolation State List", "VFI FloatToInt", "VFI Schedule From Text"]
    assert done.stdout == str(names)


def test_amt_vfi_declaration_matches_the_seed(pack: types.ModuleType) -> None:
    node = pack.NODE_CLASS_MAPPINGS["AMT VFI"]
    assert (node.CATEGORY, node.FUNCTION, node.RETURN_TYPES) == ("ComfyUI-Frame-Interpolation/VFI", "vfi", ("IMAGE",))
    inputs = node.INPUT_TYPES()
    required = inputs["required"]
    assert list(required) == ["ckpt_name", "frames", "clear_cache_after_n_frames", "multiplier"]
    names, options = required["ckpt_name"]
    assert names[:4] == OFFICIAL and options["default"] == "amt-s.pth"
    assert required["frames"][0] == "IMAGE"
    assert required["clear_cache_after_n_frames"][0] == "INT"
    assert {k: required["clear_cache_after_n_frames"][1][k] for k in ("default", "min", "max")} == {
        "default": 1,
        "min": 1,
        "max": 100,
    }
    assert required["multiplier"][0] == "INT"
    assert {k: required["multiplier"][1][k] for k in ("default", "min", "max")} == {"default": 2, "min": 2, "max": 1000}
    optional = inputs["optional"]
    assert list(optional)[0] == "optional_interpolation_states"
    assert optional["optional_interpolation_states"][0] == "INTERPOLATION_STATES"
    assert optional["precision"][0][0] == "fp32" and optional["precision"][1]["default"] == "fp32"
    assert set(optional["precision"][0]) == {"fp32", "auto", "fp16", "bf16"}
    assert optional["correlation"][1]["default"] == "auto"
    assert optional["scale_factor"][0] == "FLOAT" and optional["scale_factor"][1]["default"] == 1.0
    assert pack.NODE_DISPLAY_NAME_MAPPINGS["AMT VFI"] == "AMT VFI"


def test_helper_node_declarations_match_the_seed(pack: types.ModuleType) -> None:
    make = pack.NODE_CLASS_MAPPINGS["Make Interpolation State List"]
    assert (make.CATEGORY, make.FUNCTION, make.RETURN_TYPES) == (
        "ComfyUI-Frame-Interpolation/VFI",
        "create_options",
        ("INTERPOLATION_STATES",),
    )
    required = make.INPUT_TYPES()["required"]
    assert list(required) == ["frame_indices", "is_skip_list"]
    assert required["frame_indices"][0] == "STRING"
    assert required["frame_indices"][1]["multiline"] is True and required["frame_indices"][1]["default"] == "1,2,3"
    assert required["is_skip_list"] == ("BOOLEAN", {"default": True, "tooltip": required["is_skip_list"][1]["tooltip"]})
    to_int = pack.NODE_CLASS_MAPPINGS["VFI FloatToInt"]
    assert (to_int.FUNCTION, to_int.RETURN_TYPES) == ("convert", ("INT",))
    assert list(to_int.INPUT_TYPES()["required"]) == ["float"]
    assert to_int.INPUT_TYPES()["required"]["float"][0] == "FLOAT"
    loader = pack.NODE_CLASS_MAPPINGS["AMT Model Loader"]
    assert loader.RETURN_TYPES == ("FRAME_INTERPOLATION_MODEL",)


def test_every_input_of_every_node_has_a_tooltip(pack: types.ModuleType) -> None:
    for name, node in pack.NODE_CLASS_MAPPINGS.items():
        for section in node.INPUT_TYPES().values():
            for input_name, spec in section.items():
                assert len(spec) == 2 and spec[1].get("tooltip"), f"{name}.{input_name} has no tooltip"


def test_checkpoint_combo_lists_other_amt_files(
    nodes, blend, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, standin_dir: Path
) -> None:
    for folder in ("amt", "finetunes/anime", ".trash"):
        (tmp_path / folder).mkdir(parents=True)
    for name in (
        "my-finetune.safetensors",
        "amt/older.pth",
        "notes.txt",
        ".amt-s.pth.partial-0a1b2c3d",
        ".trash/x.pth",
    ):
        (tmp_path / name).write_bytes(b"")
    shutil.copy(standin_dir / "amt-s.pth", tmp_path / "finetunes" / "anime" / "v2.pth")
    monkeypatch.setenv("AMT_VFI_MODELS", str(tmp_path))
    names = nodes.NODE_CLASS_MAPPINGS["AMT VFI"].INPUT_TYPES()["required"]["ckpt_name"][0]
    assert names[:4] == OFFICIAL
    assert {"my-finetune.safetensors", "older.pth", "finetunes/anime/v2.pth"} <= set(names[4:])
    assert not {"notes.txt", ".amt-s.pth.partial-0a1b2c3d", "amt/older.pth", ".trash/x.pth"} & set(names)
    assert len(vfi(nodes, numbered_frames(2), ckpt="finetunes/anime/v2.pth")) == 3  # and it is found
    assert len(vfi(nodes, numbered_frames(2), ckpt="finetunes\\anime\\v2.pth")) == 3  # as Windows writes it


# -- the seed's frames ------------------------------------------------------------------------------


@pytest.mark.parametrize("case_id", ["n1", "n2"])
def test_golden_node_cases_through_the_node(nodes, golden_cases: dict, case_id: str) -> None:
    case = next(c for c in golden_cases["node"] if c["id"] == case_id)
    data = load_golden(case_id)
    skip = case["skip"]
    state = states(nodes, ",".join(map(str, skip["frame_indices"])), skip["is_skip_list"]) if skip else None
    output = vfi(nodes, data["frames"], case["multiplier"], state, ckpt=case["ckpt"])
    assert output.shape == data["output"].shape and output.dtype == torch.float32
    diff = (output - data["output"]).abs()
    assert diff.max() <= 5e-4 and diff.mean() <= 2e-5


def test_rgba_frames_drop_alpha_like_the_seed(nodes) -> None:
    data = load_golden("n2")  # 3 frames, x3, pair 1 skipped: one network pair
    frames = data["frames"]
    alpha = torch.linspace(0, 1, frames.shape[2]).view(1, 1, -1, 1).expand(*frames.shape[:3], 1)
    skip = states(nodes, "1", True)
    output = vfi(nodes, torch.cat([frames, alpha], dim=-1), 3, skip)
    assert output.shape == data["output"].shape
    assert (output - data["output"]).abs().max() <= 5e-4
    assert torch.equal(output[0], frames[0]) and torch.equal(output[-1], frames[-1])


@pytest.fixture(scope="module")
def small_int_run(nodes) -> tuple[torch.Tensor, torch.Tensor]:
    frames = smooth_frames(3, 60, 80, seed=5)
    return frames, vfi(nodes, frames, 3)


def test_small_frames_give_finite_frames_and_originals_unchanged(small_int_run) -> None:
    frames, output = small_int_run
    assert output.shape == (7, 60, 80, 3)
    assert torch.isfinite(output).all() and output.min() >= 0 and output.max() <= 1
    for source, position in ((0, 0), (1, 3), (2, 6)):
        assert torch.equal(output[position], frames[source])
    assert not torch.equal(output[1], output[2])


def test_schedule_equal_to_int_multiplier_gives_the_same_frames(nodes, small_int_run) -> None:
    frames, int_output = small_int_run
    assert torch.equal(vfi(nodes, frames, [3, 3]), int_output)


def seed_schedule_count(frame_count: int, schedule: list[int]) -> int:
    """AMT-SPEC 6.6 without a state list: sum over pairs of m_i (m_i != 0), plus 1 if the last m != 0."""
    values = (schedule + [2] * frame_count)[: frame_count - 1]
    return sum(values) + (1 if values[-1] else 0)


@pytest.mark.parametrize(
    ("schedule", "expected_count", "first_source"),
    [([3, 2], 10, 0), ([0, 3, 1, 2], 7, 1), ([2, 2, 2, 0], 6, 0), ([1, 1, 1, 1], 5, 0), ([], 9, 0), ([4] * 9, 17, 0)],
)
def test_schedules_follow_the_seed(nodes, blend, schedule, expected_count, first_source) -> None:
    frames = numbered_frames(5)
    output = vfi(nodes, frames, schedule)
    assert len(output) == expected_count == seed_schedule_count(5, schedule)
    assert torch.equal(output[0], frames[first_source])


def test_schedule_zero_on_the_last_pair_drops_the_last_two_frames(nodes, blend) -> None:
    frames = numbered_frames(5)
    output = vfi(nodes, frames, [2, 2, 2, 0])
    values = [round(float(frame[0, 0, 0]) * 1000) for frame in output]
    assert values == [0, 5, 10, 15, 20, 25]  # f0 m01 f1 m12 f2 m23 (f3 and f4 dropped, as in the seed)


def test_schedule_one_keeps_the_first_frame_only(nodes, blend) -> None:
    frames = numbered_frames(3)
    output = vfi(nodes, frames, [1, 3])
    assert [round(float(f[0, 0, 0]) * 3000) for f in output] == [0, 30, 40, 50, 60]
    assert [call.first for call in blend] == [1]


def test_short_schedule_is_padded_with_twos_and_equals_the_int_path(nodes, blend) -> None:
    frames = numbered_frames(4)
    assert torch.equal(vfi(nodes, frames, [2]), vfi(nodes, frames, 2))
    assert torch.equal(vfi(nodes, frames, np.array([3, 3, 3])), vfi(nodes, frames, np.int64(3)))


@pytest.mark.parametrize(
    ("text", "is_skip_list", "interpolated_pairs"),
    [("1,3", True, [0, 2, 4]), ("1,3", False, [1, 3]), ("", True, [0, 1, 2, 3, 4]), ("1-3\n9, -1", True, [0, 4])],
)
def test_skip_and_keep_lists(nodes, blend, text, is_skip_list, interpolated_pairs) -> None:
    frames = numbered_frames(6)
    output = vfi(nodes, frames, 3, states(nodes, text, is_skip_list))
    assert [call.first for call in blend] == interpolated_pairs
    assert len(output) == 6 + 2 * len(interpolated_pairs)  # N + (m-1)(N-1-K)
    assert torch.equal(output[-1], frames[-1])


def test_schedule_with_skip_list_uses_the_real_pair_index(nodes, blend) -> None:
    frames = numbered_frames(6)
    output = vfi(nodes, frames, [3, 2, 2, 2, 2], states(nodes, "2", True))
    assert [call.first for call in blend] == [0, 1, 3, 4]  # the seed would ask about pair 0 every time
    assert len(output) == 11
    keep = vfi(nodes, numbered_frames(4), [2, 2, 2], states(nodes, "0", False))
    assert len(keep) == 5


def test_state_objects_of_the_seed_shape_are_accepted(nodes, blend, errors) -> None:
    state = states(nodes, "0", True)
    assert state.frame_indices == [0] and state.is_skip_list is True
    assert state.is_frame_skipped(0) and not state.is_frame_skipped(1)
    keep = states(nodes, "0", False)
    assert not keep.is_frame_skipped(0) and keep.is_frame_skipped(1)
    frames = numbered_frames(3)
    seed_like = SimpleNamespace(frame_indices=[1], is_skip_list=True)
    assert len(vfi(nodes, frames, 2, seed_like)) == 4
    method_only = SimpleNamespace(is_frame_skipped=lambda index: index == 0)
    assert len(vfi(nodes, frames, 2, method_only)) == 4
    with pytest.raises(errors.InputError, match="Make Interpolation State List"):
        vfi(nodes, frames, 2, object())


def test_state_list_parse_errors_are_clear(nodes, errors) -> None:
    with pytest.raises(errors.InputError, match="'x' is not a whole number"):
        states(nodes, "1, x", True)
    with pytest.raises(errors.InputError, match="runs backwards"):
        states(nodes, "5-2", True)
    with pytest.raises(errors.InputError, match="'5-99999999' names more than 1,000,000 pairs; end the range"):
        states(nodes, "5-99999999", True)  # refused at once, without a list of a hundred million numbers
    assert states(nodes, "1, 2,\n3,", True).frame_indices == [1, 2, 3]
    assert states(nodes, "1.0, 4", True).frame_indices == [1, 4]  # whole numbers written as floats
    with pytest.raises(errors.InputError, match="'2.5' is not a whole number"):
        states(nodes, "1, 2.5", True)


def test_float_to_int_and_text_schedule(nodes, errors) -> None:
    convert = nodes.NODE_CLASS_MAPPINGS["VFI FloatToInt"]().convert
    assert convert(2.7) == (2,)
    assert convert([3.9, 1.0, 0.2]) == ([3, 1, 0],)
    assert convert(np.array([2.5, 4.0])) == ([2, 4],)
    assert convert(torch.tensor(5.5)) == (5,)
    with pytest.raises(errors.InputError, match="FloatToInt"):
        convert(float("nan"))
    (schedule,) = nodes.NODE_CLASS_MAPPINGS["VFI Schedule From Text"]().parse("4, 2.5\n1, 0")
    assert schedule == [4.0, 2.5, 1.0, 0.0]
    with pytest.raises(errors.InputError, match="'a' is not a number"):
        nodes.NODE_CLASS_MAPPINGS["VFI Schedule From Text"]().parse("4, a")
    with pytest.raises(errors.InputError, match="schedule must be text such as '4, 2, 2, 1', got NoneType"):
        nodes.NODE_CLASS_MAPPINGS["VFI Schedule From Text"]().parse(None)


# -- bad input --------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [0, 1])
def test_fewer_than_two_frames_is_a_clear_error(nodes, errors, count: int) -> None:
    with pytest.raises(errors.InputError, match="at least 2 frames, got " + str(count)):
        vfi(nodes, torch.rand(count, 8, 8, 3))


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        (torch.rand(8, 8, 3), "N x H x W x C"),
        (torch.rand(2, 8, 8, 2), "C = 3"),
        (torch.rand(2, 3, 8, 8)[:, :, :, :2], "N x H x W x C"),
        (torch.rand(2, 3, 40, 50), r"looks like N x C x H x W; a ComfyUI IMAGE is N x H x W x C"),
        (torch.zeros(2, 8, 8, 3, dtype=torch.uint8), "floats"),
        (np.zeros((2, 8, 8, 3), dtype=np.float32), "IMAGE batch"),
    ],
)
def test_frames_that_are_not_an_image_batch_are_refused(nodes, errors, frames, message: str) -> None:
    with pytest.raises(errors.InputError, match=message):
        vfi(nodes, frames)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_inf_pixels_are_refused(nodes, errors, bad: float) -> None:
    frames = torch.rand(3, 8, 8, 3)
    frames[2, 4, 4, 1] = bad
    with pytest.raises(errors.InputError, match="frame 2 contains NaN or infinite"):
        vfi(nodes, frames)


def test_pixel_values_of_0_to_255_or_minus_1_to_1_are_refused(nodes, errors) -> None:
    frames = torch.rand(2, 8, 8, 3)
    frames[0, 1, 1, 0] = 255.0
    with pytest.raises(errors.InputError, match=r"frame 0 has pixel values from 0\S* to 255, but an IMAGE holds"):
        vfi(nodes, frames)
    frames = torch.rand(2, 8, 8, 3)
    frames[1, 2, 2, 1] = -1.0
    with pytest.raises(errors.InputError, match=r"frame 1 has pixel values from -1 to 0\.\d+, but an IMAGE holds"):
        vfi(nodes, frames)


@pytest.mark.parametrize(
    ("multiplier", "message"),
    [
        ("2", "text"),
        (2.5, "multiplier must be a whole number, got 2.5; convert float schedules"),
        (True, "whole number"),
        (0, "at least 1"),
        ([2, -1], "entry 1 is -1"),
        ([2, 2.5], "entry 1 must be a whole number, got 2.5"),
        ([0, 0, 0], "every multiplier the schedule gives the 3 frame pair"),
        (object(), "whole number or a list"),
        (["a"], "entry 0"),
    ],
)
def test_bad_multipliers_are_clear_errors(nodes, errors, blend, multiplier, message: str) -> None:
    with pytest.raises(errors.InputError, match=message):
        vfi(nodes, numbered_frames(4), multiplier)


def test_multiplier_accepts_numpy_tensor_tuple_and_whole_float(nodes, blend) -> None:
    frames = numbered_frames(3)
    expected = len(vfi(nodes, frames, 3))
    for multiplier in (np.int64(3), np.int32(3), torch.tensor(3), 3.0, (3, 3), torch.tensor([3, 3])):
        assert len(vfi(nodes, frames, multiplier)) == expected


def test_scale_factor_and_precision_are_checked_when_a_prompt_is_queued(pack) -> None:
    for name in ("AMT VFI", "AMT Model Loader"):
        validate = pack.NODE_CLASS_MAPPINGS[name].VALIDATE_INPUTS
        assert validate(scale_factor=0.5) is True and validate() is True
        assert validate(scale_factor=None) is True  # linked from another node: ComfyUI passes None at queue time
        assert "scale factor 0.3 is not usable" in validate(scale_factor=0.3)
        assert "must be in (0, 1]" in validate(scale_factor=1.5)
        assert "scale factor 0.2 is below 0.25" in validate(scale_factor=0.2)
        assert validate(precision="fp32") is True and validate(precision="bf16") is True
        assert "fp16 is not supported on the CPU" in validate(precision="fp16")  # these tests run on the CPU
        assert "precision must be one of" in validate(precision="fp64")  # ComfyUI's own list check is off


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"precision": "fp64"}, "precision must be one of"),
        ({"precision": "fp16"}, "fp16 is not supported on the CPU"),
        ({"correlation": "sparse"}, "correlation must be one of"),
        ({"scale_factor": 0.3}, "Allowed scale_factor values"),
        ({"clear": 0}, "clear_cache_after_n_frames must be at least 1"),
        ({"clear": 1.5}, "clear_cache_after_n_frames must be a whole number, got 1.5; use e.g. 1 or 10"),
    ],
)
def test_bad_options_are_clear_errors(nodes, errors, blend, options: dict, message: str) -> None:
    with pytest.raises(errors.InputError, match=message):
        vfi(nodes, numbered_frames(2), **options)


def test_unknown_checkpoint_lists_what_is_available_and_where_to_put_it(nodes, errors, standin_dir: Path) -> None:
    with pytest.raises(errors.CheckpointNotFoundError) as caught:
        vfi(nodes, numbered_frames(2), ckpt="amt-xl.pth")
    message = str(caught.value)
    assert "'amt-xl.pth' was not found" in message and "amt-s.pth" in message
    assert "Put AMT checkpoint files" in message and str(standin_dir) in message


def test_corrupt_checkpoint_names_the_file(nodes, errors, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "broken-amt.pth").write_bytes(b"not a checkpoint at all")
    monkeypatch.setenv("AMT_VFI_MODELS", str(tmp_path))
    with pytest.raises(errors.CheckpointError, match=re.escape(str(tmp_path / "broken-amt.pth"))):
        vfi(nodes, numbered_frames(2), ckpt="broken-amt.pth")


@pytest.mark.parametrize("file_name", ["amt-g.pth", "my model.safetensors"])
def test_another_variant_under_any_name_is_detected(nodes, blend, monkeypatch, tmp_path: Path, file_name: str) -> None:
    weights = standin_state_dict("amt-l")
    if file_name.endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file(weights, str(tmp_path / file_name))
    else:
        torch.save({"state_dict": weights}, tmp_path / file_name)
    monkeypatch.setenv("AMT_VFI_MODELS", str(tmp_path))
    vfi(nodes, numbered_frames(2), ckpt=file_name)
    assert blend[0].model.spec.name.lower() == "amt-l"


# -- a good ComfyUI citizen -------------------------------------------------------------------------


def test_model_is_loaded_once_and_reused(nodes, pack, blend, monkeypatch: pytest.MonkeyPatch) -> None:
    model_cache = pack.amt_vfi.engine.model_cache
    model_cache.release_models()
    loads = []
    real_load = model_cache.load_model

    def counting_load(*args, **kwargs):
        loads.append(args)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(model_cache, "load_model", counting_load)
    frames = numbered_frames(3)
    vfi(nodes, frames)
    vfi(nodes, frames, 4)
    assert len(loads) == 1
    assert blend[0].model is blend[-1].model


def test_progress_device_and_cache_release_inside_comfyui(nodes, blend, fake_comfy) -> None:
    output = vfi(nodes, numbered_frames(5), 3, clear=2)
    assert fake_comfy.device_calls >= 1
    (bar,) = fake_comfy.bars
    assert bar.total == bar.current == len(output) == 13
    assert bar.updates == [1] * 13  # one step per output frame
    assert fake_comfy.empty_calls == 3  # after pairs 2 and 4, and once at the end
    assert fake_comfy.interrupt_checks == 4  # once before every pair


@pytest.mark.parametrize(("clear", "skip", "expected"), [(1, "", 5), (100, "", 1), (2, "1", 2), (1, "0,1,2,3", 1)])
def test_cache_release_count(nodes, blend, fake_comfy, clear: int, skip: str, expected: int) -> None:
    vfi(nodes, numbered_frames(5), 2, states(nodes, skip, True), clear=clear)
    assert fake_comfy.empty_calls == expected


def test_cancel_is_honoured_between_pairs(nodes, blend, fake_comfy) -> None:
    fake_comfy.interrupt_after = 2
    with pytest.raises(fake_comfy.InterruptProcessingException):
        vfi(nodes, numbered_frames(6), 3)
    assert len(blend) == 2


def test_cancel_is_honoured_inside_a_pair_with_many_time_steps(nodes, fake_comfy) -> None:
    fake_comfy.interrupt_after = 2  # the check before the pair, then one between decoder batches
    with pytest.raises(fake_comfy.InterruptProcessingException):
        vfi(nodes, torch.rand(2, 32, 32, 3), 41)  # 40 new frames: 5 batches of 8
    assert fake_comfy.interrupt_checks == 3


def test_output_is_the_one_preallocated_tensor(nodes, blend, monkeypatch: pytest.MonkeyPatch) -> None:
    allocated = []
    real_allocate = nodes._allocate_output

    def spy(count, height, width):
        allocated.append(real_allocate(count, height, width))
        return allocated[-1]

    monkeypatch.setattr(nodes, "_allocate_output", spy)
    cats = []
    real_cat = torch.cat
    monkeypatch.setattr(torch, "cat", lambda *a, **k: cats.append(1) or real_cat(*a, **k))
    output = vfi(nodes, numbered_frames(5, 16, 24), 4)
    (buffer,) = allocated
    assert output is buffer and output.shape == (17, 16, 24, 3) and output.dtype == torch.float32
    assert not cats


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc for the resident set size")
def test_peak_memory_of_a_100_frame_run_stays_near_input_plus_output(tmp_path: Path) -> None:
    """100 frames of 256x256 at x2 (199 output frames): the run may add the output (156 MB) and small
    per-pair buffers to the resident memory, not a second copy of the output (a list + concatenation).

    The peak is the kernel's high-water mark reset just before the call (/proc/self/clear_refs), or,
    where that is not allowed, the largest of frequent samples taken while the node runs."""
    script = f"""
        import importlib.util, json, os, sys, threading, torch
        spec = importlib.util.spec_from_file_location("{PACK}", {str(ROOT / "__init__.py")!r})
        pack = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = pack
        spec.loader.exec_module(pack)
        engine = pack.amt_vfi.engine.interpolator
        def blend(self, f0, f1, times):
            return engine._PendingFrames.done(torch.stack([(1 - t) * f0[..., :3] + t * f1[..., :3] for t in times]))
        engine.Interpolator._launch_pair = blend
        node = pack.NODE_CLASS_MAPPINGS["AMT VFI"]()
        node.vfi("amt-s.pth", torch.rand(2, 256, 256, 3), 1, 2)  # warm up: model, allocator
        frames = torch.rand(100, 256, 256, 3)
        def status(field):
            with open("/proc/self/status") as f:
                return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field))
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset the peak resident set size (VmHWM) to the current one
            reset = status("VmHWM") <= status("VmRSS") + (8 << 20)
        except OSError:
            reset = False
        samples, done = [], threading.Event()
        def sample():
            while not done.is_set():
                samples.append(status("VmRSS"))
                done.wait(0.0005)
        before = status("VmRSS")
        sampler = threading.Thread(target=sample)
        sampler.start()
        (out,) = node.vfi("amt-s.pth", frames, 1, 2)
        done.set()
        sampler.join()
        peak = status("VmHWM") if reset else max(samples)
        print(json.dumps({{"before": before, "peak": peak, "out": out.nelement() * 4, "n": len(out), "reset": reset}}))
    """
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["n"] == 199
    growth = result["peak"] - result["before"]
    assert 0.9 * result["out"] < growth < 1.2 * result["out"] + 48 * 2**20, result  # list + cat: ~2x output


# -- checkpoint folders inside ComfyUI --------------------------------------------------------------


@pytest.fixture
def fake_folder_paths(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> SimpleNamespace:
    """A `folder_paths` like ComfyUI 0.3.x: no `frame_interpolation` key yet."""
    base = tmp_path / "ComfyUI"
    module = types.ModuleType("folder_paths")
    module.models_dir = str(base / "models")
    module.supported_pt_extensions = {".pth", ".pt", ".safetensors", ".ckpt"}
    module.folder_names_and_paths = {
        "checkpoints": ([str(base / "models" / "checkpoints")], module.supported_pt_extensions),
        "custom_nodes": ([str(base / "custom_nodes")], set()),
    }
    module.get_folder_paths = lambda key: list(module.folder_names_and_paths[key][0])
    monkeypatch.setitem(sys.modules, "folder_paths", module)
    monkeypatch.delenv("AMT_VFI_MODELS")
    return SimpleNamespace(module=module, base=base)


def test_checkpoint_folders_inside_comfyui(pack, fake_folder_paths) -> None:
    host = pack.amt_vfi.comfy.host
    models = pack.amt_vfi.comfy.models
    base = fake_folder_paths.base
    dirs = host.checkpoint_dirs()
    registered = fake_folder_paths.module.folder_names_and_paths["frame_interpolation"]
    assert registered[0] == [str(base / "models" / "frame_interpolation")] and ".safetensors" in registered[1]
    seed_ckpts = base / "custom_nodes" / "ComfyUI-Frame-Interpolation" / "ckpts" / "amt"
    assert dirs[:3] == [base / "models" / "frame_interpolation" / "amt", base / "models" / "amt", seed_ckpts]
    assert dirs[-1] == base / "models" / "frame_interpolation"
    assert models.primary_folder() == base / "models" / "frame_interpolation" / "amt"  # downloads go here
    seed_ckpts.mkdir(parents=True)
    torch.save({"state_dict": standin_state_dict("amt-s")}, seed_ckpts / "gopro_amt-s.pth")
    assert models.resolve("gopro_amt-s.pth") == seed_ckpts / "gopro_amt-s.pth"  # a migrating user's file
    for disabled, name in (
        ("ComfyUI-Frame-Interpolation.disabled", "amt-l.pth"),  # renamed by hand
        (".disabled/comfyui-frame-interpolation@1_0_7", "amt-g.pth"),  # parked by ComfyUI-Manager
        (".disabled/ComfyUI-Frame-Interpolation", "my-amt.pth"),  # older Manager versions, no version
    ):
        folder = base / "custom_nodes" / disabled / "ckpts" / "amt"
        folder.mkdir(parents=True)
        torch.save({"state_dict": standin_state_dict("amt-s")}, folder / name)
        assert models.resolve(name) == folder / name  # the seed pack disabled by hand or by ComfyUI-Manager
    shared = base / "models" / "frame_interpolation"
    shared.mkdir(parents=True)
    for name in ("rife47.pth", "film_net_fp32.pt", "amt-finetuned.safetensors"):
        (shared / name).write_bytes(b"")
    names = pack.NODE_CLASS_MAPPINGS["AMT VFI"].INPUT_TYPES()["required"]["ckpt_name"][0]
    assert "amt-finetuned.safetensors" in names and "rife47.pth" not in names and "film_net_fp32.pt" not in names


def test_offline_download_failure_says_where_to_put_the_file(pack, errors, fake_folder_paths, monkeypatch) -> None:
    import urllib.error

    def offline(url, destination, name, progress):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(pack.amt_vfi.checkpoints.store, "_fetch", offline)
    folder = fake_folder_paths.base / "models" / "frame_interpolation" / "amt"
    with pytest.raises(errors.CheckpointNotFoundError) as caught:
        vfi(pack.amt_vfi.comfy.nodes, numbered_frames(2), ckpt="amt-g.pth")
    message = str(caught.value)
    assert "huggingface.co/lalala125/AMT/resolve/main/amt-g.pth" in message and str(folder) in message
    assert not [p for p in folder.iterdir() if ".partial-" in p.name]  # no half-written file left


def test_a_gpu_run_asks_comfyui_to_make_room_first(nodes, blend, fake_comfy) -> None:
    freed: list[tuple[int, torch.device]] = []
    model_management = sys.modules["comfy.model_management"]
    model_management.free_memory = lambda memory, device, keep_loaded=(): freed.append((memory, device))
    nodes.host.make_room(torch.device("cuda", 0), 3 << 30)
    assert freed == [(3 << 30, torch.device("cuda", 0))]
    vfi(nodes, numbered_frames(3), 2)  # on the CPU there is nothing to unload
    assert len(freed) == 1


def test_errors_are_named_by_package_not_by_node_folder_path(pack, errors) -> None:
    # ComfyUI shows "<module>.<class>" of an error; the pack's modules live under its folder's path.
    assert pack.__name__ == "amt-vfi-pack" and errors.__name__ == "amt-vfi-pack.amt_vfi.errors"
    assert f"{errors.InputError.__module__}.{errors.InputError.__qualname__}" == "amt_vfi.errors.InputError"
    assert errors.AmtVfiError.__module__ == "amt_vfi.errors"
    assert pack.amt_vfi.media.errors.OutputWriteError.__module__ == "amt_vfi.media.errors"
    import pickle

    import amt_vfi.errors  # the installed package, as the CLI and Ray workers use it: names unchanged

    error = pickle.loads(pickle.dumps(amt_vfi.errors.InputError("frames must be RGB")))
    assert type(error) is amt_vfi.errors.InputError and str(error) == "frames must be RGB"
