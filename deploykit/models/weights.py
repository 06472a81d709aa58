"""Safe checkpoint loading and saving: tensors only, never code, and one-line errors.

``.safetensors`` files are read with safetensors; ``.pt``/``.pth``/``.bin``/``.ckpt`` files only with
``torch.load(weights_only=True)``: a pickle that needs code execution is refused, never retried
unsafely. Every problem with a user's file is a one-line :class:`DeployKitError` naming the file.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from deploykit._io import atomic_write_bytes
from deploykit.data.config import DataConfig
from deploykit.errors import DeployKitError
from deploykit.models.registry import create_model, get_spec

SAFETENSORS_SUFFIXES = (".safetensors",)
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
META_MODEL = "deploykit.model"
META_DATA_CONFIG = "deploykit.data_config"
OVERRIDE_KEYS = ("image_size", "mean", "std", "labels", "interpolation", "crop_pct")
# Wrappers that training scripts put around a state dict, and prefixes DataParallel/compile add.
_WRAPPER_KEYS = ("state_dict", "model")
_STRIP_PREFIXES = ("module.", "_orig_mod.")
# torchvision's published DenseNet weights predate its module names ("norm.1" for "norm1").
_LEGACY_DENSENET = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)
_SHOW = 3  # how many offending keys an error names


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """Tensors of a checkpoint, read without executing any code from the file."""
    p = _existing_file(path)
    suffix = p.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        obj: Any = _read_safetensors(p)
    elif suffix in TORCH_SUFFIXES:
        obj = _read_torch(p)
    else:
        raise DeployKitError(
            f"{p}: unsupported weights format '{p.suffix or '(no extension)'}'; "
            f"use .safetensors or {'/'.join(TORCH_SUFFIXES)}"
        )
    return _unwrap(obj, p)


def read_checkpoint_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The safetensors header metadata (``deploykit.model``, ``deploykit.data_config`` JSON ...).

    Other formats carry none and give ``{}``.
    """
    p = _existing_file(path)
    if p.suffix.lower() not in SAFETENSORS_SUFFIXES:
        return {}
    from safetensors import safe_open

    try:
        with safe_open(str(p), framework="pt") as fh:
            return dict(fh.metadata() or {})
    except Exception as e:  # SafetensorError, OSError: a damaged header
        raise DeployKitError(f"{p}: cannot read safetensors header ({_reason(e)})") from None


def checkpoint_data_config(path: str | os.PathLike) -> DataConfig | None:
    """The data config a deploykit-saved checkpoint carries, or None."""
    raw = read_checkpoint_metadata(path).get(META_DATA_CONFIG)
    if raw is None:
        return None
    try:
        return DataConfig.from_dict(json.loads(raw))
    except (json.JSONDecodeError, TypeError) as e:
        raise DeployKitError(f"{path}: '{META_DATA_CONFIG}' metadata is not valid JSON ({e})") from None
    except DeployKitError as e:
        raise DeployKitError(f"{path}: '{META_DATA_CONFIG}' metadata is invalid: {e}") from None


def checkpoint_num_classes(state_dict: Mapping[str, Tensor]) -> int | None:
    """Number of classes of a checkpoint's classifier (``fc`` or ``classifier``), if it has one."""
    for key in ("fc.weight", "classifier.weight"):
        w = state_dict.get(key)
        if isinstance(w, Tensor) and w.ndim == 2:
            return int(w.shape[0])
    return None


