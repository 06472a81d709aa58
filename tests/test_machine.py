"""The one machine description: CPU generation and ISA from /proc/cpuinfo, never a crash."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploykit import machine
from deploykit.machine import CpuInfo, describe_machine, machine_slug, nvidia_driver, parse_cpuinfo


def _cpuinfo(model: str, family: int, model_id: int, flags: str, vendor: str = "AuthenticAMD") -> str:
    block = (
        f"processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model_id}\n"
        f"model name\t: {model}\nflags\t\t: {flags}\n"
    )
    return block + "\n" + block.replace("processor\t: 0", "processor\t: 1")


ZEN1 = _cpuinfo("AMD EPYC 7551 32-Core Processor", 23, 1, "fpu sse2 avx avx2 fma f16c")
ZEN3 = _cpuinfo("AMD EPYC 7B13", 25, 1, "fpu sse2 avx avx2 fma f16c vaes")
ZEN4 = _cpuinfo("AMD EPYC 9R14", 25, 17, "avx2 fma avx512f avx512bw avx512_vnni avx512_bf16")
SPR = _cpuinfo(
    "Intel(R) Xeon(R) Platinum 8480+",
    6,
    143,
    "avx2 avx512f avx512_vnni avx512_bf16 avx512_fp16 amx_tile amx_int8 amx_bf16",
    "GenuineIntel",
)

# A KVM guest seen here: model id 167 (0xA7, a Rocket Lake, which has no AMX) with AMX passed through.
SPR_MASKED = SPR.replace("model\t\t: 143", "model\t\t: 167").replace("Platinum 8480+", "Processor")
GNR = _cpuinfo(
    "Intel(R) Xeon(R) 6972P",
    6,
    173,
    "avx2 avx512f avx512_vnni avx512_bf16 avx512_fp16 amx_tile amx_int8 amx_bf16 amx_fp16",
    "GenuineIntel",
)
CASCADE = _cpuinfo("Intel(R) Xeon(R) Platinum 8259CL", 6, 85, "avx2 avx512f avx512bw avx512_vnni", "GenuineIntel")
ROCKET = _cpuinfo("Intel(R) Core(TM) i9-11900K", 6, 167, "avx2 avx512f avx512bw avx512_vnni", "GenuineIntel")


@pytest.mark.parametrize(
    ("text", "gen", "isa", "vnni", "bf16"),
    [
        (ZEN1, "zen1", "avx2", False, False),
        (ZEN3, "zen3", "avx2", False, False),
        (ZEN4, "zen4", "avx512vnni", True, True),
        (SPR, "sapphire-rapids", "amx", True, True),
        (SPR_MASKED, "sapphire-rapids", "amx", True, True),
        (GNR, "granite-rapids", "amx", True, True),
        (CASCADE, "cascade-lake", "avx512vnni", True, False),
        (ROCKET, "rocket-lake", "avx512vnni", True, False),
    ],
)
def test_generation_and_features_come_from_cpuinfo(text, gen, isa, vnni, bf16):
    cpu = parse_cpuinfo(text)
    assert (cpu.generation, cpu.isa, cpu.vnni, cpu.native_bf16) == (gen, isa, vnni, bf16)
    assert (cpu.int8_note() is None) == vnni and (cpu.bf16_note() is None) == bf16


def test_two_cpu_generations_never_share_a_result_name():
    names = set()
    for text in (ZEN1, ZEN3, ZEN4, SPR_MASKED):
        cpu = parse_cpuinfo(text)
        m = machine.Machine(cpu=cpu, usable_cores=2).to_dict()
        names.add(machine_slug(m))
    assert names == {
        "amd-epyc-7551-zen1-avx2-2cpu",
        "amd-epyc-7b13-zen3-avx2-2cpu",
        "amd-epyc-9r14-zen4-avx512vnni-2cpu",
        "intel-xeon-sapphire-rapids-amx-2cpu",
    }


def test_a_gpu_machine_is_named_by_its_gpu():
    assert machine_slug({"gpu": {"name": "NVIDIA H100 80GB HBM3"}}) == "nvidia-h100-80gb-hbm3"


@pytest.mark.parametrize("text", ["", "garbage without colons\n", "processor : 0\nflags :\n"])
def test_unreadable_or_unknown_cpu_is_described_as_unknown(text):
    cpu = parse_cpuinfo(text)
    assert cpu.generation == "unknown" and cpu.isa == "unknown" and not cpu.vnni
    assert "unknown" in machine_slug(machine.Machine(cpu=cpu, usable_cores=1).to_dict())


def test_missing_proc_cpuinfo_is_not_a_crash(monkeypatch, tmp_path):
    monkeypatch.delenv(machine.CPUINFO_ENV, raising=False)  # make test-avx2 sets it
    monkeypatch.setattr(machine, "CPUINFO", tmp_path / "absent")
    machine.cpu_info.cache_clear()
    try:
        cpu = machine.cpu_info()
        assert cpu.vendor == "unknown" and cpu.generation == "unknown" and cpu.features == ()
        assert describe_machine()["isa"] == "unknown"
    finally:
        machine.cpu_info.cache_clear()


def test_this_machine_is_described():
    m = describe_machine()
    assert m["cpu"] and m["logical_cores"] >= 1 and m["usable_cores"] >= 1
    assert "onnxruntime" in m["versions"] and m["isa"] in (
        "sse",
        "avx2",
        "avx2vnni",
        "avx512",
        "avx512vnni",
        "amx",
        "unknown",
    )
    slug = machine_slug(m)
    assert slug and all(c.isalnum() or c == "-" for c in slug) and slug.endswith("cpu") == (m["gpu"] is None)


@pytest.mark.skipif(Path("/proc/driver/nvidia/version").exists(), reason="the kernel module answers first here")
@pytest.mark.parametrize(("printed", "expected"), [("580.159.04\n", "580.159.04"), ("No devices were found\n", None)])
def test_driver_version_falls_back_to_nvidia_smi(tmp_path, monkeypatch, printed, expected):
    """Sandboxed kernels (gVisor) have no /proc/driver/nvidia: nvidia-smi still names the driver."""
    smi = tmp_path / "nvidia-smi"
    smi.write_text(f"#!/bin/sh\nprintf '{printed.strip()}\\n'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert nvidia_driver() == expected
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert nvidia_driver() is None


def test_cpu_info_is_frozen():
    with pytest.raises(AttributeError):
        CpuInfo().vendor = "x"  # type: ignore[misc]


def test_bf16_is_offered_only_where_the_cpu_has_it():
    assert machine.bf16_refusal(parse_cpuinfo(ZEN4)) is None
    why = machine.bf16_refusal(parse_cpuinfo(ZEN3))
    assert why is not None and "AMD EPYC 7B13" in why and "avx2" in why and "\n" not in why


def test_deploykit_cpuinfo_describes_another_cpu(monkeypatch):
    from pathlib import Path

    from deploykit.quantize.placement import default_layout

    zen3 = Path(__file__).parent / "data" / "cpuinfo-zen3-avx2.txt"
    monkeypatch.setenv(machine.CPUINFO_ENV, str(zen3))
    machine.cpu_info.cache_clear()
    try:
        cpu = machine.cpu_info()
        assert cpu.generation == "zen3" and cpu.isa == "avx2" and not cpu.vnni
        assert machine.bf16_refusal() is not None and default_layout() == "avx2"
        assert machine_slug().startswith("amd-epyc-zen3-avx2")
    finally:
        monkeypatch.delenv(machine.CPUINFO_ENV)
        machine.cpu_info.cache_clear()
