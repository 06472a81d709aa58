"""The engine guard: recorded engine records against a stand-in for what is running (no TensorRT needed)."""

from __future__ import annotations

import pytest

from deploykit.backends.tensorrt.guard import (
    CROSS_MAJOR,
    HARDWARE_COMPAT,
    RunningEnv,
    build_problem,
    check_engine,
    incompatibility,
    rebuild_command,
)
from deploykit.errors import DeployKitError

H100 = RunningEnv("10.3.0", "NVIDIA H100 80GB HBM3", "9.0")


def record(**over):
    rec = {
        "tensorrt": "10.3.0",
        "gpu": "NVIDIA H100 80GB HBM3",
        "compute_capability": "9.0",
        "precision": "fp16",
        "batch": {"min": 1, "opt": 8, "max": 32},
        "flags": {"hardware_compat": "none", "version_compatible": False},
        "parent": {"path": "/art/resnext50-fp16"},
    }
    flags = over.pop("flags", {})
    rec.update(over)
    rec["flags"] = {**rec["flags"], **flags}
    return rec


def test_same_version_and_gpu_runs():
    assert incompatibility(record(), H100) is None
    check_engine(record(), H100, where="e", rebuild="deploykit build x")


@pytest.mark.parametrize(
    "running, words",
    [
        (
            RunningEnv("10.4.0", "NVIDIA H100 80GB HBM3", "9.0"),
            "built with TensorRT 10.3.0 and TensorRT 10.4.0 is running",
        ),
        (
            RunningEnv("10.3.0", "NVIDIA A100-SXM4-80GB", "8.0"),
            "built for NVIDIA H100 80GB HBM3 (sm 9.0) and this GPU is NVIDIA A100",
        ),
        (RunningEnv("10.3.0", "NVIDIA H100 PCIe", "9.0"), "this GPU is NVIDIA H100 PCIe (sm 9.0)"),
    ],
)
def test_default_engine_refused_elsewhere(running, words):
    with pytest.raises(DeployKitError) as e:
        check_engine(record(), running, where="/art/e", rebuild=rebuild_command(record(), "/art/e"))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("/art/e: engine cannot run here: ")
    assert words in msg
    assert msg.endswith(
        "rebuild it here with: deploykit build /art/resnext50-fp16 --precision fp16 --batch 1:8:32 --out /art/e --force"
    )


def test_version_compatible_engine_runs_on_later_same_major():
    rec = record(flags={"version_compatible": True})
    assert incompatibility(rec, RunningEnv("10.7.0", H100.gpu, "9.0")) is None
    assert "version-compatible from TensorRT 10.3.0" in incompatibility(rec, RunningEnv("10.2.1", H100.gpu, "9.0"))
    # portable in version only: still tied to the GPU
    assert "built for" in incompatibility(rec, RunningEnv("10.7.0", "NVIDIA L4", "8.9"))


def test_version_compatible_across_majors_only_where_nvidia_supports_it():
    # TensorRT 11.4 support matrix: 10.x version-compatible engines run on 11.x, 8.x ones on 10.x; nothing else
    assert CROSS_MAJOR == {8: (10,), 10: (11,)}
    vc = record(flags={"version_compatible": True})
    assert incompatibility(vc, RunningEnv("11.0.0", H100.gpu, "9.0")) is None
    assert incompatibility(vc, RunningEnv("11.4.1", H100.gpu, "9.0")) is None
    why = incompatibility(vc, RunningEnv("12.0.0", H100.gpu, "9.0"))
    assert why == (
        "it is version-compatible from TensorRT 10.3.0 to later 10.x releases and 11.x, and TensorRT 12.0.0 is running"
    )
    assert (
        incompatibility(
            record(tensorrt="8.6.1", flags={"version_compatible": True}), RunningEnv("10.0.1", H100.gpu, "9.0")
        )
        is None
    )
    assert "8.6.1" in incompatibility(
        record(tensorrt="8.6.1", flags={"version_compatible": True}), RunningEnv("11.0.0", H100.gpu, "9.0")
    )
    # never backwards: an 11.x engine on a 10.x runtime, version-compatible or not
    eleven = record(tensorrt="11.4.0", flags={"version_compatible": True})
    assert "later 11.x releases, and TensorRT 10.13.3 is running" in incompatibility(
        eleven, RunningEnv("10.13.3", H100.gpu, "9.0")
    )
    # without the flag an engine stays on the exact version
    assert "built with TensorRT 10.3.0" in incompatibility(record(), RunningEnv("11.0.0", H100.gpu, "9.0"))


