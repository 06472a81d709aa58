"""NVIDIA's real TensorRT Python bindings, importable on a machine without TensorRT or a GPU.

The ``tensorrt-cu12-bindings`` wheels (~1 MB) link only ten C entry points of libnvinfer,
libnvonnxparser and libnvinfer_plugin; every other call is virtual. Stub libraries exporting those
ten symbols (each returning NULL) let Python import the real module, so every class, method, enum
member and NVIDIA's pybind signatures can be read. Nothing can be built or run that way: the
contract tests use it to prove that every TensorRT name and call deploykit makes exists, with
arguments the signature accepts, in each supported version. Wheels are downloaded by version into
the cache and never vendored.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

# The newest 10.x and 11.x bindings; the contract test runs once per version.
VERSIONS = ("10.13.3.9", "11.4.0.106")
WHEEL = "tensorrt-cu12-bindings"
ENV_VERSION = "DK_TRT_BINDINGS"  # set in the subprocess that runs the contract suite for one version

_STUB_C = """
#include <stddef.h>
void* createInferBuilder_INTERNAL(void* l, int v){return NULL;}
void* createInferRefitter_INTERNAL(void* e, void* l, int v){return NULL;}
void* createInferRuntime_INTERNAL(void* l, int v){return NULL;}
void* createNvOnnxParserRefitter_INTERNAL(void* r, void* l, int v){return NULL;}
void* createNvOnnxParser_INTERNAL(void* n, void* l, int v){return NULL;}
void* getBuilderPluginRegistry(int t){return NULL;}
int getNvOnnxParserVersion(void){return 0;}
void* getPluginRegistry(void){return NULL;}
int initLibNvInferPlugins(void* l, const char* n){return 0;}
"""


def cache_root() -> Path:
    """Under deploykit's cache (``$DEPLOYKIT_CACHE``, else ``~/.cache/deploykit``)."""
    base = os.environ.get("DEPLOYKIT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "deploykit")
    return Path(base) / "trt-bindings"


def prepare(version: str) -> Path:
    """Download, unpack and stub one bindings version; returns its folder (``x/`` holds the package)."""
    d = cache_root() / version
    major = version.split(".")[0]
    pkg = d / "x" / "tensorrt_bindings"
    libs = [d / f"lib{name}.so.{major}" for name in ("nvinfer", "nvinfer_plugin", "nvonnxparser")]
    if pkg.is_dir() and all(p.is_file() for p in libs):
        return d
    d.mkdir(parents=True, exist_ok=True)
    wheels = list(d.glob("*.whl"))
    if not wheels:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
             "--python-version", "3.11", "--platform", "manylinux_2_28_x86_64", f"{WHEEL}=={version}", "-d", str(d)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        wheels = list(d.glob("*.whl"))
    with zipfile.ZipFile(wheels[0]) as z:
        z.extractall(d / "x")
    src = d / "stub.c"
    src.write_text(_STUB_C)
    for lib in libs:
        tmp = lib.with_name(lib.name + ".tmp")
        subprocess.run(["cc", "-shared", "-fPIC", f"-Wl,-soname,{lib.name}", "-o", str(tmp), str(src)], check=True)
        tmp.replace(lib)
    return d


def subprocess_env(version: str) -> dict[str, str]:
    """Environment for a process that imports this bindings version as ``tensorrt``."""
    d = prepare(version)
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(d), env.get("LD_LIBRARY_PATH", "")]))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(d / "x"), env.get("PYTHONPATH", "")]))
    env[ENV_VERSION] = version
    return env
