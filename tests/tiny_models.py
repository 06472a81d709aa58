"""Tiny models for the backend and harness tests: built in milliseconds, run in microseconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CLASSES = 5
SIZE = 8


def tiny_onnx(path: Path, bias_shift: float = 0.0, batch: int | str = "batch", seed: int = 0) -> Path:
    """Conv-ReLU-GAP-Gemm on a 3x8x8 input ('input' -> 'logits'); ``bias_shift`` perturbs one logit."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    fw = rng.standard_normal((CLASSES, 4)).astype(np.float32)
    fb = rng.standard_normal(CLASSES).astype(np.float32)
    fb[0] += bias_shift
    nodes = [
        helper.make_node("Conv", ["input", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, CLASSES])],
        [numpy_helper.from_array(a, n) for a, n in ((w, "w"), (b, "b"), (fw, "fw"), (fb, "fb"))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def tiny_module(num_classes: int = CLASSES, size: int = SIZE):
    """A torch module with a data_config, like a zoo model but tiny."""
    import torch
    from torch import nn

    from deploykit.data.config import DataConfig

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes)
    ).eval()
    model.data_config = DataConfig(input_size=(3, size, size), num_classes=num_classes)
    model.model_name = "tiny"
    return model


def tiny_artifact(out: Path, bias_shift: float = 0.0, dynamic: bool = True, batch: int = 1):
    """An ONNX artifact directory of the tiny graph, written through ArtifactWriter like a real stage."""
    from deploykit.artifact import ArtifactWriter, BatchProfile, Manifest, TensorSpec
    from deploykit.data.config import DataConfig

    dim: int | str = "batch" if dynamic else batch
    with ArtifactWriter(out) as writer:
        tiny_onnx(writer.dir / "model.onnx", bias_shift=bias_shift, batch=dim)
        manifest = Manifest(
            model="tiny",
            family="test",
            format="onnx",
            precision="fp32",
            main_file="model.onnx",
            data_config=DataConfig(input_size=(3, SIZE, SIZE), num_classes=CLASSES),
            inputs=[TensorSpec("input", "float32", [dim, 3, SIZE, SIZE])],
            outputs=[TensorSpec("logits", "float32", [dim, CLASSES])],
            batch=BatchProfile(1, 1, 8, True) if dynamic else BatchProfile(batch, batch, batch, False),
            opset=17,
        )
        return writer.commit(manifest)


def zoo_artifact(tmp: Path, bias_shift: float = 0.0):
    """A real exported resnet18 artifact (32x32, 3 classes) whose manifest names its weights file.

    With ``bias_shift`` the ONNX classifier bias is changed after export and the artifact is
    re-committed, so its hashes are valid but ONNX no longer matches the PyTorch weights.
    """
    import torch

    from deploykit.artifact import Artifact, ArtifactWriter, Manifest
    from deploykit.export.api import export_model
    from deploykit.models.weights import load_model, save_weights

    torch.manual_seed(0)
    model = load_model("resnet18", num_classes=3, overrides={"image_size": (32, 32)})
    weights = save_weights(model, tmp / "resnet18.safetensors")
    art = export_model("resnet18", weights=weights, out=tmp / "resnet18-art", optimize=False, progress=False)
    if not bias_shift:
        return art
    proto = onnx.load(str(art.main_path))
    gemm = [n for n in proto.graph.node if n.op_type == "Gemm"][-1]
    init = next(i for i in proto.graph.initializer if i.name == gemm.input[2])
    bias = numpy_helper.to_array(init).copy()
    bias[0] += bias_shift
    init.CopyFrom(numpy_helper.from_array(bias, init.name))
    with ArtifactWriter(tmp / "resnet18-perturbed") as writer:
        onnx.save(proto, str(writer.dir / art.manifest.main_file))
        return writer.commit(Manifest.from_dict(Artifact.load(art.path).manifest.to_dict()))
