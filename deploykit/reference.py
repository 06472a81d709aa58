"""Reference checkpoints: each family trained once on Fashion-MNIST so accuracy claims are real.

No model hub is reachable, so every stage that proves accuracy (validate, quantise, compare) needs
weights trained here. A :class:`Recipe` fixes everything that shapes the result (input size,
epochs, optimiser, schedule, augmentation, seed); its hash keys a cache in the user cache
directory, so a checkpoint is trained once and reused by every later command and test.

Training runs on preprocessed tensors: the train split is resized once (with the same resize as
:mod:`deploykit.data.transforms`, so training and evaluation see identical pixels) into a uint8
tensor, and normalised on the fly. The test split is scored through ``iter_batches``, the exact
pipeline ``deploykit validate`` uses.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deploykit._io import atomic_write_bytes, atomic_write_json
from deploykit.data.config import DataConfig
from deploykit.data.datasets import FASHION_MNIST_CLASSES
from deploykit.errors import DeployKitError

# Bump when the training code changes what a recipe produces, so old caches are not reused.
TRAINER_VERSION = 1

# Pixel statistics of the Fashion-MNIST train split (one grayscale channel, replicated to 3).
FASHION_MNIST_MEAN = 0.2860
FASHION_MNIST_STD = 0.3530

CACHE_ENV = "DEPLOYKIT_CACHE"


@dataclass(frozen=True)
class Recipe:
    """Everything that decides a reference checkpoint; its hash names the cached file."""

    model: str
    image_size: int = 32
    epochs: int = 5
    batch_size: int = 128
    optimizer: str = "sgd"  # "sgd" (Nesterov momentum 0.9) or "adamw"
    lr: float = 0.1  # peak learning rate of the one-cycle schedule
    weight_decay: float = 5e-4
    warmup_pct: float = 0.2  # fraction of steps spent ramping up to the peak rate
    label_smoothing: float = 0.1
    pad: int = 2  # random-crop padding in pixels at the recipe's input size
    hflip: bool = True
    seed: int = 0
    limit: int | None = None  # use only the first N training images (smoke tests)
    eval_limit: int | None = None  # score only the first N test images (smoke tests)
    # bfloat16 autocast for the forward pass (weights stay float32) where the hardware runs it
    # natively (AVX-512 BF16 / AMX CPUs, bf16-capable GPUs); elsewhere training falls back to float32
    # unless force_bf16 (emulated bfloat16 is several times slower). See training_precision().
    bf16: bool = True
    channels_last: bool = True
    interpolation: str = "bilinear"
    # Start every residual branch at zero (its last BatchNorm scale 0), so a deep Bottleneck net
    # begins as a shallow one; short schedules of ResNet-50/ResNeXt-50 train much faster with it.
    zero_init_residual: bool = False
    # "model" keeps the architecture's own initialisation (torchvision's); "kaiming" re-draws every
    # convolution He-normal and every linear layer with PyTorch's default. Inception-v3's own init
    # (truncated normal, std 0.1 for every conv and the classifier) is several times larger than
    # He's, which under BatchNorm shrinks the effective learning rate, and its classifier starts
    # with logits of std ~3, so a short schedule spends its first epoch undoing the init.
    init: str = "model"
    # Dropout before the classifier of the nets that have one (GoogLeNet 0.2, Inception-v3 0.5);
    # None keeps the architecture's default.
    dropout: float | None = None
    # Train in bfloat16 even where it is emulated (a warning gives the expected slowdown). Not part
    # of the hash: a forced run computes what a native one does.
    force_bf16: bool = False

    def __post_init__(self) -> None:
        if self.optimizer not in ("sgd", "adamw"):
            raise DeployKitError(f"recipe optimizer '{self.optimizer}' is not one of: sgd, adamw")
        for field in ("image_size", "epochs", "batch_size"):
            if getattr(self, field) < 1:
                raise DeployKitError(f"recipe {field} {getattr(self, field)} must be at least 1")
        for field in ("limit", "eval_limit"):
            v = getattr(self, field)
            if v is not None and v < 1:
                raise DeployKitError(f"recipe {field} {v} must be at least 1")
        if self.init not in ("model", "kaiming"):
            raise DeployKitError(f"recipe init '{self.init}' is not one of: model, kaiming")
        if self.pad < 0:
            raise DeployKitError(f"recipe pad {self.pad} must not be negative")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise DeployKitError(f"recipe dropout {self.dropout} must be in [0, 1)")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> Recipe:
        """A copy with some fields changed (a different recipe, so a different cache key)."""
        return dataclasses.replace(self, **changes)

    @property
    def hash(self) -> str:
        """Short sha256 of the fields and the trainer version: the cache key.

        Fields added after the first release are left out while at their default, so adding one
        keeps every existing recipe's key (and its cached checkpoint) valid.
        """
        fields = {
            k: v
            for k, v in self.to_dict().items()
            if not (k in _HASH_OPTIONAL_DEFAULTS and v == _HASH_OPTIONAL_DEFAULTS[k]) and k not in _NOT_HASHED
        }
        payload = json.dumps({"trainer": TRAINER_VERSION, **fields}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]

    def data_config(self) -> DataConfig:
        """How to feed the trained model: grayscale replicated to 3 channels at the recipe size."""
        return DataConfig(
            input_size=(3, self.image_size, self.image_size),
            mean=(FASHION_MNIST_MEAN,) * 3,
            std=(FASHION_MNIST_STD,) * 3,
            interpolation=self.interpolation,
            crop_pct=1.0,
            num_classes=10,
            labels=FASHION_MNIST_CLASSES,
        )


# Recipe fields added after the first release, with the default that leaves them out of the hash.
_HASH_OPTIONAL_DEFAULTS: dict[str, Any] = {"zero_init_residual": False, "init": "model", "dropout": None}
_NOT_HASHED = ("force_bf16",)  # permissions, not arithmetic: they never change what is computed


# Sizes and epochs chosen from measured training speed on a 2-core CPU and a recipe sweep on a GPU
# (benchmarks/reference/sweep.py; results in benchmarks/reference/README.md): the smallest input
# that leaves each network's last stages a few pixels to work on (ResNet, ResNeXt and DenseNet keep
# 8x8 after their stride-4 stem at 32x32; GoogLeNet's extra pooling needs 48x48 for the same), and
# few epochs of a one-cycle schedule. The Bottleneck nets start each residual branch at zero
# (zero_init_residual): without it ResNet-50 reached 85.8-89.1% in 5 epochs, with it 91.1%.
# Inception-v3 is re-initialised He-normal (its own init starts the classifier with logits of std ~3)
# and trained at 107x107 with AdamW: 92.77% in 4 epochs, where 75x75 with SGD needs 8 epochs for 90.32%.
RECIPES: dict[str, Recipe] = {
    "resnet18": Recipe("resnet18", image_size=32, epochs=6),
    "resnet34": Recipe("resnet34", image_size=32, epochs=6),
    "resnet50": Recipe("resnet50", image_size=32, epochs=5, lr=0.1, zero_init_residual=True),
    "resnet101": Recipe("resnet101", image_size=32, epochs=5, lr=0.1, zero_init_residual=True),
    "resnet152": Recipe("resnet152", image_size=32, epochs=5, lr=0.1, zero_init_residual=True),
    "resnext50_32x4d": Recipe("resnext50_32x4d", image_size=32, epochs=5, lr=0.1, zero_init_residual=True),
    "resnext101_32x8d": Recipe("resnext101_32x8d", image_size=32, epochs=5, lr=0.1, zero_init_residual=True),
    "resnext101_64x4d": Recipe("resnext101_64x4d", image_size=32, epochs=5, lr=0.1, zero_init_residual=True),
    "densenet121": Recipe("densenet121", image_size=32, epochs=5),
    "densenet161": Recipe("densenet161", image_size=32, epochs=5),
    "densenet169": Recipe("densenet169", image_size=32, epochs=5),
    "densenet201": Recipe("densenet201", image_size=32, epochs=5),
    "googlenet": Recipe("googlenet", image_size=48, epochs=5, pad=3),
    # Inception-v3's valid-padded stem needs at least 75x75 (its last stage is then 1x1).
    "inception_v3": Recipe(
        "inception_v3", image_size=107, epochs=4, pad=5, optimizer="adamw", lr=0.002, weight_decay=0.05, init="kaiming"
    ),
}


def get_recipe(name: str, **overrides: Any) -> Recipe:
    """The default recipe for a model (name or alias), with optional field overrides."""
    from deploykit.models.registry import resolve_name

    canonical = resolve_name(name)
    recipe = RECIPES.get(canonical)
    if recipe is None:
        raise DeployKitError(f"no reference recipe for model '{canonical}'")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return recipe.replace(**overrides) if overrides else recipe


class Bf16Warning(UserWarning):
    """bfloat16 was forced on hardware that emulates it."""


def native_bf16(device: str = "cpu") -> bool:
    """Whether ``device`` runs bfloat16 in hardware (CPU: AVX-512 BF16 or AMX; CUDA: Ampere+)."""
    if device.startswith("cuda"):
        import torch

        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    from deploykit.machine import cpu_info

    return cpu_info().native_bf16


def training_precision(recipe: Recipe, device: str = "cpu") -> tuple[Recipe, str | None]:
    """The recipe as it will train here, and the one line to say about its precision (or None).

    bfloat16 stays only where it is native or forced; elsewhere the recipe becomes its float32
    twin, whose own hash names the checkpoint, so a cached file always says how it was trained.
    """
    from deploykit.machine import cpu_info

    if not recipe.bf16:
        return recipe, None
    if native_bf16(device):
        return recipe.replace(force_bf16=False), None
    why = (
        "this GPU has no bfloat16 support"
        if device.startswith("cuda")
        else cpu_info().bf16_note() or "this CPU has no native bfloat16"
    )
    if recipe.force_bf16:
        return recipe.replace(force_bf16=False), (
            f"warning: bfloat16 forced although {why}; expect training several times slower than float32"
        )
    return recipe.replace(bf16=False), f"training in float32: {why}"


# A recipe short enough for `make demo` on a 2-core AVX2 CPU (float32); the full recipes above
# stay the benchmark references. Measured on the Zen 3 machine (benchmarks/reference/README.md,
# float32, one epoch of all 60,000 images at 24x24, batch 32, AdamW, no crop padding or label
# smoothing): with random horizontal flips 87.65% (lr 0.002); without them, at the same cost,
# 88.58% at lr 0.0015 (this recipe), 88.30% at lr 0.002 (88.65% with seed 1: runs differ by
# about 0.35 points) and 88.00% at lr 0.003. Flipping spends part of the only epoch on mirrored
# shoes the test split never shows (sandals, sneakers and boots all face one way).
DEMO_RECIPES: dict[str, Recipe] = {
    "resnet18": Recipe(
        "resnet18",
        image_size=24,
        epochs=1,
        batch_size=32,
        optimizer="adamw",
        lr=0.0015,
        pad=0,
        label_smoothing=0.0,
        hflip=False,
        bf16=False,
    ),
}


def demo_recipe(name: str) -> Recipe:
    """The short demo recipe of a model (only those in DEMO_RECIPES have one)."""
    from deploykit.models.registry import resolve_name

    canonical = resolve_name(name)
    if canonical not in DEMO_RECIPES:
        raise DeployKitError(f"no demo recipe for model '{canonical}' (there is one for: {', '.join(DEMO_RECIPES)})")
    return DEMO_RECIPES[canonical]


# ------------------------------------------------------------------------------------ cache


def cache_dir() -> Path:
    """``$DEPLOYKIT_CACHE``, else ``$XDG_CACHE_HOME/deploykit``, else ``~/.cache/deploykit``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "deploykit"


