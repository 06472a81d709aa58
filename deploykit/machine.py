"""What the machine is: CPU vendor, generation and the instruction sets that decide speed.

One description serves every latency record, every benchmark file name and every choice that
depends on the silicon (bfloat16 training, the INT8 layout). Reading it never needs torch or a
GPU, and never fails: an unreadable ``/proc/cpuinfo`` or an unknown CPU is described as
"unknown".
"""

from __future__ import annotations

import functools
import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

CPUINFO = Path("/proc/cpuinfo")
# A file in /proc/cpuinfo's format to describe instead of this machine's CPU: makes every decision
# deploykit takes per CPU (INT8 weight layout, bf16, advice) testable for another CPU on this one
# (``make test-avx2`` describes a Zen 3). Never set in a deployment.
CPUINFO_ENV = "DEPLOYKIT_CPUINFO"

# /proc/cpuinfo flag -> the name deploykit reports. Order = most capable last within a group.
_FEATURE_FLAGS = {
    "avx2": "avx2",
    "fma": "fma",
    "f16c": "f16c",
    "avx_vnni": "avx_vnni",
    "avx512f": "avx512f",
    "avx512bw": "avx512bw",
    "avx512_vnni": "avx512_vnni",
    "avx512_bf16": "avx512_bf16",
    "avx512_fp16": "avx512_fp16",
    "amx_tile": "amx_tile",
    "amx_int8": "amx_int8",
    "amx_bf16": "amx_bf16",
    "amx_fp16": "amx_fp16",
}


@dataclass(frozen=True)
class CpuInfo:
    """The CPU as far as a deployment decision is concerned."""

    vendor: str = "unknown"  # "amd", "intel", "arm", ... or "unknown"
    model: str = "unknown"  # the marketing name, e.g. "AMD EPYC 9R14"
    generation: str = "unknown"  # e.g. "zen3", "sapphire-rapids"; "unknown" where no table names it
    family: int | None = None
    model_id: int | None = None
    features: tuple[str, ...] = ()  # the flags of _FEATURE_FLAGS this CPU has

    def has(self, feature: str) -> bool:
        return feature in self.features

    @property
    def vnni(self) -> bool:
        """8-bit dot products in one instruction (AVX-512 VNNI, AVX-VNNI or AMX)."""
        return any(self.has(f) for f in ("avx512_vnni", "avx_vnni", "amx_int8"))

    @property
    def native_bf16(self) -> bool:
        """bfloat16 arithmetic in hardware; elsewhere PyTorch emulates it, several times slower."""
        return self.has("avx512_bf16") or self.has("amx_bf16")

    @property
    def native_fp16(self) -> bool:
        return self.has("avx512_fp16") or self.has("amx_fp16")

    @property
    def isa(self) -> str:
        """The one instruction-set tag that matters most for speed here (used in file names)."""
        if self.has("amx_int8") or self.has("amx_bf16"):
            return "amx"
        if self.has("avx512_vnni"):
            return "avx512vnni"
        if self.has("avx512f"):
            return "avx512"
        if self.has("avx_vnni"):
            return "avx2vnni"
        if self.has("avx2"):
            return "avx2"
        return "unknown" if not self.features else "sse"

    def int8_note(self) -> str | None:
        """Why INT8 on this CPU may not beat FP32, or None when it has 8-bit dot products."""
        if self.vnni:
            return None
        if self.isa == "unknown":
            return "the CPU's instruction sets are unknown, so INT8 speed cannot be predicted"
        return (
            f"this CPU ({self.model}) has no VNNI: 8-bit dot products take three instructions "
            f"({self.isa.upper()}), so INT8 gains little over FP32"
        )

    def bf16_note(self) -> str | None:
        """Why bfloat16 is slow here, or None when it is native."""
        if self.native_bf16:
            return None
        return (
            f"this CPU ({self.model}) has no native bfloat16 (AVX-512 BF16 or AMX): "
            "PyTorch emulates it, typically 3-6x slower than float32"
        )


