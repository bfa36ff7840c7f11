"""The pack inside a real ComfyUI server (the harness in ../shared/comfyui): it imports cleanly, runs the
harness's seed workflow and our example workflows, and saves the expected frames.

Skipped, with the reason, where the harness or its ComfyUI venv is absent (e.g. a user's clone).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
HARNESS = Path(__file__).resolve().parents[2] / "shared" / "comfyui"
PACK_NAME = "amt-vfi-pack"


def _harness_or_skip() -> None:
    venv = Path(os.environ.get("COMFY_VENV", "/tmp/comfyenv"))
    comfy_dir = Path(os.environ.get("COMFY_DIR", "/tmp/comfyui"))
    if not (HARNESS / "run_workflow.py").is_file():
        pytest.skip(f"no ComfyUI harness at {HARNESS} (it sits beside the project in the shared workspace)")
    if not (venv / "bin" / "python").is_file() or not (comfy_dir / "main.py").is_file():
        pytest.skip(
            f"the harness's ComfyUI is not set up (venv {venv}, source {comfy_dir}); "
            f"run `bash {HARNESS / 'setup.sh'}` (set COMFY_VENV / COMFY_DIR to use other places)"
        )


def _models(tmp_path: Path, layout: str, checkpoint: Path) -> Path:
    """A models folder with amt-s.pth where the given layout puts it (relative to ComfyUI's models/)."""
    folder = tmp_path / "models"
    (folder / layout).mkdir(parents=True)
    shutil.copyfile(checkpoint, folder / layout / "amt-s.pth")
    return folder


def _frames(out: Path, prefix: str) -> list[np.ndarray]:
    files = sorted(out.glob(f"{prefix}_*.png"))
    return [np.asarray(Image.open(f).convert("RGB")) for f in files]


def _shifted(later: np.ndarray, earlier: np.ndarray, dy: int = 3, dx: int = 6) -> bool:
    """The workflows crop one texture at offsets moving by (dx, dy) per frame: later[y, x] = earlier[y+dy, x+dx]."""
    return np.array_equal(later[:-dy, :-dx], earlier[dy:, dx:])


WORKFLOWS = [
    # (workflow, where amt-s.pth is put under models/, frames expected, positions of the input frames)
    (HARNESS / "workflows" / "amt_seed.json", "amt", 5, "amt", [0, 2, 4]),
    (ROOT / "example_workflows" / "amt_vfi_basic.json", "frame_interpolation/amt", 7, "amt_basic", [0, 3, 6]),
    (
        ROOT / "example_workflows" / "amt_vfi_schedule_skip.json",
        "frame_interpolation/amt",
        6,
        "amt_schedule",
        [0, 3, 4, 5],
    ),
]


@pytest.mark.parametrize(
    ("workflow", "layout", "count", "prefix", "originals"), WORKFLOWS, ids=[w[0].stem for w in WORKFLOWS]
)
def test_workflow_runs_in_a_real_comfyui_server(
    tmp_path: Path, amt_s_path: Path, workflow: Path, layout: str, count: int, prefix: str, originals: list[int]
) -> None:
    _harness_or_skip()
    out = tmp_path / "out"
    env = {key: value for key, value in os.environ.items() if key != "AMT_VFI_MODELS"}  # find it via ComfyUI
    env["AMT_VFI_CACHE"] = str(tmp_path / "cache")  # and never write to the real user cache
    command = [
        sys.executable,
        str(HARNESS / "run_workflow.py"),
        "--pack", str(ROOT),
        "--pack-name", PACK_NAME,
        "--pack-models-subdir", "",  # only ComfyUI's models/ folder holds the checkpoint
        "--workflow", str(workflow),
        "--models-dir", str(_models(tmp_path, layout, amt_s_path)),
        "--expect-frames", str(count),
        "--timeout", "240",
        "--out", str(out),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=420)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]

    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] and len(summary["outputs"]) == count
    assert set(summary["pack_nodes"]) >= {"AMT VFI", "Make Interpolation State List", "VFI FloatToInt"}

    log = (out / "comfyui.log").read_text(errors="replace")
    imports = [line for line in log.splitlines() if re.search(rf"seconds.*custom_nodes/{PACK_NAME}\s*$", line)]
    assert imports and "IMPORT FAILED" not in imports[0], imports
    ours = [line for line in log.splitlines() if f"custom_nodes/{PACK_NAME}/" in line]
    assert not ours, "the pack logged (a warning or a traceback?):\n" + "\n".join(ours)

    frames = _frames(out, prefix)
    assert len(frames) == count and all(frame.shape == (128, 192, 3) for frame in frames)
    for earlier, later in zip(originals, originals[1:], strict=False):
        assert _shifted(frames[later], frames[earlier]), f"frame {later} is not the input after frame {earlier}"
    new = [i for i in range(count) if i not in originals]
    for i in new:
        assert not any(np.array_equal(frames[i], frames[j]) for j in originals)


def _run_basic_workflow(tmp_path: Path, amt_s_path: Path, scale_factor: object) -> subprocess.CompletedProcess:
    """The basic example workflow with the AMT VFI node's scale_factor set to `scale_factor` (a value, or a
    link such as ["99", 0] to node 99, a PrimitiveFloat of 0.5)."""
    workflow = json.loads((ROOT / "example_workflows" / "amt_vfi_basic.json").read_text())
    workflow["99"] = {"class_type": "PrimitiveFloat", "inputs": {"value": 0.5}}
    (node,) = [node for node in workflow.values() if node.get("class_type") == "AMT VFI"]
    node["inputs"]["scale_factor"] = scale_factor
    changed = tmp_path / "workflow.json"
    changed.write_text(json.dumps(workflow))
    env = {key: value for key, value in os.environ.items() if key != "AMT_VFI_MODELS"}
    env["AMT_VFI_CACHE"] = str(tmp_path / "cache")
    command = [
        sys.executable,
        str(HARNESS / "run_workflow.py"),
        "--pack", str(ROOT),
        "--pack-name", PACK_NAME,
        "--workflow", str(changed),
        "--models-dir", str(_models(tmp_path, "frame_interpolation/amt", amt_s_path)),
        "--expect-frames", "7",
        "--timeout", "120",
        "--out", str(tmp_path / "out"),
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def test_an_unusable_scale_factor_is_refused_when_the_prompt_is_queued(tmp_path: Path, amt_s_path: Path) -> None:
    _harness_or_skip()
    done = _run_basic_workflow(tmp_path, amt_s_path, 0.3)  # the slider offers it; 16 / 0.3 is not whole
    assert done.returncode != 0
    report = done.stdout + done.stderr
    assert "rejected the workflow" in report, report[-3000:]
    assert "scale factor 0.3 is not usable" in report and "Allowed scale_factor values: 1.0, 0.8, 0.5" in report


def test_a_scale_factor_linked_from_another_node_is_checked_when_it_runs(tmp_path: Path, amt_s_path: Path) -> None:
    _harness_or_skip()
    done = _run_basic_workflow(tmp_path, amt_s_path, ["99", 0])
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert len(_frames(tmp_path / "out", "amt_basic")) == 7