def load_weights(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load a checkpoint into ``model`` strictly; mismatches become one-line errors."""
    _apply_state_dict(model, read_state_dict(path), Path(path))
    return model


def load_model(
    name: str,
    weights: str | os.PathLike | None = None,
    num_classes: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> nn.Module:
    """Build a zoo model, load its weights and settle its data config; returned in eval mode.

    Without weights the model is initialised from ``seed`` (the global RNG is left untouched), so
    the same call always gives the same model and a stage can rebuild it from the manifest.

    The data config starts from the model's default, or from the checkpoint's own
    (``deploykit.data_config`` metadata); ``num_classes`` defaults to the checkpoint classifier's
    size so a fine-tuned checkpoint just works; ``overrides`` (image_size (H, W), mean, std,
    labels, interpolation, crop_pct) come last.
    """
    spec = get_spec(name)
    cfg = spec.data_config
    state_dict: dict[str, Tensor] | None = None
    kwargs: dict[str, Any] = {}
    if weights is not None:
        state_dict = read_state_dict(weights)
        cfg = checkpoint_data_config(weights) or cfg
        if num_classes is None:
            num_classes = checkpoint_num_classes(state_dict)
        if spec.auxiliary_prefixes and not _has_prefix(state_dict, spec.auxiliary_prefixes):
            kwargs["aux_logits"] = False  # a checkpoint saved without aux heads: build none
    if num_classes is not None and num_classes != cfg.num_classes:
        cfg = cfg.replace(num_classes=num_classes)
    cfg = apply_overrides(cfg, overrides)

    if state_dict is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = create_model(spec.name, data_config=cfg, **kwargs)
    else:
        model = create_model(spec.name, data_config=cfg, **kwargs)
    if cfg.input_size != spec.data_config.input_size:
        from deploykit.models.info import check_input_size

        check_input_size(model, cfg.input_size)  # before loading weights or exporting anything
    if state_dict is not None:
        _apply_state_dict(model, state_dict, Path(weights))  # type: ignore[arg-type]
    model.weights_path = str(weights) if weights is not None else None
    model.init_seed = None if weights is not None else seed
    return model.eval()


def apply_overrides(cfg: DataConfig, overrides: Mapping[str, Any] | None) -> DataConfig:
    """A data config with the user's overrides applied (unknown keys are an error)."""
    if not overrides:
        return cfg
    unknown = sorted(set(overrides) - set(OVERRIDE_KEYS))
    if unknown:
        raise DeployKitError(
            f"unknown data-config override(s): {', '.join(unknown)}; known: {', '.join(OVERRIDE_KEYS)}"
        )
    changes = {k: v for k, v in overrides.items() if v is not None}
    if "image_size" in changes:
        h, w = (int(v) for v in changes.pop("image_size"))
        changes["input_size"] = (cfg.input_size[0], h, w)
    return cfg.replace(**changes) if changes else cfg


def save_weights(model: nn.Module, path: str | os.PathLike, metadata: Mapping[str, Any] | None = None) -> Path:
    """Write the model's state dict as safetensors, atomically, with its name and data config."""
    from safetensors.torch import save

    p = Path(path)
    if p.suffix.lower() not in SAFETENSORS_SUFFIXES:
        raise DeployKitError(f"{p}: weights are saved as safetensors; use a .safetensors path")
    meta: dict[str, str] = {"format": "pt"}
    if getattr(model, "model_name", None):
        meta[META_MODEL] = str(model.model_name)
    cfg = getattr(model, "data_config", None)
    if isinstance(cfg, DataConfig):
        meta[META_DATA_CONFIG] = json.dumps(cfg.to_dict())
    for k, v in (metadata or {}).items():
        meta[str(k)] = v if isinstance(v, str) else json.dumps(v)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    return atomic_write_bytes(p, save(tensors, metadata=meta))


# ----------------------------------------------------------------------------------------------


def _existing_file(path: str | os.PathLike) -> Path:
    if not str(path).strip():
        raise DeployKitError("empty weights path; give a .safetensors or .pt file")
    p = Path(path)
    if not p.exists():
        raise DeployKitError(f"{p}: weights file not found")
    if not p.is_file():
        raise DeployKitError(f"{p}: is not a file")
    return p


def _reason(e: BaseException) -> str:
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{e.__class__.__name__}: {first}" if first else e.__class__.__name__


def _read_safetensors(p: Path) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(p), device="cpu")
    except Exception as e:  # SafetensorError for truncated/garbage files, OSError
        raise DeployKitError(f"{p}: cannot read safetensors file, truncated or corrupt ({_reason(e)})") from None


def _read_torch(p: Path) -> Any:
    import pickle

    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        text = str(e)
        if "Weights only load failed" in text and not re.search(r"Unsupported operand|truncated|EOF", text):
            # The file asks to import/call something: refuse, and never retry with weights_only=False.
            found = re.search(r"GLOBAL ([\w.]+)", text)
            detail = f"it imports {found.group(1).rstrip('.')}" if found else ""
            raise DeployKitError(
                f"{p}: refused to load: the pickle needs code execution"
                f"{f' ({detail})' if detail else ''}; deploykit only loads plain tensors "
                "(torch.load weights_only=True) - save a state dict, or convert it to .safetensors "
                "in a trusted environment"
            ) from None
        raise DeployKitError(f"{p}: cannot read checkpoint, truncated or corrupt ({_reason(e)})") from None
    except Exception as e:  # RuntimeError (bad zip), EOFError, KeyError from garbage bytes ...
        raise DeployKitError(f"{p}: cannot read checkpoint, truncated or corrupt ({_reason(e)})") from None


def _unwrap(obj: Any, p: Path) -> dict[str, Tensor]:
    """A flat name -> tensor dict from a bare state dict or one under "state_dict"/"model"."""
    for _ in range(2):  # e.g. {"model": {"state_dict": ...}}
        if isinstance(obj, Mapping):
            inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
            if inner is not None:
                obj = inner
    if not isinstance(obj, Mapping):
        raise DeployKitError(f"{p}: expected a state dict (name -> tensor), found {type(obj).__name__}")
    out: dict[str, Tensor] = {}
    for key, value in obj.items():
        if not isinstance(value, Tensor):
            raise DeployKitError(
                f"{p}: entry '{key}' is a {type(value).__name__}, not a tensor; expected a state dict "
                f"(bare or under {' / '.join(repr(k) for k in _WRAPPER_KEYS)})"
            )
        name = str(key)
        for prefix in _STRIP_PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix) :]
        out[name] = value
    if not out:
        raise DeployKitError(f"{p}: checkpoint holds no tensors")
    return out