# AMD: (family, inclusive model ranges) -> Zen generation. Families 0x17/0x19/0x1A are Zen 1-5.
_AMD_ZEN = (
    (0x17, range(0x00, 0x30), "zen1"),  # Zen and Zen+ (Naples, Summit/Pinnacle Ridge, Raven)
    (0x17, range(0x30, 0x100), "zen2"),  # Rome, Matisse, Renoir, Van Gogh, Mendocino
    (0x19, range(0x10, 0x20), "zen4"),  # Genoa
    (0x19, range(0x60, 0x80), "zen4"),  # Raphael, Phoenix
    (0x19, range(0xA0, 0xB0), "zen4"),  # Bergamo, Siena
    (0x19, range(0x00, 0x100), "zen3"),  # Milan, Vermeer, Cezanne, Rembrandt
    (0x1A, range(0x00, 0x100), "zen5"),  # Turin, Granite Ridge, Strix
)


def _amd_generation(family: int | None, model_id: int | None, features: tuple[str, ...]) -> str:
    if family is None or model_id is None:
        return "unknown"
    for fam, models, gen in _AMD_ZEN:
        if family == fam and model_id in models:
            # A hypervisor may report Zen 4's model ids with its AVX-512 masked, or the reverse.
            if gen == "zen3" and "avx512f" in features:
                return "zen4"
            return gen
    return "unknown"


# Intel family 6: model id -> generation, for the parts whose instruction sets decide CPU inference
# speed (VNNI, AVX-512 BF16/FP16, AMX). Intel's own numbering (the SDM's model table).
_INTEL_MODELS = {
    0x55: "skylake-sp",  # Skylake-SP; Cascade Lake and Cooper Lake share the id (told apart below)
    0x6A: "ice-lake-sp",
    0x6C: "ice-lake-sp",
    0x8F: "sapphire-rapids",
    0xCF: "emerald-rapids",
    0xAD: "granite-rapids",
    0xAE: "granite-rapids",
    0xAF: "sierra-forest",
    0x97: "alder-lake",
    0x9A: "alder-lake",
    0xB7: "raptor-lake",
    0xBA: "raptor-lake",
    0xBF: "raptor-lake",
    0xAA: "meteor-lake",
    0xAC: "meteor-lake",
    0xC5: "arrow-lake",
    0xC6: "arrow-lake",
    0xBD: "lunar-lake",
    0xA7: "rocket-lake",
    0x8C: "tiger-lake",
    0x8D: "tiger-lake",
    0x7D: "ice-lake",
    0x7E: "ice-lake",
}
# What each generation cannot have: a hypervisor may report a model id whose part lacks the
# instruction sets it passes through (seen: id 0xA7, a Rocket Lake, with AMX). Then the features
# decide, since they are what the kernels run on.
_INTEL_NO_AMX = {g for g in _INTEL_MODELS.values() if g not in ("sapphire-rapids", "emerald-rapids", "granite-rapids")}


def _intel_generation(family: int | None, model_id: int | None, features: tuple[str, ...]) -> str:
    """The Intel generation; from the features alone where the model id contradicts them.

    By features, AMX with FP16 is Granite Rapids and AMX without it Sapphire Rapids (Emerald Rapids
    has the same instruction sets, so the kernels cannot tell the two apart either).
    """
    if family != 6 or model_id is None:
        return "unknown"
    gen = _INTEL_MODELS.get(model_id, "unknown")
    if gen == "skylake-sp":
        if "avx512_bf16" in features:
            gen = "cooper-lake"
        elif "avx512_vnni" in features:
            gen = "cascade-lake"
    amx = "amx_int8" in features or "amx_bf16" in features
    if amx and (gen == "unknown" or gen in _INTEL_NO_AMX):
        return "granite-rapids" if "amx_fp16" in features else "sapphire-rapids"
    return gen


def _vendor(vendor_id: str, model: str) -> str:
    text = f"{vendor_id} {model}".lower()
    for key, name in (("amd", "amd"), ("intel", "intel"), ("arm", "arm"), ("ampere", "arm")):
        if key in text:
            return name
    return "unknown"