def test_hardware_compatible_engine_runs_on_ampere_and_newer():
    rec = record(flags={"hardware_compat": "ampere+"})
    assert incompatibility(rec, RunningEnv("10.3.0", "NVIDIA A10G", "8.6")) is None
    assert incompatibility(rec, RunningEnv("10.3.0", "NVIDIA L4", "8.9")) is None
    why = incompatibility(rec, RunningEnv("10.3.0", "Tesla T4", "7.5"))
    assert "Ampere and newer" in why and "sm 7.5" in why
    assert "TensorRT 10.3.0" in incompatibility(rec, RunningEnv("10.4.0", "NVIDIA L4", "8.9"))
    cmd = rebuild_command(rec, "/x")
    assert "--hardware-compat ampere+" in cmd and "--version-compatible" not in cmd


def test_rebuild_command_keeps_portability_flags():
    rec = record(flags={"hardware_compat": "ampere+", "version_compatible": True}, precision="int8")
    assert rebuild_command(rec, "/a b") == (
        "deploykit build /art/resnext50-fp16 --precision int8 --batch 1:8:32 "
        "--hardware-compat ampere+ --version-compatible --out '/a b' --force"
    )


def test_unknown_hardware_level_and_bad_capability():
    assert "unknown" in incompatibility(record(flags={"hardware_compat": "hopper+"}), H100)
    with pytest.raises(DeployKitError, match="compute capability 'sm90'"):
        incompatibility(record(compute_capability="sm90"), H100)


def test_ampere_plus_is_refused_on_integrated_gpus():
    rec = record(flags={"hardware_compat": "ampere+"})
    orin = RunningEnv("10.3.0", "Orin", "8.7", integrated=True)
    why = incompatibility(rec, orin)
    assert "does not support on integrated GPUs (Jetson, DRIVE)" in why and "Orin" in why
    assert incompatibility(rec, RunningEnv("10.3.0", "NVIDIA A10G", "8.6")) is None
    # a default engine built on that Orin runs there: only hardware compatibility is unsupported
    assert incompatibility(record(gpu="Orin", compute_capability="8.7"), orin) is None
    assert RunningEnv("10.3.0", "x", "8.0").integrated is False  # the default: a discrete GPU


def test_same_cc_runs_on_any_gpu_of_that_compute_capability():
    rec = record(flags={"hardware_compat": "same-cc"})
    assert "same-cc" in HARDWARE_COMPAT
    assert incompatibility(rec, RunningEnv("10.3.0", "NVIDIA H100 PCIe", "9.0")) is None
    assert incompatibility(rec, RunningEnv("10.3.0", "NVIDIA GH200 480GB", "9.0")) is None
    why = incompatibility(rec, RunningEnv("10.3.0", "NVIDIA L4", "8.9"))
    assert why == "it is hardware-compatible with GPUs of sm 9.0 (same-cc), and this NVIDIA L4 is sm 8.9"
    assert "--hardware-compat same-cc" in rebuild_command(rec, "/x")


def test_build_problem_names_what_this_gpu_cannot_build():
    assert build_problem("none", RunningEnv("10.3.0", "Tesla V100", "7.0")) is None
    assert build_problem("same-cc", RunningEnv("10.3.0", "Tesla T4", "7.5")) is None
    assert "sm 7.5 or newer" in build_problem("same-cc", RunningEnv("10.3.0", "Tesla V100", "7.0"))
    assert "sm 8.0 or newer" in build_problem("ampere+", RunningEnv("10.3.0", "Tesla T4", "7.5"))
    assert "integrated" in build_problem("ampere+", RunningEnv("10.3.0", "Orin", "8.7", integrated=True))
    assert build_problem("same-cc", RunningEnv("10.3.0", "Orin", "8.7", integrated=True)) is None


def test_rebuild_command_keeps_tf32():
    assert rebuild_command(record(precision="fp32", flags={"tf32": True}), "/x").endswith("--tf32 --out /x --force")
