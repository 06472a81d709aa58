"""The builder's pure-Python parts: options, flags and the one-line message of a failed build."""

from __future__ import annotations

from pathlib import Path

from deploykit.backends.tensorrt.builder import EngineOptions, _build_failure

LOG = [
    "[I] [MemUsageChange] Init CUDA: CPU +2, GPU +0, now: CPU 30, GPU 300 (MiB)",
    "[E] 4: Internal Error (Could not find any implementation for node /conv1/Conv due to insufficient "
    "workspace. See verbose log for requested sizes.)",
    "[E] 2: [builder.cpp::buildSerializedNetwork::751] Error Code 2: Internal Error "
    "(Assertion engine != nullptr failed.)",
]


def test_workspace_too_small_says_to_raise_it():
    msg = _build_failure(Path("/a/model.onnx"), EngineOptions(workspace_mb=1), LOG, "/a/build.log")
    assert msg.startswith("/a/model.onnx: TensorRT could not build an engine (4: Internal Error (Could not find")
    assert msg.endswith("the 1 MB workspace is probably too small; raise --workspace")


def test_other_failures_point_at_the_log():
    msg = _build_failure(Path("m.onnx"), EngineOptions(), LOG, "/x/build.log")
    assert msg.endswith("; see the build log /x/build.log")
    assert "no error logged" in _build_failure(Path("m.onnx"), EngineOptions(), [], None)


def test_flags_record_strong_typing_and_tf32_never_a_precision_flag():
    for precision in ("fp32", "fp16", "int8", "best"):
        flags = EngineOptions(precision=precision).flags
        assert flags["strongly_typed"] is True and flags["tf32"] is False
        assert not {"fp16", "int8", "bf16"} & set(flags)  # precision comes from the graph, not from flags
    assert EngineOptions(precision="fp32", tf32=True).flags["tf32"] is True
    assert EngineOptions(precision="int8", version_compatible=True).to_dict()["version_compatible"] is True
    assert EngineOptions(hardware_compat="same-cc").flags["hardware_compat"] == "same-cc"