def parse_cpuinfo(text: str) -> CpuInfo:
    """A CpuInfo from the text of /proc/cpuinfo (the first processor's block)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    if not fields:
        return CpuInfo()
    flags = set(fields.get("flags", "").split())
    features = tuple(name for flag, name in _FEATURE_FLAGS.items() if flag in flags)
    model = fields.get("model name") or fields.get("cpu model") or fields.get("hardware") or "unknown"
    vendor = _vendor(fields.get("vendor_id", ""), model)

    def _int(key: str) -> int | None:
        try:
            return int(fields[key], 0)
        except (KeyError, ValueError):
            return None

    family, model_id = _int("cpu family"), _int("model")
    if vendor == "amd":
        generation = _amd_generation(family, model_id, features)
    elif vendor == "intel":
        generation = _intel_generation(family, model_id, features)
    else:
        generation = "unknown"
    return CpuInfo(
        vendor=vendor, model=model, generation=generation, family=family, model_id=model_id, features=features
    )


def bf16_refusal(cpu: CpuInfo | None = None) -> str | None:
    """None where this CPU computes bfloat16 natively (AVX-512 BF16, AMX), else why bf16 is refused.

    Without native support a runtime emulates bf16 by conversions around FP32 arithmetic: slower
    than FP32 and less accurate, so it is never offered there.
    """
    c = cpu or cpu_info()
    if c.native_bf16:
        return None
    return f"this CPU ({c.model}, {c.isa}) has no native bfloat16 arithmetic (AVX-512 BF16 or AMX)"


@functools.lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    """This machine's CPU; "unknown" fields where /proc/cpuinfo cannot be read."""
    source = Path(os.environ[CPUINFO_ENV]) if os.environ.get(CPUINFO_ENV) else CPUINFO
    try:
        text = source.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return CpuInfo(model=platform.processor() or "unknown")
    return parse_cpuinfo(text)


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class GpuInfo:
    name: str
    count: int = 1
    memory_gb: float | None = None
    capability: str | None = None  # compute capability, "9.0"
    driver: str | None = None
    cuda_runtime: str | None = None


