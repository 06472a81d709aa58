"""Fuzzing every loader with Hypothesis: random and mutated inputs may be refused, never crash.

Each loader gets a fixed number of derandomized examples (the same inputs on every run, no example
database on disk), 13,000 in all. The only exception allowed out is DeployKitError.
"""

from __future__ import annotations

import io
import itertools
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiny_models import tiny_artifact, tiny_onnx

from deploykit.errors import DeployKitError

EXAMPLES = {  # per loader; 13,000 in total
    "manifest": 2000,
    "engine_record": 1000,
    "idx": 1500,
    "recipe": 1500,
    "calibration_cache": 1500,
    "onnx": 1500,
    "image": 1500,
    "safetensors": 1500,
    "dataset_spec": 1000,
}


COUNTS: dict[str, int] = dict.fromkeys(EXAMPLES, 0)


def fuzz(name: str):
    """Settings shared by every fuzz test: reproducible, no database, no per-example deadline."""
    return settings(
        max_examples=EXAMPLES[name],
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )


def only_deploykit_errors(fn, *args) -> None:
    """Call a loader; success or DeployKitError pass, any other exception fails the example."""
    try:
        fn(*args)
    except DeployKitError as e:
        assert "\n" not in str(e)


@st.composite
def mutated(draw, seed: bytes) -> bytes:
    """``seed`` with a few random edits: bit flips, overwrites, insertions, deletions, truncation."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "overwrite", "insert", "delete", "truncate"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[pos : pos + len(chunk)] = chunk
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 16))]
        else:
            del data[pos:]
    return bytes(data)


def inputs(seed: bytes, max_random: int = 256):
    """Mostly mutations of a valid file, sometimes bytes from nowhere."""
    return st.one_of(mutated(seed), mutated(seed), mutated(seed), st.binary(max_size=max_random))


class Files:
    """A fresh file name per example, so no cache keyed by path, size and mtime sees a stale entry."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.count = itertools.count()

    def write(self, data: bytes, suffix: str = "") -> Path:
        path = self.root / f"f{next(self.count)}{suffix}"
        path.write_bytes(data)
        return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return Files(tmp_path_factory.mktemp("fuzz"))


# -- manifest JSON ------------------------------------------------------------------------------
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def mutated_manifest(draw, valid: dict) -> bytes:
    m = json.loads(json.dumps(valid))
    for _ in range(draw(st.integers(1, 3))):
        path = [draw(st.sampled_from(sorted(m)))]
        node = m[path[0]]
        while isinstance(node, (dict, list)) and node and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node))))
            path.append(key)
            node = node[key]
        parent = m
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.integers(0, 4)) == 0 and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(JSON)
    return json.dumps(m).encode()


def test_fuzz_manifest(tmp_path_factory):
    from deploykit.artifact import Artifact

    art = tiny_artifact(tmp_path_factory.mktemp("manifest") / "art").path
    valid_bytes = (art / "manifest.json").read_bytes()
    valid = json.loads(valid_bytes)

    @fuzz("manifest")
    @given(
        st.one_of(
            mutated_manifest(valid),
            mutated_manifest(valid),
            mutated(valid_bytes),
            JSON.map(lambda v: json.dumps(v).encode()),
        )
    )
    def run(data: bytes) -> None:
        COUNTS["manifest"] += 1
        (art / "manifest.json").write_bytes(data)
        only_deploykit_errors(Artifact.load, art)

    run()
    assert COUNTS["manifest"] >= EXAMPLES["manifest"], (COUNTS, EXAMPLES)


# -- idx ----------------------------------------------------------------------------------------
@st.composite
def idx_bytes(draw) -> bytes:
    code = draw(st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x00, 0xFF]))
    dims = draw(st.lists(st.integers(0, 2**32 - 1) | st.integers(0, 6), min_size=0, max_size=5))
    header = bytes([0, 0, code, draw(st.integers(0, 6))]) + b"".join(struct.pack(">I", d) for d in dims)
    return header + draw(st.binary(max_size=200))


def test_fuzz_idx(files):
    from deploykit.data import datasets

    seed = struct.pack(">IIII", 2051, 2, 3, 3) + bytes(18)

    @fuzz("idx")
    @given(st.one_of(idx_bytes(), mutated(seed)), st.booleans())
    def run(data: bytes, gz: bool) -> None:
        COUNTS["idx"] += 1
        import gzip

        datasets._idx_cache.clear()
        path = files.write(gzip.compress(data) if gz else data, ".gz" if gz else "")
        only_deploykit_errors(datasets.read_idx, path)

    run()
    assert COUNTS["idx"] >= EXAMPLES["idx"], (COUNTS, EXAMPLES)


