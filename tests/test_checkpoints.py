"""Checkpoint files: formats, variant detection, refusal of unsafe or foreign files, lookup, download."""

from __future__ import annotations

import http.client
import os
import pickle
import time
from pathlib import Path

import pytest
import torch

import amt_vfi
from amt_vfi.checkpoints import store
from amt_vfi.errors import CheckpointError, CheckpointNotFoundError, InputError


def test_official_pth_loads_with_variant_from_keys(amt_s_path: Path, tmp_path: Path) -> None:
    disguised = tmp_path / "amt-g.pth"  # the name says G, the weights say S
    disguised.write_bytes(amt_s_path.read_bytes())
    model = amt_vfi.load_model(disguised)
    assert model.spec.name == "amt-s"
    assert not model.training
    assert all(not p.requires_grad for p in model.parameters())


def test_bare_state_dict_and_safetensors_load_identically(amt_s_path: Path, tmp_path: Path) -> None:
    state = torch.load(amt_s_path, weights_only=True)["state_dict"]
    torch.save(state, tmp_path / "bare.pth")
    converted = tmp_path / "weights.safetensors"
    assert amt_vfi.convert_to_safetensors(amt_s_path, converted).name == "amt-s"
    for path in (tmp_path / "bare.pth", converted):
        loaded = amt_vfi.load_model(path).state_dict()
        assert loaded.keys() == state.keys()
        assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_load_model_honours_dtype(amt_s_path: Path) -> None:
    model = amt_vfi.load_model(amt_s_path, device="cpu", dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    with pytest.raises(InputError, match="dtype must be torch.float32, torch.float16 or torch.bfloat16, got 'fp16'"):
        amt_vfi.load_model(amt_s_path, dtype="fp16")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="device 'cuda' was asked for but this PyTorch sees no CUDA GPU"):
            amt_vfi.load_model(amt_s_path, device="cuda")


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's note on the hand-made pickle
def test_pickle_that_would_run_code_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "payload-ran"
    evil = tmp_path / "amt-s.pth"
    with open(evil, "wb") as handle:
        pickle.dump({"state_dict": _RunsCode(marker)}, handle)
    torch.save({"state_dict": {"x": _RunsCode(marker)}}, tmp_path / "zipped.pth")
    legacy = tmp_path / "legacy.pth"  # the pre-zip format: the payload sits in the fourth pickle
    torch.save(
        {"state_dict": {"x": torch.zeros(2)}, "y": _RunsCode(marker)}, legacy, _use_new_zipfile_serialization=False
    )
    for path in (evil, tmp_path / "zipped.pth", legacy):
        with pytest.raises(CheckpointError, match=r"would run code \(posix.mkdir\)") as caught:
            amt_vfi.load_model(path)
        assert str(path) in str(caught.value)
    assert not marker.exists()


def test_corrupt_file_names_the_file(tmp_path: Path) -> None:
    # b"junkjunk..." is a plain pickle whose first opcode ('j') makes torch's unpickler fail with a KeyError.
    for name, content in (
        ("broken.pth", b"\x00garbage" * 100),
        ("junk.pth", b"junkjunkjunk"),
        ("broken.safetensors", b"\x00garbage" * 100),
    ):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(CheckpointError, match="not a readable") as caught:
            amt_vfi.load_model(path)
        assert str(path) in str(caught.value)


def test_foreign_architecture_is_named(tmp_path: Path) -> None:
    path = tmp_path / "rife.pth"
    torch.save({"state_dict": {"block0.conv0.weight": torch.zeros(3, 3)}}, path)
    with pytest.raises(CheckpointError, match="not an AMT checkpoint.*block0.conv0.weight"):
        amt_vfi.load_model(path)


