"""Dump torchvision's state-dict layout (ordered keys and shapes) for every zoo model it has.

torchvision is deliberately not a dependency of deploykit or its CI, so this script is run by hand
in a scratch environment that has torchvision, and its output is committed:

    python -m venv /tmp/tvenv && /tmp/tvenv/bin/pip install torch torchvision
    PYTHONPATH=. /tmp/tvenv/bin/python tests/models/make_torchvision_fixture.py

It writes ``tests/models/data/torchvision_state_dicts.json.gz``, which
``tests/models/test_torchvision_compat.py`` compares our models against key by key. Models are
built on the meta device, so nothing is allocated or initialised and it runs in seconds.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import torch
import torchvision
from torchvision import models as tvm

from deploykit.models import list_models

OUT = Path(__file__).parent / "data" / "torchvision_state_dicts.json.gz"

# Extra variants beyond each model's default build: (fixture key, zoo name, kwargs).
# Our googlenet defaults to no aux heads and inception_v3 to one aux head; both other settings
# are checked too. init_weights=False only skips torchvision's (slow) random init.
VARIANTS: list[tuple[str, str, dict]] = [
    ("googlenet", "googlenet", {"aux_logits": False}),
    ("googlenet[aux_logits=True]", "googlenet", {"aux_logits": True}),
    ("inception_v3", "inception_v3", {"aux_logits": True}),
    ("inception_v3[aux_logits=False]", "inception_v3", {"aux_logits": False}),
]
_TV_ONLY_KWARGS = {"googlenet": {"init_weights": False}, "inception_v3": {"init_weights": False}}


def layout(name: str, kwargs: dict) -> list[list]:
    """Ordered [key, shape] pairs of torchvision's model ``name`` built with ``kwargs``."""
    with torch.device("meta"):
        model = tvm.get_model(name, weights=None, **kwargs, **_TV_ONLY_KWARGS.get(name, {}))
    return [[k, list(v.shape)] for k, v in model.state_dict().items()]


def main() -> None:
    available = set(tvm.list_models())
    variants = {key: (name, kw) for key, name, kw in VARIANTS}
    for name in list_models():
        if name in available and name not in variants:
            variants[name] = (name, {})
    missing = sorted(set(list_models()) - available)
    out: dict = {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "models": {},
    }
    for key in sorted(variants):
        name, kwargs = variants[key]
        out["models"][key] = {"model": name, "kwargs": kwargs, "state_dict": layout(name, kwargs)}
        print(f"{key}: {len(out['models'][key]['state_dict'])} tensors")
    if missing:
        print(f"not in torchvision (skipped): {', '.join(missing)}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    # mtime=0 keeps the gzip bytes reproducible, so re-running gives no spurious diff.
    data = json.dumps(out, separators=(",", ":"), sort_keys=True).encode()
    OUT.write_bytes(gzip.compress(data, mtime=0))
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
