"""Triton model repository: config.pbtxt parses with Triton's own schema and matches the ONNX model."""

from __future__ import annotations

import os

import onnx
import pytest
from click.testing import CliRunner
from tiny_models import CLASSES, SIZE, tiny_artifact

from deploykit.artifact import ArtifactWriter, Manifest
from deploykit.cli import cli
from deploykit.errors import DeployKitError
from deploykit.serve.triton_repo import write_model_repository

model_config_pb2 = pytest.importorskip(
    "tritonclient.grpc.model_config_pb2", reason="tritonclient is in the serve extra: pip install 'deploykit[serve]'"
)
from google.protobuf import text_format  # noqa: E402


def parse(path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


ONNX_TYPES = {onnx.TensorProto.FLOAT: "TYPE_FP32", onnx.TensorProto.FLOAT16: "TYPE_FP16"}


def test_config_matches_the_onnx_model(fmnist_artifact, tmp_path):
    res = CliRunner().invoke(
        cli,
        [
            "triton",
            str(fmnist_artifact.path),
            "--repo",
            str(tmp_path / "repo"),
            "--preferred-batch",
            "4,8",
            "--instances",
            "2",
        ],
    )
    assert res.exit_code == 0, res.output
    cfg = parse(tmp_path / "repo" / "resnet18" / "config.pbtxt")
    assert cfg.name == "resnet18" and cfg.platform == "onnxruntime_onnx"
    assert cfg.max_batch_size == fmnist_artifact.manifest.batch.max == 8
    proto = onnx.load(str(tmp_path / "repo" / "resnet18" / "1" / "model.onnx"))
    for ours, theirs in ((cfg.input, proto.graph.input), (cfg.output, proto.graph.output)):
        assert [t.name for t in ours] == [t.name for t in theirs]
        for t, v in zip(ours, theirs):
            shape = v.type.tensor_type.shape.dim
            assert shape[0].dim_param  # the batch dimension, which Triton leaves out of dims
            assert list(t.dims) == [d.dim_value for d in shape[1:]]
            assert model_config_pb2.DataType.Name(t.data_type) == ONNX_TYPES[v.type.tensor_type.elem_type]
    assert list(cfg.dynamic_batching.preferred_batch_size) == [4, 8]
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 100
    assert cfg.instance_group[0].count == 2
    assert model_config_pb2.ModelInstanceGroup.Kind.Name(cfg.instance_group[0].kind) == "KIND_CPU"
    assert cfg.output[0].label_filename == "labels.txt"
    labels = (tmp_path / "repo" / "resnet18" / "labels.txt").read_text().splitlines()
    assert labels == list(fmnist_artifact.data_config.labels)


def test_second_version_leaves_the_first_untouched(tmp_path):
    a, b = tiny_artifact(tmp_path / "a"), tiny_artifact(tmp_path / "b", bias_shift=1.0)
    repo = tmp_path / "repo"
    first = write_model_repository(a.path, repo)
    before = {p: p.stat().st_mtime_ns for p in first.version_dir.iterdir()}
    second = write_model_repository(b.path, repo, dynamic_batching=False)
    assert (first.version, second.version) == (1, 2)
    assert {p: p.stat().st_mtime_ns for p in first.version_dir.iterdir()} == before
    assert (second.version_dir / "model.onnx").read_bytes() == b.main_path.read_bytes()
    assert not parse(second.config_path).HasField("dynamic_batching")
    assert sorted(os.listdir(repo / "tiny")) == ["1", "2", "config.pbtxt"]  # no temporary left
    with pytest.raises(DeployKitError, match="version 2 already exists"):
        write_model_repository(b.path, repo, version=2)
    fixed = tiny_artifact(tmp_path / "fixed", dynamic=False, batch=4)
    with pytest.raises(DeployKitError, match="different platform, batch size or inputs/outputs"):
        write_model_repository(fixed.path, repo)


def test_fixed_batch_artifact_has_no_batching(tmp_path):
    art = tiny_artifact(tmp_path / "fixed", dynamic=False, batch=4)
    cfg = parse(write_model_repository(art.path, tmp_path / "repo").config_path)
    assert cfg.max_batch_size == 0 and not cfg.HasField("dynamic_batching")
    assert list(cfg.input[0].dims) == [4, 3, SIZE, SIZE] and list(cfg.output[0].dims) == [4, CLASSES]


def test_engine_manifest_writes_a_plan(tmp_path):
    """Written from the manifest alone: the engine bytes are copied, never opened."""
    src = tiny_artifact(tmp_path / "a").manifest.to_dict()
    with ArtifactWriter(tmp_path / "engine") as w:
        (w.dir / "model.plan").write_bytes(b"serialized engine bytes")
        art = w.commit(
            Manifest.from_dict(
                {**src, "format": "tensorrt-engine", "main_file": "model.plan", "precision": "fp16", "files": {}}
            )
        )
    model = write_model_repository(art.path, tmp_path / "repo", name="tiny_trt")
    cfg = parse(model.config_path)
    assert cfg.platform == "tensorrt_plan" and cfg.max_batch_size == 8
    assert model_config_pb2.ModelInstanceGroup.Kind.Name(cfg.instance_group[0].kind) == "KIND_GPU"
    assert (model.version_dir / "model.plan").read_bytes() == b"serialized engine bytes"
    with pytest.raises(DeployKitError, match="GPU instances only"):
        write_model_repository(art.path, tmp_path / "repo2", kind="cpu")
    assert not (tmp_path / "repo2" / "tiny").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--max-batch", "9"], "outside the artifact's batch profile"),
        (["--preferred-batch", "16"], "preferred batch size"),
        (["--name", "bad/name"], "may hold only letters"),
    ],
)
def test_bad_options_are_one_line_errors_and_write_nothing(tmp_path, args, message):
    art = tiny_artifact(tmp_path / "a")
    res = CliRunner().invoke(cli, ["triton", str(art.path), "--repo", str(tmp_path / "repo"), *args])
    assert res.exit_code == 1 and message in res.output and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "repo").exists() or not any((tmp_path / "repo").iterdir())


def test_tampered_artifact_is_refused(tmp_path):
    art = tiny_artifact(tmp_path / "a")
    art.main_path.write_bytes(art.main_path.read_bytes()[:-1] + b"\1")
    res = CliRunner().invoke(cli, ["triton", str(art.path), "--repo", str(tmp_path / "repo")])
    assert res.exit_code == 1 and "sha256 does not match" in res.output
    assert not (tmp_path / "repo").exists() or not any((tmp_path / "repo").iterdir())


def test_python_backend_config_parses_with_its_parameters(tmp_path):
    from deploykit.serve.triton_repo import model_config

    art = tiny_artifact(tmp_path / "a")
    where = str(tmp_path / 'odd "name"')
    text, top = model_config(art.manifest, "tiny", labels=False, python_backend={"artifact": where, "threads": "1"})
    (tmp_path / "config.pbtxt").write_text(text)
    cfg = parse(tmp_path / "config.pbtxt")
    assert cfg.backend == "python" and not cfg.platform and cfg.max_batch_size == top
    assert {k: v.string_value for k, v in cfg.parameters.items()} == {"artifact": where, "threads": "1"}
    assert not cfg.output[0].label_filename
