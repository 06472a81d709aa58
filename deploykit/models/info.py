"""What a model costs and how it is built: parameters, MACs and its stage-by-stage block structure."""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from deploykit.errors import DeployKitError

_CONTAINERS = (nn.Sequential, nn.ModuleDict, nn.ModuleList)


def count_params(model: nn.Module) -> int:
    """Number of parameters (buffers such as BatchNorm statistics excluded)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_size: Sequence[int]) -> int:
    """Multiply-accumulates of one eval-mode forward at batch 1, counted by torch's FLOP counter.

    ``input_size`` is (C, H, W). The forward runs on meta tensors (shapes only, no arithmetic),
    so it is instant even for ResNeXt-101 and leaves the model's own weights untouched.
    MACs = FLOPs / 2 over convolutions and matrix products, the usual convention.
    """
    c, h, w = (int(v) for v in input_size)
    counter = FlopCounterMode(display=False)
    with _eval_mode(model), counter:
        reason = _runs_at(model, _meta_state(model), c, h, w)
    if reason is not None:  # the feature map vanished: the input is too small for this network
        name = getattr(model, "model_name", type(model).__name__)
        raise DeployKitError(f"{name} cannot run on a {c}x{h}x{w} input ({reason})")
    return counter.get_total_flops() // 2


def _meta_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's parameters and buffers as meta tensors: shapes only, no memory, no arithmetic."""
    return {k: torch.empty_like(v, device="meta") for k, v in [*model.named_parameters(), *model.named_buffers()]}


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode for the block, then the mode the caller had."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _runs_at(model: nn.Module, meta: dict[str, torch.Tensor], c: int, h: int, w: int) -> str | None:
    """None when an eval-mode forward at (1, c, h, w) works on meta tensors, else the reason."""
    try:
        with torch.no_grad():
            torch.func.functional_call(model, meta, (torch.empty(1, c, h, w, device="meta"),))
    except RuntimeError as e:
        text = str(e).strip()
        return text.splitlines()[0] if text else type(e).__name__
    return None


def check_input_size(model: nn.Module, input_size: Sequence[int]) -> None:
    """Refuse an input too small for the network, naming the smallest square size that works.

    Strided stems and pools shrink the feature map; below some size a kernel no longer fits and
    export or inference would fail deep inside torch. The check runs on meta tensors (shapes only),
    so it costs milliseconds.
    """
    c, h, w = (int(v) for v in input_size)
    meta = _meta_state(model)
    with _eval_mode(model):
        reason = _runs_at(model, meta, c, h, w)
        if reason is None:
            return
        lo, hi = max(h, w), 1024  # the smallest square side that runs lies in (lo, hi]
        smallest: int | None = None
        if _runs_at(model, meta, c, hi, hi) is None:
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if _runs_at(model, meta, c, mid, mid) is None:
                    hi = mid
                else:
                    lo = mid
            smallest = hi
    name = getattr(model, "model_name", type(model).__name__)
    need = f"; it needs at least {smallest}x{smallest}" if smallest else ""
    raise DeployKitError(f"{name}: a {h}x{w} input is too small for this network{need} ({reason})")


@dataclass(frozen=True)
class Stage:
    """One top-level stage: its name, the block type it repeats, how many, and its parameters."""

    name: str
    block: str
    count: int
    params: int

    def describe(self) -> str:
        """``3 x Bottleneck`` for repeated blocks, the type name for a single module."""
        return f"{self.count} x {self.block}" if self.count > 1 else self.block


def block_summary(model: nn.Module) -> list[Stage]:
    """Top-level stages with their block types and counts (``layer1: 3 x Bottleneck``).

    A plain container of mixed modules (DenseNet's ``features``) is opened up so its dense
    blocks and transitions show as stages of their own.
    """
    stages: list[Stage] = []
    for name, child in model.named_children():
        _summarise(name, child, stages)
    return stages


def _summarise(name: str, module: nn.Module, out: list[Stage]) -> None:
    children = list(module.named_children())
    kinds = {type(c) for _, c in children}
    if type(module) in _CONTAINERS and len(kinds) > 1:
        for child_name, child in children:
            _summarise(f"{name}.{child_name}", child, out)
        return
    if isinstance(module, _CONTAINERS) and len(kinds) == 1:
        block, count = type(children[0][1]).__name__, len(children)
    else:
        block, count = type(module).__name__, 1
    out.append(Stage(name, block, count, count_params(module)))


def zoo_summary(family: str | None = None) -> list[dict[str, Any]]:
    """One row per registered model: name, family, aliases, params and MACs at 1000 classes, input.

    Models are built on the meta device (shapes only, no memory), so the whole zoo takes seconds.
    """
    from deploykit.models.registry import create_model, get_spec, list_families, list_models

    if family is not None and family not in list_families():
        close = difflib.get_close_matches(family, list_families(), n=2, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(list_families())}"
        raise DeployKitError(f"unknown model family '{family}'; {hint}")
    rows = []
    for name in list_models(family):
        spec = get_spec(name)
        with torch.device("meta"):
            model = create_model(name)
        rows.append(
            {
                "name": name,
                "family": spec.family,
                "aliases": list(spec.aliases),
                "params": count_params(model),
                "macs": count_macs(model, spec.data_config.input_size),
                "input_size": list(spec.data_config.input_size),
            }
        )
    return rows
