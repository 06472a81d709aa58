"""One PyTorch inference loop: an N,C,H,W numpy array (or its batches) through a model to numpy.

Export's parity reference, the accuracy harness, the reference checkpoints' scoring and the torch
runner all feed a model through here, so they agree on the device transfer, dtype, memory format,
eval mode and which output counts as the logits (the first, as with Inception's aux heads).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from deploykit.errors import DeployKitError
from deploykit.progress import ProgressFn, task

if TYPE_CHECKING:
    import torch

Outputs = Literal["first", "all"]


def to_tensor(
    x: np.ndarray,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> torch.Tensor:
    """A numpy batch as the tensor a model on ``device`` takes (cast to ``dtype``, memory format)."""
    import torch

    t = torch.from_numpy(x).to(device, non_blocking=True)
    if dtype is not None:
        t = t.to(dtype)
    if channels_last:
        t = t.contiguous(memory_format=torch.channels_last)
    return t


def to_numpy(y: Any, outputs: Outputs = "first") -> np.ndarray | list[np.ndarray]:
    """A model's output as float32 numpy on the CPU: the first (main) output, or all in order.

    A tuple or list (Inception's ``(logits, aux)``) and a mapping (its values in order) count as
    several outputs; anything that is not a tensor is a one-line error.
    """
    import torch

    if isinstance(y, torch.Tensor):
        ys = [y]
    elif isinstance(y, (tuple, list)):
        ys = list(y)
    elif isinstance(y, Mapping):
        ys = list(y.values())
    else:
        raise DeployKitError(f"model returned {type(y).__name__}, expected tensor(s)")
    if outputs == "first":
        ys = ys[:1]
    bad = [type(t).__name__ for t in ys if not isinstance(t, torch.Tensor)]
    if not ys or bad:
        raise DeployKitError(f"model returned {', '.join(bad) or 'no outputs'}, expected tensor(s)")
    arrays = [t.detach().float().cpu().numpy() for t in ys]
    return arrays[0] if outputs == "first" else arrays


def run_model(
    model: Any,
    inputs: np.ndarray | Iterable[np.ndarray],
    batch_size: int | None = None,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    channels_last: bool = False,
    autocast: torch.dtype | None = None,
    outputs: Outputs = "first",
    eval_mode: bool = True,
    progress: bool | str | ProgressFn | None = False,
    label: str = "running PyTorch",
) -> np.ndarray | list[np.ndarray]:
    """Run ``model`` under ``torch.inference_mode`` and return its outputs as float32 numpy.

    ``inputs`` is one N,C,H,W array or an iterable of such batches; ``batch_size`` caps how many
    images one forward sees (None: each batch whole). The model must already sit on ``device``;
    inputs are moved there, cast to ``dtype`` and made channels-last when asked, and ``autocast``
    runs the forward under ``torch.autocast`` with that dtype. ``eval_mode`` puts the model in
    eval mode for the call and restores its training flag after. Progress counts images through
    :mod:`deploykit.progress` (a callback gets ``(label, done, total)``; total is None for an
    iterable). Returns the first output's array, or a list of every output with ``outputs="all"``.
    """
    import torch

    if batch_size is not None and batch_size < 1:
        raise DeployKitError(f"batch size {batch_size} must be at least 1")
    if outputs not in ("first", "all"):
        raise DeployKitError(f"outputs '{outputs}' is not one of first, all")
    whole = isinstance(inputs, np.ndarray)
    batches: Iterable[np.ndarray] = [inputs] if whole else inputs  # type: ignore[list-item]
    total = len(inputs) if whole else None  # type: ignore[arg-type]
    was_training = model.training
    if eval_mode:
        model.eval()
    parts: list[list[np.ndarray]] = []
    try:
        with task(progress, label, total) as advance:
            for batch in batches:
                step = batch_size or max(len(batch), 1)
                for start in range(0, max(len(batch), 1), step):  # an empty batch still runs once
                    xb = batch[start : start + step]
                    with torch.inference_mode(), _autocast(device, autocast):
                        y = model(to_tensor(xb, device, dtype, channels_last))
                    out = to_numpy(y, outputs)
                    parts.append([out] if isinstance(out, np.ndarray) else out)
                    advance(len(xb))
    finally:
        if eval_mode:
            model.train(was_training)
    if not parts:
        raise DeployKitError("no batches to run the model on (the input iterable was empty)")
    if len(parts) == 1:  # the usual single-batch call: no copy
        joined = parts[0]
    else:
        if len({len(p) for p in parts}) != 1:
            raise DeployKitError("model returned a different number of outputs from one batch to the next")
        joined = [np.concatenate(column) for column in zip(*parts)]
    return joined[0] if outputs == "first" else joined


def _autocast(device: str | torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    import torch

    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)
