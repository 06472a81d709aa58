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
    "import_onnx": "deploykit.export.from_onnx",
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

# Entry points a plain install (the torch-free runtime) can use; every other one needs the
# pipeline extra, checked when it is looked up so nothing runs halfway before torch is missed.
_RUNTIME = {"Artifact"}
_PIPELINE_MODULES = ("torch", "onnx")

__all__ = ["DeployKitError", "__version__", *_LAZY]


def _require_pipeline(purpose: str) -> None:
    """Raise the one-line MissingExtraError when torch or onnx (the pipeline extra) is absent."""
    from importlib.util import find_spec

    from deploykit.errors import EXTRA_MODULES, MissingExtraError

    for module in _PIPELINE_MODULES:
        try:
            spec = find_spec(module)
        except ImportError:  # a finder that refuses the name outright
            spec = None
        if spec is None:
            package, extra = EXTRA_MODULES[module]
            raise MissingExtraError(package, extra, purpose)


def __getattr__(name: str):
    if name in _LAZY:
        if name not in _RUNTIME:
            _require_pipeline(f"deploykit.{name}")
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'deploykit' has no attribute {name!r}")
