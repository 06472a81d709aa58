"""The tiny graph in each precision an engine can be built from: FP32, FP16, INT8 Q/DQ, INT8 Q/DQ + FP16.

Made the way deploykit makes them (the FP16 converter of deploykit.export.fp16, the TensorRT Q/DQ
placement of deploykit.quantize), with fixed scales instead of calibration so they take milliseconds.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper, numpy_helper
from tiny_models import CLASSES, SIZE, tiny_onnx


def fp32_model(path: Path) -> onnx.ModelProto:
    return onnx.load(str(tiny_onnx(path)))


def fp16_model(path: Path) -> onnx.ModelProto:
    from deploykit.export.fp16 import convert_to_fp16

    return convert_to_fp16(fp32_model(path))


def int8_model(path: Path) -> onnx.ModelProto:
    """The TensorRT-profile Q/DQ placement of the tiny graph (float32 scales, FP32 outside the pairs)."""
    from deploykit.quantize.placement import apply_plan, plan_placement, prepare_model

    model = prepare_model(fp32_model(path))
    plan = plan_placement(model, "tensorrt")
    out = apply_plan(model, plan, {}, {t: 1.0 for t in plan.stat_tensors})
    return out[0] if isinstance(out, tuple) else out


def best_model(path: Path) -> onnx.ModelProto:
    """INT8 Q/DQ with FP16 outside the pairs: every float initializer (scales too) float16, opset 19.

    The float32 input is Cast to float16 and the float16 logits back, as the FP16 converter does.
    """
    model = int8_model(path)
    g = model.graph
    for i, init in enumerate(g.initializer):
        if init.data_type == TensorProto.FLOAT:
            g.initializer[i].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype("float16"), init.name))
    inp, out = g.input[0].name, g.output[0].name
    for node in g.node:
        node.input[:] = [f"{inp}_h" if x == inp else x for x in node.input]
        node.output[:] = [f"{out}_h" if x == out else x for x in node.output]
    g.node.insert(0, helper.make_node("Cast", [inp], [f"{inp}_h"], to=TensorProto.FLOAT16))
    g.node.append(helper.make_node("Cast", [f"{out}_h"], [out], to=TensorProto.FLOAT))
    del g.value_info[:]
    del model.opset_import[:]
    model.opset_import.append(helper.make_opsetid("", 19))
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


MAKERS = {"fp32": fp32_model, "fp16": fp16_model, "int8": int8_model, "best": best_model}


def precision_artifact(out: Path, graph: str, manifest_precision: str | None = None, **quantize_params):
    """An ONNX artifact holding the ``graph`` model ("fp32", "fp16", "int8", "best"), as deploykit records it.

    INT8 graphs get a quantize stage (TensorRT profile; ``best`` with ``high_precision_dtype: fp16``);
    ``manifest_precision`` and ``quantize_params`` let a test make the manifest disagree with the graph.
    """
    from deploykit.artifact import ArtifactWriter, BatchProfile, Manifest, TensorSpec
    from deploykit.data.config import DataConfig

    precision = manifest_precision or {"best": "int8"}.get(graph, graph)
    with ArtifactWriter(out) as writer:
        save(MAKERS[graph](writer.dir / "model.onnx"), writer.dir / "model.onnx")
        m = Manifest(
            model="tiny",
            family="test",
            format="onnx",
            precision=precision,
            main_file="model.onnx",
            data_config=DataConfig(input_size=(3, SIZE, SIZE), num_classes=CLASSES),
            inputs=[TensorSpec("input", "float32", ["batch", 3, SIZE, SIZE])],
            outputs=[TensorSpec("logits", "float32", ["batch", CLASSES])],
            batch=BatchProfile(1, 1, 8, True),
            opset=19 if graph == "best" else 17,
        )
        if precision == "int8":
            params = {"profile": "tensorrt", **({"high_precision_dtype": "fp16"} if graph == "best" else {})}
            m.add_stage("quantize", params={**params, **quantize_params})
        return writer.commit(m)


__all__ = [
    "CLASSES",
    "MAKERS",
    "SIZE",
    "best_model",
    "fp16_model",
    "fp32_model",
    "int8_model",
    "precision_artifact",
    "save",
]