def test_damaged_amt_checkpoint_lists_missing_and_reshaped_keys(amt_s_path: Path, tmp_path: Path) -> None:
    state = torch.load(amt_s_path, weights_only=True)["state_dict"]
    del state["decoder1.convblock.2.bias"]
    state["comb_block.1.weight"] = torch.zeros(5)
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "damaged.pth"
    torch.save({"state_dict": state}, path)
    with pytest.raises(CheckpointError) as caught:
        amt_vfi.load_model(path)
    message = str(caught.value)
    assert "looks like amt-s" in message
    assert "missing keys: decoder1.convblock.2.bias" in message
    assert "unexpected keys: extra.weight" in message
    assert "comb_block.1.weight (5,) != (18,)" in message


def test_nan_weights_are_blamed_on_the_checkpoint(amt_s_path: Path, tmp_path: Path) -> None:
    state = torch.load(amt_s_path, weights_only=True)["state_dict"]
    state["decoder1.convblock.2.bias"][3] = float("nan")
    state["comb_block.0.weight"][0, 0, 0, 0] = float("inf")
    path = tmp_path / "diverged.pth"
    torch.save({"state_dict": state}, path)
    with pytest.raises(CheckpointError, match=r"holds NaN or infinite weights \(comb_block.0.weight, decoder1"):
        amt_vfi.load_model(path)


def test_other_layouts_and_unloadable_tensors_are_named(amt_s_path: Path, tmp_path: Path) -> None:
    state_dict = torch.load(amt_s_path, weights_only=True)["state_dict"]
    compiled = tmp_path / "compiled.pth"
    torch.save({"state_dict": {f"_orig_mod.{key}": value for key, value in state_dict.items()}}, compiled)
    assert amt_vfi.load_model(compiled).spec.name == "amt-s"  # saved from a torch.compile'd module
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"model": state_dict, "epoch": 3}, wrapped)
    with pytest.raises(CheckpointError, match=r"keep them under 'state_dict'\); it holds model, epoch"):
        amt_vfi.load_model(wrapped)
    meta = tmp_path / "meta.pth"
    torch.save({key: torch.empty(value.shape, device="meta") for key, value in state_dict.items()}, meta)
    with pytest.raises(CheckpointError, match="meta.pth holds tensors that cannot be loaded"):
        amt_vfi.load_model(meta)
    empty = tmp_path / "empty.pth"
    torch.save({"state_dict": {}}, empty)
    with pytest.raises(CheckpointError, match="empty.pth holds no tensors"):
        amt_vfi.load_model(empty)
    zero = tmp_path / "zero.pth"
    zero.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"zero.pth is empty \(0 bytes\)"):
        amt_vfi.load_model(zero)
    not_a_folder = tmp_path / "models-file"
    not_a_folder.write_text("")
    with pytest.raises(CheckpointNotFoundError, match="models-file: it is a file, not a folder"):
        store.download_checkpoint("amt-s.pth", not_a_folder, progress=False)
    folder = tmp_path / "folder.pth"
    folder.mkdir()
    with pytest.raises(CheckpointError, match="folder.pth is a folder, not a checkpoint file"):
        amt_vfi.load_model(folder)


