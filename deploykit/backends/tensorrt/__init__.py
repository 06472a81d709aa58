"""TensorRT backend: engine building and a runner, imported lazily so no GPU is needed to import deploykit."""

from __future__ import annotations

from types import ModuleType

from deploykit.errors import MissingExtraError


def import_tensorrt(purpose: str = "The TensorRT backend") -> ModuleType:
    """Import the tensorrt package at first use, or say which extra installs it."""
    try:
        import tensorrt  # type: ignore[import-not-found]
    except ImportError:
        raise MissingExtraError("tensorrt", "tensorrt", purpose) from None
    return tensorrt


def tensorrt_available() -> bool:
    """True when the tensorrt package imports (a GPU is still needed to run engines)."""
    try:
        import_tensorrt()
    except MissingExtraError:
        return False
    return True


def __getattr__(name: str):
    # TensorRTRunner / build_engine live in submodules that only touch tensorrt when used.
    if name == "TensorRTRunner":
        from deploykit.backends.tensorrt.runner import TensorRTRunner

        return TensorRTRunner
    if name == "build_engine":
        from deploykit.backends.tensorrt.builder import build_engine

        return build_engine
    raise AttributeError(name)


__all__ = ["TensorRTRunner", "build_engine", "import_tensorrt", "tensorrt_available"]
