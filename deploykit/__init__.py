"""deploykit: classic CNNs from PyTorch to fast, verified inference artifacts."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("deploykit")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"

from deploykit.errors import DeployKitError

__all__ = ["DeployKitError", "__version__"]