def test_a_file_replaced_with_the_same_size_and_time_is_read_again(amt_s_path: Path, tmp_path: Path) -> None:
    from amt_vfi.engine import model_cache

    path = tmp_path / "amt-s.pth"
    state_dict = torch.load(amt_s_path, weights_only=True)["state_dict"]
    torch.save({"state_dict": state_dict}, path)
    first = model_cache.cached_model(path, torch.device("cpu"), torch.float32)
    key = next(iter(state_dict))
    state_dict[key] = state_dict[key] + 1.0  # other weights, same shapes, so the same file size
    replacement = tmp_path / "new" / "amt-s.pth"  # the same name: torch.save records it inside the file
    replacement.parent.mkdir()
    torch.save({"state_dict": state_dict}, replacement)
    assert replacement.stat().st_size == path.stat().st_size
    stat = path.stat()
    os.utime(replacement, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # as cp -p or rsync -a leave it
    os.replace(replacement, path)
    second = model_cache.cached_model(path, torch.device("cpu"), torch.float32)
    assert second is not first and not torch.equal(second.state_dict()[key], first.state_dict()[key])


def test_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        amt_vfi.load_model(tmp_path / "nope.pth")


def test_lookup_order_env_then_host_then_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, amt_s_path: Path
) -> None:
    env_dir, host_dir, cache_dir = (tmp_path / n for n in ("env", "host", "cache"))
    for folder in (env_dir, host_dir / "amt", cache_dir):
        folder.mkdir(parents=True)
    monkeypatch.setenv("AMT_VFI_MODELS", str(env_dir))
    monkeypatch.setenv("AMT_VFI_CACHE", str(cache_dir))
    (cache_dir / "amt-s.pth").write_bytes(amt_s_path.read_bytes())
    assert store.resolve_checkpoint("amt-s", download=False) == cache_dir / "amt-s.pth"
    (host_dir / "amt" / "amt-s.safetensors").write_bytes(b"x")
    assert store.resolve_checkpoint("amt-s.pth", [host_dir], download=False) == host_dir / "amt" / "amt-s.safetensors"
    (env_dir / "amt-s.pth").write_bytes(b"x")
    assert store.resolve_checkpoint("amt-s.pth", [host_dir], download=False) == env_dir / "amt-s.pth"
    assert store.search_dirs([host_dir]) == [env_dir, host_dir, cache_dir]


def test_a_path_is_that_file_even_with_an_official_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, amt_s_path: Path
) -> None:
    monkeypatch.setenv("AMT_VFI_MODELS", str(tmp_path / "models"))
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "amt-s.pth").write_bytes(b"another file")
    mine = tmp_path / "mine" / "amt-s.pth"
    mine.parent.mkdir()
    mine.write_bytes(amt_s_path.read_bytes())
    monkeypatch.chdir(tmp_path)
    assert store.resolve_checkpoint(mine) == mine
    assert store.resolve_checkpoint("mine/amt-s.pth") == Path("mine/amt-s.pth")
    assert store.resolve_checkpoint("amt-s.pth") == tmp_path / "models" / "amt-s.pth"  # a bare name is a name
    assert amt_vfi.Interpolator(mine).model.spec.name == "amt-s"
    with pytest.raises(CheckpointNotFoundError, match="mine is a folder, not a checkpoint file"):
        store.resolve_checkpoint(tmp_path / "mine")
    with pytest.raises(CheckpointNotFoundError, match="amt-l.pth does not exist"):
        store.resolve_checkpoint(tmp_path / "mine" / "amt-l.pth")


def test_download_is_verified_and_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, amt_s_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    (served / "amt-s.pth").write_bytes(amt_s_path.read_bytes())
    (served / "amt-l.pth").write_bytes(b"<html>rate limited</html>")
    monkeypatch.setattr(store, "DOWNLOAD_URL", served.as_uri() + "/{name}")
    target = tmp_path / "models"
    assert store.download_checkpoint("amt-s.pth", target, progress=False) == target / "amt-s.pth"
    assert amt_vfi.load_model(target / "amt-s.pth").spec.name == "amt-s"
    umask = os.umask(0o022)
    os.umask(umask)
    assert (target / "amt-s.pth").stat().st_mode & 0o777 == 0o666 & ~umask  # readable by others, like any file
    with pytest.raises(CheckpointError) as caught:
        store.download_checkpoint("amt-l.pth", target, progress=False)
    message = str(caught.value)
    assert f"what {served.as_uri()}/amt-l.pth sent is not a valid AMT checkpoint" in message
    assert f"put it in {target}" in message and ".partial-" not in message  # not the temp, gone by now
    assert sorted(p.name for p in target.iterdir()) == ["amt-s.pth"]


def test_a_broken_http_answer_is_a_download_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def garbled(url, destination, name, progress):
        raise http.client.IncompleteRead(b"")

    monkeypatch.setattr(store, "_fetch", garbled)
    with pytest.raises(CheckpointNotFoundError, match=r"could not download amt-s.pth from .*\(IncompleteRead"):
        store.download_checkpoint("amt-s.pth", tmp_path, progress=False)