# -- recipe TOML --------------------------------------------------------------------------------
TOML_VALUE = st.one_of(
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.text(max_size=10),
    st.lists(st.text(max_size=6), max_size=3),
    st.lists(st.integers(), max_size=3),
)
RECIPE_KEYS = [
    "method",
    "percentile",
    "num_images",
    "batch",
    "min_images",
    "per_channel",
    "keep_fp32",
    "accuracy",
    "max_fallbacks",
    "gate",
    "name",
    "bogus",
]


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


@st.composite
def recipe_text(draw) -> str:
    lines = []
    for section in draw(
        st.lists(st.sampled_from(["calibration", "quantization", "gate", "other"]), min_size=1, max_size=3, unique=True)
    ):
        lines.append(f"[{section}]")
        for key in draw(st.lists(st.sampled_from(RECIPE_KEYS), max_size=4, unique=True)):
            lines.append(f"{key} = {_toml(draw(TOML_VALUE))}")
    return "\n".join(lines) + "\n"


def test_fuzz_recipe(files):
    from importlib import resources

    from deploykit.quantize.recipes import load_recipe

    seed = (resources.files("deploykit.quantize.recipes") / "resnet.toml").read_bytes()

    @fuzz("recipe")
    @given(st.one_of(recipe_text().map(str.encode), recipe_text().map(str.encode), mutated(seed)))
    def run(data: bytes) -> None:
        COUNTS["recipe"] += 1
        only_deploykit_errors(load_recipe, files.write(data, ".toml"))

    run()
    assert COUNTS["recipe"] >= EXAMPLES["recipe"], (COUNTS, EXAMPLES)


# -- calibration cache --------------------------------------------------------------------------
def test_fuzz_calibration_cache(files, tmp_path_factory):
    from deploykit.quantize.trt_cache import read_cache, write_cache

    root = tmp_path_factory.mktemp("cache")
    model = tiny_onnx(root / "model.onnx")
    good = write_cache(root / "good.cache", {"input": 0.01, "c": 0.5, "r": 3.0}, model)
    seed, side_seed = good.read_bytes(), Path(str(good) + ".json").read_bytes()

    @fuzz("calibration_cache")
    @given(inputs(seed), st.one_of(st.just(side_seed), mutated(side_seed), JSON.map(lambda v: json.dumps(v).encode())))
    def run(cache: bytes, side: bytes) -> None:
        COUNTS["calibration_cache"] += 1
        path = files.write(cache, ".cache")
        Path(str(path) + ".json").write_bytes(side)
        only_deploykit_errors(read_cache, path, model)

    run()
    assert COUNTS["calibration_cache"] >= EXAMPLES["calibration_cache"], (COUNTS, EXAMPLES)


# -- ONNX bytes ---------------------------------------------------------------------------------
def test_fuzz_onnx(files, tmp_path_factory):
    from deploykit.onnx_io import load_onnx

    seed = tiny_onnx(tmp_path_factory.mktemp("onnx") / "seed.onnx").read_bytes()

    @fuzz("onnx")
    @given(inputs(seed))
    def run(data: bytes) -> None:
        COUNTS["onnx"] += 1
        only_deploykit_errors(load_onnx, files.write(data, ".onnx"))

    run()
    assert COUNTS["onnx"] >= EXAMPLES["onnx"], (COUNTS, EXAMPLES)


# -- image bytes --------------------------------------------------------------------------------
def _image_seeds() -> list[bytes]:
    from PIL import Image

    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (6, 6, 3), dtype=np.uint8))
    out = []
    for img, fmt in (
        (rgb, "PNG"),
        (rgb, "JPEG"),
        (rgb, "BMP"),
        (rgb.convert("P"), "GIF"),
        (rgb.convert("RGBA"), "PNG"),
        (rgb.convert("CMYK"), "TIFF"),
        (Image.fromarray(rng.integers(0, 65535, (6, 6), dtype=np.uint16)), "PNG"),
    ):
        buf = io.BytesIO()
        img.save(buf, format=fmt)
        out.append(buf.getvalue())
    return out


def test_fuzz_images(files):
    from deploykit.data.config import DataConfig
    from deploykit.data.transforms import preprocess

    cfg = DataConfig(input_size=(3, 8, 8), crop_pct=1.0)
    seeds = _image_seeds()

    @fuzz("image")
    @given(st.sampled_from(range(len(seeds))).flatmap(lambda i: inputs(seeds[i])), st.booleans())
    def run(data: bytes, as_file: bool) -> None:
        COUNTS["image"] += 1
        only_deploykit_errors(preprocess, files.write(data, ".img") if as_file else data, cfg)

    run()
    assert COUNTS["image"] >= EXAMPLES["image"], (COUNTS, EXAMPLES)


