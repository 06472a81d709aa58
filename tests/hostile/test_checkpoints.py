"""Checkpoints from strangers: never executed, never half-loaded, always one line naming the file."""

from __future__ import annotations

import json
import os
import pickle
import struct

import pytest
import torch

from .helpers import assert_untouched, invoke, refused

EXPORT = ["export", "resnet18", "--num-classes", "10", "--input-size", "32", "-q", "--force"]


@pytest.fixture(scope="module")
def state_dict():
    from deploykit.models.weights import load_model

    return {k: v.clone() for k, v in load_model("resnet18", num_classes=10).state_dict().items()}


def _export_refused(weights, previous, *needles: str) -> str:
    out, before = previous
    line = refused(invoke(*EXPORT, "--weights", weights, "--out", out), str(weights), *needles)
    assert_untouched(out, before)
    return line


class _RunsCode:
    """Pickles to a call of ``fn(*args)``: what a malicious checkpoint does on an unsafe load."""

    def __init__(self, fn, *args) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


@pytest.mark.parametrize("how", ["torch.save", "raw pickle"])
@pytest.mark.parametrize("payload", ["open", "os.system"])
def test_pickle_that_runs_code_is_refused_and_never_runs(tmp_path, previous, how, payload):
    marker = tmp_path / "pwned"
    evil = _RunsCode(open, str(marker), "w") if payload == "open" else _RunsCode(os.system, f"touch {marker}")
    ckpt = tmp_path / "evil.pth"
    if how == "torch.save":
        torch.save({"conv1.weight": evil}, ckpt)
    else:
        ckpt.write_bytes(pickle.dumps({"conv1.weight": evil}, protocol=2))
    assert not marker.exists()
    line = _export_refused(ckpt, previous)
    assert "refused to load" in line or "truncated or corrupt" in line
    assert not marker.exists(), "the checkpoint's code ran"


@pytest.mark.parametrize(
    "obj, needle",
    [
        (42, "expected a state dict"),
        ({"conv1.weight": [1.0, 2.0]}, "entry 'conv1.weight' is a list, not a tensor"),
        ({"conv1.weight": "weights"}, "entry 'conv1.weight' is a str, not a tensor"),
        ({}, "holds no tensors"),
    ],
)
def test_pickle_of_non_tensors_is_refused(tmp_path, previous, obj, needle):
    ckpt = tmp_path / "odd.pt"
    torch.save(obj, ckpt)
    _export_refused(ckpt, previous, needle)


def _safetensors(tmp_path, state_dict):
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in state_dict.items()}, str(path))
    return path


def test_truncated_safetensors(tmp_path, previous, state_dict):
    path = _safetensors(tmp_path, state_dict)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    _export_refused(path, previous, "cannot read safetensors file, truncated or corrupt")


def test_truncated_torch_checkpoint(tmp_path, previous, state_dict):
    path = tmp_path / "w.pt"
    torch.save(state_dict, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    _export_refused(path, previous, "truncated or corrupt")


@pytest.mark.parametrize("header_len", [None, 2**62])
def test_safetensors_header_claiming_more_than_the_file_holds(tmp_path, previous, header_len):
    header = json.dumps(
        {"conv1.weight": {"dtype": "F32", "shape": [64, 3, 7, 7], "data_offsets": [0, 64 * 3 * 49 * 4]}}
    ).encode()
    data = b"\0" * 100  # far fewer bytes than the offsets claim
    path = tmp_path / "liar.safetensors"
    path.write_bytes(struct.pack("<Q", header_len or len(header)) + header + data)
    _export_refused(path, previous, "cannot read safetensors file")


@pytest.mark.parametrize("dtype", [torch.int32, torch.bool, torch.uint8])
def test_wrong_dtype_for_the_model(tmp_path, previous, state_dict, dtype):
    bad = dict(state_dict)
    bad["conv1.weight"] = torch.ones_like(bad["conv1.weight"], dtype=dtype)
    line = _export_refused(_safetensors(tmp_path, bad), previous, "wrong dtype", "conv1.weight")
    assert str(dtype).replace("torch.", "") in line


def test_wrong_shape_for_the_model(tmp_path, previous, state_dict):
    bad = dict(state_dict)
    bad["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    _export_refused(_safetensors(tmp_path, bad), previous, "wrong shape", "layer1.0.conv1.weight [64, 64, 1, 1]")


def test_weights_for_another_architecture(tmp_path, previous, state_dict):
    bad = {k.replace("layer", "stage"): v for k, v in state_dict.items()}
    _export_refused(_safetensors(tmp_path, bad), previous, "keys do not match resnet18")


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04garbage"])
def test_garbage_torch_file(tmp_path, previous, content):
    path = tmp_path / "junk.pth"
    path.write_bytes(content)
    _export_refused(path, previous, "truncated or corrupt")