def test_partial_downloads_a_day_old_are_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old, recent = tmp_path / ".amt-s.pth.partial-1a2b3c4d", tmp_path / ".amt-s.pth.partial-5e6f7a8b"
    for temp in (old, recent):
        temp.write_bytes(b"half a checkpoint")
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(old, (two_days_ago, two_days_ago))
    monkeypatch.setattr(store, "DOWNLOAD_URL", "http://127.0.0.1:9/{name}")
    with pytest.raises(CheckpointNotFoundError):
        store.download_checkpoint("amt-s.pth", tmp_path, progress=False)
    assert not old.exists() and recent.exists()  # another process may be downloading into the recent one


def test_folders_from_the_environment_expand_the_home_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AMT_VFI_MODELS", "~/amtmodels")
    monkeypatch.delenv("AMT_VFI_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "relative-cache")  # relative: ignored, as the XDG rules say
    assert store.search_dirs() == [tmp_path / "amtmodels", tmp_path / ".cache" / "amt-vfi"]


def test_offline_download_says_where_to_put_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "DOWNLOAD_URL", "http://127.0.0.1:9/{name}")
    monkeypatch.setenv("AMT_VFI_MODELS", str(tmp_path / "models"))
    with pytest.raises(CheckpointNotFoundError) as caught:
        store.resolve_checkpoint("amt-g.pth")
    message = str(caught.value)
    assert "could not download amt-g.pth" in message
    assert f"put it in {tmp_path / 'models'}" in message
    assert not any((tmp_path / "models").iterdir())


def test_unknown_name_lists_official_names(tmp_path: Path) -> None:
    with pytest.raises(CheckpointNotFoundError, match="official names: amt-s.pth"):
        store.resolve_checkpoint("amt-xl.pth")


def test_default_download_url_is_the_official_hub() -> None:
    assert store.DOWNLOAD_URL.format(name="amt-s.pth") == "https://huggingface.co/lalala125/AMT/resolve/main/amt-s.pth"


def test_convert_command_verifies_and_refuses_to_overwrite(amt_s_path: Path, tmp_path: Path, capsys) -> None:
    from amt_vfi.convert import main

    target = tmp_path / "amt-s.safetensors"
    assert main([str(amt_s_path), str(target)]) == 0
    assert "wrote" in capsys.readouterr().out and amt_vfi.load_model(target).spec.name == "amt-s"
    assert main([str(amt_s_path), str(target)]) == 1
    assert "use --overwrite" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="exists; use --overwrite"):
        amt_vfi.convert_to_safetensors(amt_s_path, target)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"nope")
    assert main([str(junk), str(tmp_path / "j.safetensors")]) == 1
    assert str(junk) in capsys.readouterr().err
    assert main([str(amt_s_path), str(tmp_path / "c.pth")]) == 1
    assert "must end in .safetensors, got c.pth" in capsys.readouterr().err
    assert main([str(target), str(target), "--overwrite"]) == 1
    assert "is the checkpoint being converted" in capsys.readouterr().err
    assert main([str(amt_s_path), str(junk / "x.safetensors")]) == 1  # a file where the folder should be
    assert f"cannot write {junk / 'x.safetensors'}" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["amt-s.safetensors", "junk.pth"]


def test_tied_tensors_convert(amt_s_path: Path, tmp_path: Path) -> None:
    state_dict = torch.load(amt_s_path, weights_only=True)["state_dict"]
    prelus = [key for key, value in state_dict.items() if key.endswith(".weight") and value.shape == (20,)][:2]
    state_dict[prelus[1]] = state_dict[prelus[0]]  # one tensor under two keys, as tied weights are saved
    tied = tmp_path / "tied.pth"
    torch.save({"state_dict": state_dict}, tied)
    amt_vfi.convert_to_safetensors(tied, tmp_path / "tied.safetensors")
    converted = amt_vfi.load_model(tmp_path / "tied.safetensors").state_dict()
    assert torch.equal(converted[prelus[1]], state_dict[prelus[0]])