def _nvidia_smi(*query: str) -> list[str] | None:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run(
            [smi, f"--query-gpu={','.join(query)}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    lines = [ln for ln in out.strip().splitlines() if ln.strip()]
    return lines or None


def nvidia_driver() -> str | None:
    """The kernel module's version, else nvidia-smi's (sandboxed kernels have no /proc/driver/nvidia)."""
    try:
        m = re.search(r"Kernel Module\s+([\d.]+)", Path("/proc/driver/nvidia/version").read_text())
        if m:
            return m.group(1)
    except OSError:
        pass
    lines = _nvidia_smi("driver_version")
    first = lines[0].strip() if lines else ""
    return first if re.fullmatch(r"[\d.]+", first) else None


def gpu_info() -> GpuInfo | None:
    """The first NVIDIA GPU: through torch when it is already imported, else through nvidia-smi."""
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if not torch.cuda.is_available():
                return None
            idx = torch.cuda.current_device()
            props = torch.cuda.get_device_properties(idx)
            return GpuInfo(
                name=torch.cuda.get_device_name(idx),
                count=torch.cuda.device_count(),
                memory_gb=round(props.total_memory / 2**30, 1),
                capability=f"{props.major}.{props.minor}",
                driver=nvidia_driver(),
                cuda_runtime=torch.version.cuda,
            )
        except Exception:  # noqa: BLE001 - a broken CUDA install must not break a description
            return None
    lines = _nvidia_smi("name", "memory.total", "compute_cap", "driver_version")
    if not lines:
        return None
    parts = [p.strip() for p in lines[0].split(",")]
    if len(parts) != 4:
        return None
    name, mem, cap, driver = parts
    try:
        memory_gb: float | None = round(float(mem) / 1024, 1)
    except ValueError:
        memory_gb = None
    return GpuInfo(
        name=name, count=len(lines), memory_gb=memory_gb, capability=cap or None, driver=driver or nvidia_driver()
    )


def _version(pkg: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(pkg)
    except PackageNotFoundError:
        return None


VERSIONED = ("deploykit", "torch", "onnx", "onnxruntime", "onnxruntime-gpu", "tensorrt", "onnxslim", "numpy")


@dataclass
class Machine:
    """Everything a latency figure depends on, as recorded beside it."""

    cpu: CpuInfo = field(default_factory=cpu_info)
    logical_cores: int = field(default_factory=lambda: os.cpu_count() or 1)
    usable_cores: int = field(default_factory=usable_cores)
    gpu: GpuInfo | None = None
    os: str = field(default_factory=lambda: f"{platform.system()} {platform.release()}")
    python: str = field(default_factory=platform.python_version)

    def slug(self) -> str:
        return machine_slug(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``cpu`` stays the model string (older readers use it), details beside it."""
        return {
            "cpu": self.cpu.model,
            "cpu_vendor": self.cpu.vendor,
            "cpu_generation": self.cpu.generation,
            "isa": self.cpu.isa,
            "cpu_features": list(self.cpu.features),
            "native": {"int8_vnni": self.cpu.vnni, "bf16": self.cpu.native_bf16, "fp16": self.cpu.native_fp16},
            "logical_cores": self.logical_cores,
            "usable_cores": self.usable_cores,
            "os": self.os,
            "python": self.python,
            "gpu": asdict(self.gpu) if self.gpu else None,
        }


def describe_machine(*, threads: bool = True) -> dict[str, Any]:
    """CPU (generation, ISA), cores, GPU, library versions and thread settings, as a dict."""
    info = Machine(gpu=gpu_info()).to_dict()
    info["versions"] = {p: v for p in VERSIONED if (v := _version(p))}
    if threads:
        t: dict[str, Any] = {
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "MKL_NUM_THREADS": os.environ.get("MKL_NUM_THREADS"),
        }
        torch = sys.modules.get("torch")
        if torch is not None:
            t["torch_intra_op"] = torch.get_num_threads()
            t["torch_inter_op"] = torch.get_num_interop_threads()
        info["threads"] = t
    return info


def _slugify(text: str) -> str:
    text = text.lower().replace("(r)", "").replace("(tm)", "")
    text = re.sub(r"\b(processor|cpu @.*|\d+-core)\b", "", text)
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


def machine_slug(machine: dict[str, Any] | None = None) -> str:
    """A file-name id naming the CPU generation and ISA, e.g. ``amd-epyc-zen4-avx512vnni-2cpu``.

    A GPU machine is named by its GPU (``nvidia-h200``). Two CPUs of different generations never
    share a name, so their results never overwrite each other.
    """
    m = machine if machine is not None else describe_machine(threads=False)
    if m.get("gpu"):
        return _slugify(m["gpu"]["name"]) or "gpu"
    parts = [_slugify(str(m.get("cpu") or "unknown"))]
    gen = m.get("cpu_generation")
    if gen and gen != "unknown" and gen not in parts[0]:
        parts.append(gen)
    isa = m.get("isa")
    if isa:
        parts.append(isa)
    parts.append(f"{m.get('usable_cores') or m.get('logical_cores') or 0}cpu")
    return "-".join(p for p in parts if p) or "machine"


def machine_line(m: dict[str, Any]) -> str:
    """One line naming the machine a report was measured on (CPU generation and ISA included)."""
    gpu = m.get("gpu")
    gpu_text = (
        f"; GPU {gpu['name']} (driver {gpu.get('driver') or '?'}, CUDA {gpu.get('cuda_runtime') or '?'})"
        if gpu
        else "; no GPU"
    )
    gen = m.get("cpu_generation")
    cpu = m.get("cpu")
    if gen and gen != "unknown":
        cpu = f"{cpu} [{gen}]"
    if m.get("isa"):
        cpu = f"{cpu} [{m['isa']}]"
    v = m.get("versions", {})
    libs = ", ".join(f"{k} {v[k]}" for k in ("torch", "onnxruntime", "onnxruntime-gpu", "tensorrt") if k in v)
    cores = f"{m.get('usable_cores')} usable of {m.get('logical_cores')} cores"
    return f"{cpu} ({cores}){gpu_text}" + (f"; {libs}" if libs else "")
