"""Runners for whatever a harness command is pointed at, including a PyTorch model on ONNX Runtime.

``backends.make_runner`` runs what exists (an artifact, an ONNX file or proto, an engine, a
module on torch); running a PyTorch model on ONNX Runtime first needs an export, a stage above
the backends, so that step lives here.
"""

from __future__ import annotations

from typing import Any

from deploykit.backends import Runner, backend_name, make_runner
from deploykit.export.to_onnx import export_module
from deploykit.models.registry import looks_like_model_name
from deploykit.models.weights import load_model


def runner_for(
    target: Any,
    backend: str = "onnxruntime",
    *,
    weights: Any = None,
    num_classes: int | None = None,
    overrides: dict[str, Any] | None = None,
    precision: str | None = None,
    **kwargs: Any,
) -> Runner:
    """``make_runner``, plus: a PyTorch model (or zoo name) on ONNX Runtime runs its in-memory export."""
    import torch

    key = backend_name(backend)  # make_runner checks it is installed (after an engine's guard)
    if key == "onnxruntime" and (isinstance(target, torch.nn.Module) or looks_like_model_name(target)):
        from deploykit.errors import DeployKitError

        if precision not in (None, "fp32"):
            raise DeployKitError(
                f"onnxruntime on a PyTorch model runs its fp32 export; export an {precision} "
                "artifact first (deploykit export --fp16) to run that precision"
            )
        model = (
            target
            if isinstance(target, torch.nn.Module)
            else load_model(
                target,
                weights=None if weights is None else str(weights),
                num_classes=num_classes,
                overrides=overrides or None,
            )
        )
        runner = make_runner(
            export_module(model), backend=key, name=getattr(model, "model_name", type(model).__name__), **kwargs
        )
        runner.data_config = model.data_config
        runner.precision = "fp32"
        return runner
    return make_runner(
        target,
        backend=backend,
        weights=weights,
        num_classes=num_classes,
        overrides=overrides,
        precision=precision,
        **kwargs,
    )
