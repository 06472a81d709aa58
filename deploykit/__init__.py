"""deploykit: classic CNNs from PyTorch to fast, verified inference artifacts."""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("deploykit")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"

from deploykit.errors import DeployKitError

# Library entry points, one per CLI command; loaded lazily so ``import deploykit`` stays light
# (no torch, no onnx) and a command's heavy imports happen only when it is used.
_LAZY = {
    "list_models": "deploykit.models.registry",
    "create_model": "deploykit.models.registry",
    "load_model": "deploykit.models.weights",
    "export_model": "deploykit.export.api",
    "optimize_model": "deploykit.optimize",
    "optimize_file": "deploykit.optimize",
    "validate": "deploykit.harness.validate",
    "quantize_artifact": "deploykit.quantize",
    "build_engine_artifact": "deploykit.build",
    "make_runner": "deploykit.backends",
    "benchmark": "deploykit.harness.bench",
    "compare_backends": "deploykit.harness.compare",
    "reference_checkpoint": "deploykit.reference",
    "Artifact": "deploykit.artifact",
}

__all__ = ["DeployKitError", "__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'deploykit' has no attribute {name!r}")