def checkpoint_path(recipe: Recipe) -> Path:
    """Where a recipe's checkpoint lives: ``<cache>/reference/<model>-<hash>.safetensors``."""
    return cache_dir() / "reference" / f"{recipe.model}-{recipe.hash}.safetensors"


def result_path(recipe: Recipe) -> Path:
    """The JSON sidecar next to the checkpoint (test accuracy, training time, machine)."""
    return checkpoint_path(recipe).with_suffix(".json")


def read_result(recipe: Recipe) -> dict[str, Any] | None:
    """The sidecar of a cached checkpoint, or None when it has not been trained."""
    ckpt, side = checkpoint_path(recipe), result_path(recipe)
    if not (ckpt.is_file() and side.is_file()):
        return None
    try:
        return json.loads(side.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def reference_checkpoint(
    name: str, train_if_missing: bool = True, progress: bool = True, recipe: Recipe | None = None
) -> Path:
    """Path of the cached reference checkpoint for a model, training it first if needed."""
    recipe = recipe or get_recipe(name)
    found = cached_recipe(recipe)
    if found is not None:
        return checkpoint_path(found)
    if not train_if_missing:
        raise DeployKitError(
            f"no reference checkpoint for {recipe.model} (recipe {recipe.hash}) in "
            f"{checkpoint_path(recipe).parent}; train it with: deploykit train-reference {recipe.model}"
        )
    record = train_reference(name, recipe=recipe, progress=progress)
    return Path(record["checkpoint"])


def cached_recipe(recipe: Recipe, device: str = "cpu") -> Recipe | None:
    """The cached twin of ``recipe``: as it would train here (float32 where bfloat16 is not
    native), else as written (a bfloat16 checkpoint trained elsewhere); None when neither is."""
    here, _ = training_precision(recipe, device)
    for r in (here, recipe):
        if read_result(r) is not None:
            return r
    return None


# ------------------------------------------------------------------------------------ data


def _fashion_split(split: str) -> tuple[Any, np.ndarray, np.ndarray]:
    from deploykit.data.datasets import fashion_mnist

    ds = fashion_mnist(split)
    images, labels = ds.arrays()
    return ds, images, labels


def prepare_split(
    split: str, recipe: Recipe, limit: int | None = None, progress: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 N x H x W pixels at the recipe's size, int64 labels), resized like preprocessing.

    Resized once and cached under the cache directory, keyed by split, size and interpolation,
    so every model trained at one size shares the work.
    """
    from deploykit.data.transforms import resize_crop

    _, images, labels = _fashion_split(split)
    n = len(images) if limit is None else min(limit, len(images))
    cfg = recipe.data_config()
    size = recipe.image_size
    if images.shape[1:] == (size, size):
        return np.ascontiguousarray(images[:n]), np.asarray(labels[:n], dtype=np.int64)
    key = f"fashion-mnist-{split}-{size}-{recipe.interpolation}"
    cached = cache_dir() / "data" / f"{key}.npy"
    if cached.is_file():
        try:
            arr = np.load(cached, allow_pickle=False)
            if arr.shape == (len(images), size, size) and arr.dtype == np.uint8:
                return arr[:n], np.asarray(labels[:n], dtype=np.int64)
        except (OSError, ValueError):
            pass
    # The same resize (and crop) as deploykit.data.transforms, on the grayscale channel: the
    # model's 3 channels are the one channel replicated. A partial split is not cached.
    gray = cfg.replace(input_size=(1, size, size), mean=(0.0,), std=(1.0,))
    count = n if n < len(images) else len(images)
    out = np.empty((count, size, size), dtype=np.uint8)
    bar = _bar(progress)
    task = bar.add_task(f"resizing {split} to {size}x{size}", total=count, info="") if bar else None
    for i in range(count):
        out[i] = np.asarray(resize_crop(images[i], gray))
        if bar is not None and i % 1000 == 999:
            bar.advance(task, 1000)
    if bar is not None:
        bar.update(task, completed=count)
        bar.stop()
    if count == len(images):
        import io

        buf = io.BytesIO()
        np.save(buf, out, allow_pickle=False)
        atomic_write_bytes(cached, buf.getvalue())
    return out[:n], np.asarray(labels[:n], dtype=np.int64)


def _bar(progress: bool):
    if not progress:
        return None
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )
    bar.start()
    return bar


# ------------------------------------------------------------------------------------ training


def _augment(x, pad: int, hflip: bool, gen):
    """Random crop with zero padding and horizontal flip on a uint8 N x 1 x H x W batch."""
    import torch

    n, _, h, w = x.shape
    if pad > 0:
        padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
        # Gather each sample's window with index arithmetic rather than a Python loop.
        rows = dy[:, None] + torch.arange(h)[None, :]  # N x H
        cols = dx[:, None] + torch.arange(w)[None, :]  # N x W
        idx_n = torch.arange(n)[:, None, None]
        x = padded[idx_n, 0, rows[:, :, None], cols[:, None, :]].unsqueeze(1)
    if hflip:
        flip = torch.rand(n, generator=gen) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x


def _normalise(x_u8, mean: float, std: float, channels_last: bool):
    """uint8 N x 1 x H x W → float32 N x 3 x H x W normalised (grayscale replicated)."""
    import torch

    x = (x_u8.float() * (1.0 / 255.0) - mean) * (1.0 / std)
    x = x.expand(-1, 3, -1, -1)
    if channels_last:
        return x.contiguous(memory_format=torch.channels_last)
    return x.contiguous()


def _main_logits(out):
    """Logits and auxiliary logits from a model's training-mode output."""
    if isinstance(out, (tuple, list)):
        return out[0], [o for o in out[1:] if o is not None]
    return out, []


def evaluate(model, recipe: Recipe, batch_size: int = 256, progress: bool = False) -> tuple[float, int]:
    """(top-1, images scored) on the Fashion-MNIST test split in FP32, fed as validate feeds it."""
    from deploykit.data.datasets import fashion_mnist
    from deploykit.data.transforms import iter_batches
    from deploykit.models.inference import run_model

    ds = fashion_mnist("test")
    cfg = recipe.data_config()
    n = len(ds) if recipe.eval_limit is None else min(recipe.eval_limit, len(ds))
    labels: list[np.ndarray] = []

    def images() -> Iterator[np.ndarray]:
        for x, y in iter_batches(
            ds, cfg, batch_size, limit=n, progress="scoring fashion-mnist:test" if progress else False
        ):
            labels.append(y)
            yield x

    pred = run_model(model, images()).argmax(1)
    correct = int((pred == np.concatenate(labels)).sum())
    return correct / n, n


def train_reference(
    name: str,
    recipe: Recipe | None = None,
    progress: bool = True,
    force: bool = False,
    threads: int | str | None = None,
    log: Callable[[str], None] | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Train a model with its recipe, score it on the test split and cache the checkpoint.

    Returns the sidecar record (path, test top-1, training seconds, machine). An existing
    cached checkpoint is reused unless ``force``. ``threads="auto"`` uses every core while the
    machine is otherwise idle and one thread while it is busy (re-checked as training runs).
    ``device="cuda"`` trains on a GPU; augmentation still draws from the same CPU generator, so
    the recipe sees the same batches wherever it runs. Scoring always runs on the CPU in FP32.
    """
    import torch
    from torch import nn

    from deploykit.models.registry import create_model, get_spec

    recipe = recipe or get_recipe(name)
    dev = _training_device(device)
    requested = recipe
    recipe, precision_note = training_precision(recipe, str(dev))
    if not force:
        found = cached_recipe(requested, str(dev))
        if found is not None:
            return read_result(found)  # type: ignore[return-value]
    adapt = threads == "auto" and dev.type == "cpu"
    if adapt:
        torch.set_num_threads(_auto_threads(torch.get_num_threads()))
    elif threads is not None and threads != "auto":
        if not isinstance(threads, int) or threads < 1:
            raise DeployKitError(f"threads {threads!r} must be a positive integer or 'auto'")
        torch.set_num_threads(threads)
    say = log or (lambda msg: _console().print(msg))

    t_start = time.perf_counter()
    load_start = _loadavg()
    x_all, y_all = prepare_split("train", recipe, limit=recipe.limit, progress=progress)
    x_all = torch.from_numpy(np.ascontiguousarray(x_all)).unsqueeze(1)  # N x 1 x H x W uint8
    y_all = torch.from_numpy(y_all)
    n = len(y_all)
    t_data = time.perf_counter() - t_start

    torch.manual_seed(recipe.seed)
    gen = torch.Generator().manual_seed(recipe.seed)
    cfg = recipe.data_config()
    # Auxiliary heads (GoogLeNet, Inception-v3) are not trained: they exist only in training, and
    # Inception-v3's does not fit inputs as small as 75x75.
    kwargs: dict[str, Any] = {"aux_logits": False} if get_spec(recipe.model).auxiliary_prefixes else {}
    if recipe.zero_init_residual:
        if get_spec(recipe.model).family not in ("resnet", "resnext"):
            raise DeployKitError(f"recipe zero_init_residual applies to ResNet/ResNeXt, not {recipe.model}")
        kwargs["zero_init_residual"] = True
    if recipe.dropout is not None:
        if get_spec(recipe.model).family != "inception":
            raise DeployKitError(f"recipe dropout applies to GoogLeNet/Inception-v3, not {recipe.model}")
        kwargs["dropout"] = recipe.dropout
    model = create_model(recipe.model, data_config=cfg, **kwargs)
    if recipe.init == "kaiming":
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                m.reset_parameters()
    model = model.to(dev)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if recipe.channels_last:
        model = model.to(memory_format=torch.channels_last)
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)  # no weight decay on BN and biases
    groups = [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if recipe.optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=recipe.lr, momentum=0.9, nesterov=True)
    else:
        opt = torch.optim.AdamW(groups, lr=recipe.lr)
    steps_per_epoch = math.ceil(n / recipe.batch_size)
    total_steps = steps_per_epoch * recipe.epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt,
        max_lr=recipe.lr,
        total_steps=total_steps,
        pct_start=recipe.warmup_pct,
        div_factor=25.0,
        final_div_factor=1e3,
        cycle_momentum=recipe.optimizer == "sgd",
    )
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    mean, std = cfg.mean[0], cfg.std[0]

    if precision_note:
        say(precision_note)
        if recipe.bf16:  # forced where emulated: also a warning a library caller can filter
            warnings.warn(precision_note, Bf16Warning, stacklevel=2)
    precision = "bfloat16" if recipe.bf16 else "float32"
    say(
        f"training {recipe.model} (recipe {recipe.hash}, {precision}): {n} images at "
        f"{recipe.image_size}x{recipe.image_size}, {recipe.epochs} epochs, batch {recipe.batch_size}, "
        f"{recipe.optimizer} lr {recipe.lr}, "
        + (f"{torch.get_num_threads()} threads" if dev.type == "cpu" else _device_name(dev))
    )
    bar = _bar(progress and _interactive())
    task = bar.add_task("epoch", total=total_steps, info="") if bar else None
    epochs_log: list[dict[str, Any]] = []
    t_train = last_line = time.perf_counter()
    done_steps = 0
    try:
        for epoch in range(recipe.epochs):
            model.train()
            perm = torch.randperm(n, generator=gen)
            seen = correct = 0
            loss_sum = 0.0
            t_epoch = time.perf_counter()
            for step in range(steps_per_epoch):
                idx = perm[step * recipe.batch_size : (step + 1) * recipe.batch_size]
                if len(idx) < 2:  # BatchNorm cannot train on a single image
                    continue
                xb = _augment(x_all[idx], recipe.pad, recipe.hflip, gen).to(dev, non_blocking=True)
                xb = _normalise(xb, mean, std, recipe.channels_last)
                yb = y_all[idx].to(dev, non_blocking=True)
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=recipe.bf16):
                    logits, aux = _main_logits(model(xb))
                loss = criterion(logits.float(), yb)
                for a in aux:  # only when a model is built with auxiliary heads
                    loss = loss + 0.3 * criterion(a.float(), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                loss_value = loss.item()
                if not math.isfinite(loss_value):
                    raise RuntimeError(f"{recipe.model}: loss became {loss_value} at epoch {epoch + 1}")
                seen += len(idx)
                loss_sum += loss_value * len(idx)
                if adapt and step % 20 == 0:
                    torch.set_num_threads(_auto_threads(torch.get_num_threads()))
                correct += int((logits.argmax(1) == yb).sum())
                rate = seen / max(time.perf_counter() - t_epoch, 1e-9)
                info = f"loss {loss_sum / seen:.3f} acc {correct / seen:.3f} {rate:.0f} img/s"
                if bar is not None:
                    bar.update(task, advance=1, description=f"epoch {epoch + 1}/{recipe.epochs}", info=info)
                done_steps += 1
                now = time.perf_counter()
                if bar is None and now - last_line >= LOG_SECONDS and step + 1 < steps_per_epoch:
                    # not a terminal (CI, a pipe, a log file): a line at least every LOG_SECONDS
                    eta = (now - t_train) / done_steps * (total_steps - epoch * steps_per_epoch - step - 1)
                    say(
                        f"  epoch {epoch + 1}/{recipe.epochs} step {step + 1}/{steps_per_epoch}: {info}, "
                        f"about {_duration(eta)} left"
                    )
                    last_line = now
            dt = time.perf_counter() - t_epoch
            rec = {
                "epoch": epoch + 1,
                "loss": round(loss_sum / max(seen, 1), 4),
                "train_top1": round(correct / max(seen, 1), 4),
                "seconds": round(dt, 1),
                "img_per_s": round(seen / max(dt, 1e-9), 1),
                "threads": torch.get_num_threads(),
            }
            epochs_log.append(rec)
            if bar is not None:
                bar.console.print(
                    f"epoch {rec['epoch']}/{recipe.epochs}: loss {rec['loss']:.3f} "
                    f"train top-1 {rec['train_top1']:.3f} {rec['img_per_s']:.0f} img/s "
                    f"({dt:.0f} s)",
                    soft_wrap=True,
                )
            else:
                say(
                    f"epoch {rec['epoch']}/{recipe.epochs}: loss {rec['loss']:.3f} "
                    f"train top-1 {rec['train_top1']:.3f} {rec['img_per_s']:.0f} img/s ({dt:.0f} s)"
                )
                last_line = time.perf_counter()
    finally:
        if bar is not None:
            bar.stop()
    train_seconds = time.perf_counter() - t_train

    model.eval()
    model = model.to("cpu")
    if recipe.channels_last:
        model = model.to(memory_format=torch.contiguous_format)
    t_eval = time.perf_counter()
    top1, n_test = evaluate(model, recipe, progress=progress)
    eval_seconds = time.perf_counter() - t_eval

    record = {
        "model": recipe.model,
        "recipe_hash": recipe.hash,
        "recipe": recipe.to_dict(),
        "test_top1": round(top1, 4),
        "test_images": n_test,
        "train_images": n,
        "train_seconds": round(train_seconds, 1),
        "data_seconds": round(t_data, 1),
        "eval_seconds": round(eval_seconds, 1),
        "epochs": epochs_log,
        "threads": "auto" if adapt else torch.get_num_threads(),
        "device": _device_name(dev),
        "precision": precision,
        "precision_note": precision_note,
        "machine": machine_info(),
        # Other work on the machine slows training; the load average says how busy it was.
        "load_average": {"start": load_start, "end": _loadavg()},
        "torch": torch.__version__,
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "data_config": cfg.to_dict(),
    }
    path = save_checkpoint(model, recipe, top1)
    record["checkpoint"] = str(path)
    atomic_write_json(result_path(recipe), record)
    say(f"{recipe.model}: test top-1 {top1:.4f} after {train_seconds:.0f} s of training; saved {path}")
    return record


def save_checkpoint(model, recipe: Recipe, top1: float) -> Path:
    """Write the state dict as safetensors; its metadata carries model, data config and recipe."""
    from deploykit.models.weights import save_weights

    return save_weights(
        model,
        checkpoint_path(recipe),
        metadata={
            "deploykit.recipe": recipe.hash,
            "deploykit.recipe_spec": json.dumps(recipe.to_dict(), sort_keys=True),
            "deploykit.test_top1": f"{top1:.4f}",
            "deploykit.precision": "bfloat16" if recipe.bf16 else "float32",  # what trained it
        },
    )


def machine_info() -> dict[str, Any]:
    """The one machine description (deploykit.machine), recorded beside every training time.

    ``cores``, ``bf16`` and ``cpu_family_model`` stay for readers of older records.
    """
    from deploykit.machine import cpu_info, describe_machine

    info = describe_machine(threads=False)
    cpu = cpu_info()
    info["cores"] = info["logical_cores"]
    info["bf16"] = cpu.native_bf16
    if cpu.family is not None and cpu.model_id is not None:
        info["cpu_family_model"] = f"{cpu.family}/{cpu.model_id}"
    info["platform"] = platform.platform()
    return info


def _training_device(device: str):
    """The torch device to train on; a clear error when CUDA is asked for and absent."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise DeployKitError(f"device '{device}' is not a torch device (use cpu or cuda)") from None
    if dev.type not in ("cpu", "cuda"):
        raise DeployKitError(f"device '{device}': reference training runs on cpu or cuda")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeployKitError(f"device '{device}': this torch build sees no CUDA GPU")
    return dev


def _device_name(dev) -> str:
    import torch

    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"


def _auto_threads(current: int) -> int:
    """All cores when nothing else runs, else 1.

    On an oversubscribed CPU, intra-op threads wait at every barrier for a sibling the scheduler
    has parked: measured on a busy 2-core machine, 2 threads trained 10x slower than 1.
    """
    cores = os.cpu_count() or 1
    try:
        others = os.getloadavg()[0] - current  # the 1-minute load includes our own threads
    except OSError:
        return 1
    return cores if others < 0.7 else 1


LOG_SECONDS = 20.0  # without a progress bar, a progress line at least this often


def _interactive() -> bool:
    """A live bar only on a terminal; a pipe or CI log gets timed lines instead."""
    return sys.stderr.isatty()


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _console():
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)