def _has_prefix(state_dict: Mapping[str, Tensor], prefixes: tuple[str, ...]) -> bool:
    return any(k.startswith(prefixes) for k in state_dict)


def _model_label(model: nn.Module) -> str:
    return str(getattr(model, "model_name", None) or type(model).__name__)


def _head_keys(model: nn.Module) -> set[str]:
    """State-dict keys of every Linear producing class logits (main classifier and aux heads)."""
    head = getattr(model, "fc", None)
    if not isinstance(head, nn.Linear):
        head = getattr(model, "classifier", None)
    if not isinstance(head, nn.Linear):
        return set()
    keys = set()
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear) and m.out_features == head.out_features:
            keys.update(f"{name}.{p}" for p, _ in m.named_parameters(recurse=False))
    return keys


def _apply_state_dict(model: nn.Module, state_dict: dict[str, Tensor], path: Path) -> None:
    """Strict load with clear errors; drops aux-head tensors the model was built without."""
    expected = model.state_dict()
    sd = dict(state_dict)
    # Old torchvision DenseNet names ("denselayer1.norm.1.weight" for "denselayer1.norm1.weight").
    for key in list(sd):
        m = _LEGACY_DENSENET.match(key)
        if m and key not in expected and m.group(1) + m.group(2) in expected:
            sd[m.group(1) + m.group(2)] = sd.pop(key)
    name = getattr(model, "model_name", None)
    if name:
        for prefix in get_spec(name).auxiliary_prefixes:
            if not any(k.startswith(prefix) for k in expected):
                sd = {k: v for k, v in sd.items() if not k.startswith(prefix)}

    # Checkpoints from before PyTorch 0.4.1 lack BatchNorm's step counter; torch fills it in.
    missing = [k for k in expected if k not in sd and not k.endswith(".num_batches_tracked")]
    unexpected = [k for k in sd if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing ({_first(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected ({_first(unexpected)})")
        raise DeployKitError(
            f"{path}: keys do not match {_model_label(model)}: {'; '.join(parts)} - "
            f"weights for another architecture?{_saved_as_hint(path, name)}"
        )

    wrong = [
        (k, tuple(sd[k].shape), tuple(v.shape))
        for k, v in expected.items()
        if k in sd and tuple(sd[k].shape) != tuple(v.shape)
    ]
    if wrong:
        heads = _head_keys(model)
        ckpt_classes = {s[0] for k, s, _ in wrong if s}
        if heads and all(k in heads for k, _, _ in wrong) and len(ckpt_classes) == 1:
            n = ckpt_classes.pop()
            raise DeployKitError(
                f"{path}: the checkpoint's classifier has {n} classes but {_model_label(model)} "
                f"was built for {wrong[0][2][0]}; pass --num-classes {n}"
            )
        shown = ", ".join(f"{k} {list(s)} vs model {list(e)}" for k, s, e in wrong[:_SHOW])
        more = f", and {len(wrong) - _SHOW} more" if len(wrong) > _SHOW else ""
        raise DeployKitError(
            f"{path}: {len(wrong)} tensors have the wrong shape for {_model_label(model)}: "
            f"{shown}{more} - weights for another architecture?{_saved_as_hint(path, name)}"
        )
    # load_state_dict would silently cast integer or bool tensors into float parameters.
    bad = [
        (k, sd[k].dtype, v.dtype)
        for k, v in expected.items()
        if k in sd and sd[k].is_floating_point() != v.is_floating_point()
    ]
    if bad:
        shown = ", ".join(
            f"{k} {str(d).replace('torch.', '')} vs model {str(e).replace('torch.', '')}" for k, d, e in bad[:_SHOW]
        )
        more = f", and {len(bad) - _SHOW} more" if len(bad) > _SHOW else ""
        raise DeployKitError(
            f"{path}: {len(bad)} tensors have the wrong dtype for {_model_label(model)}: {shown}{more}"
        )
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:  # dtype or other problems the checks above did not foresee
        raise DeployKitError(f"{path}: cannot load into {_model_label(model)} ({_reason(e)})") from None


def _first(keys: list[str]) -> str:
    more = ", ..." if len(keys) > _SHOW else ""
    return ", ".join(keys[:_SHOW]) + more


def _saved_as_hint(path: Path, name: str | None) -> str:
    """ "; the checkpoint was saved from X" when deploykit metadata names another model."""
    try:
        saved = read_checkpoint_metadata(path).get(META_MODEL)
    except DeployKitError:
        return ""
    return f"; the checkpoint was saved from {saved}" if saved and saved != name else ""
