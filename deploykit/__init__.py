"""deploykit: classic CNNs from PyTorch to fast, verified inference artifacts."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("deploykit")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"

from deploykit.errors import DeployKitError

__all__ = ["DeployKitError", "__version__", "export_model"]


def __getattr__(name: str):
    # Library entry points load lazily so ``import deploykit`` stays light (no torch, no onnx).
    if name == "export_model":
        from deploykit.export.api import export_model

        return export_model
    raise AttributeError(f"module 'deploykit' has no attribute {name!r}")