# -- safetensors bytes --------------------------------------------------------------------------
@st.composite
def safetensors_bytes(draw) -> bytes:
    header = {}
    for name in draw(st.lists(st.text(max_size=6), max_size=3)):
        header[name] = {
            "dtype": draw(st.sampled_from(["F32", "F16", "I64", "BOOL", "XX", 5])),
            "shape": draw(st.lists(st.integers(-2, 5), max_size=3)),
            "data_offsets": draw(st.lists(st.integers(-5, 300), min_size=0, max_size=3)),
        }
    if draw(st.booleans()):
        header["__metadata__"] = draw(JSON)
    raw = json.dumps(header).encode()
    size = draw(st.sampled_from([len(raw), len(raw) + 3, max(len(raw) - 3, 0), 2**40]))
    return struct.pack("<Q", size) + raw + draw(st.binary(max_size=64))


def test_fuzz_safetensors(files):
    import torch
    from safetensors.torch import save

    from deploykit.models.weights import read_checkpoint_metadata, read_state_dict

    seed = save(
        {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.ones(2)},
        metadata={"deploykit.model": "resnet18"},
    )

    @fuzz("safetensors")
    @given(st.one_of(mutated(seed), mutated(seed), safetensors_bytes()))
    def run(data: bytes) -> None:
        COUNTS["safetensors"] += 1
        path = files.write(data, ".safetensors")
        only_deploykit_errors(read_state_dict, path)
        only_deploykit_errors(read_checkpoint_metadata, path)

    run()
    assert COUNTS["safetensors"] >= EXAMPLES["safetensors"], (COUNTS, EXAMPLES)


# -- dataset specs ------------------------------------------------------------------------------
SPEC_CHARS = st.sampled_from(
    list("abcdefghijklmnopqrstuvwxyz0123456789-_:[]., +") + ["fashion-mnist", "test", "train", "\x00", "é"]
)


def test_fuzz_dataset_specs(tmp_path, monkeypatch):
    from deploykit.data.specs import open_dataset

    monkeypatch.chdir(tmp_path)  # a relative spec can only name folders made here
    (tmp_path / "imgs" / "a").mkdir(parents=True)
    (tmp_path / "imgs" / "a" / "x.png").write_bytes(_image_seeds()[0])
    slice_part = st.lists(
        st.one_of(st.integers(-70000, 70000).map(str), st.just(""), st.text(max_size=2)), max_size=4
    ).map(":".join)
    structured = st.tuples(
        st.sampled_from(["fashion-mnist:test", "fashion-mnist:train", "imgs", "fashion-mnist:x", "nope"]), slice_part
    ).map(lambda t: f"{t[0]}[{t[1]}]")
    free = st.lists(SPEC_CHARS, max_size=12).map("".join).filter(lambda s: s.strip(". ") != "")

    @fuzz("dataset_spec")
    @given(st.one_of(structured, structured, free))
    def run(spec: str) -> None:
        COUNTS["dataset_spec"] += 1
        only_deploykit_errors(open_dataset, spec)

    run()
    assert COUNTS["dataset_spec"] >= EXAMPLES["dataset_spec"], (COUNTS, EXAMPLES)


def test_budget_is_at_least_ten_thousand():
    assert sum(EXAMPLES.values()) >= 10_000, EXAMPLES


# -- the engine record a TensorRT engine's manifest carries (read by the guard before loading) ---


def test_fuzz_engine_record(tmp_path_factory):
    from types import SimpleNamespace

    from deploykit.backends.tensorrt.guard import built_for, check_engine_artifact, engine_record

    from .fake_trt import BUILT_ON, fake_engine

    work = tmp_path_factory.mktemp("engine")
    engine = fake_engine(tiny_artifact(work / "onnx").path, work / "engine", hardware_compat="ampere+")
    valid = engine_record(engine.manifest)

    def guard(record: dict) -> None:
        manifest = SimpleNamespace(stages=[{"stage": "build", "engine": record}])
        art = SimpleNamespace(manifest=manifest, path=engine.path, manifest_path=engine.manifest_path)
        check_engine_artifact(art, BUILT_ON)
        built_for(engine_record(manifest))

    @fuzz("engine_record")
    @given(st.one_of(mutated_manifest(valid), mutated_manifest(valid), st.dictionaries(st.text(max_size=8), JSON)))
    def run(data: bytes | dict) -> None:
        COUNTS["engine_record"] += 1
        record = json.loads(data) if isinstance(data, bytes) else data
        only_deploykit_errors(guard, record)

    run()
    assert COUNTS["engine_record"] >= EXAMPLES["engine_record"], (COUNTS, EXAMPLES)
