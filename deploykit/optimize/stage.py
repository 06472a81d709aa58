"""The ``optimize`` stage: an fp32 ONNX artifact in, a new artifact with the optimised graph out."""

from __future__ import annotations

import copy
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import onnx

from deploykit.artifact import Artifact, ArtifactWriter, is_artifact_dir, tool_versions, utc_now
from deploykit.errors import DeployKitError


def default_output(in_path: str | os.PathLike) -> Path:
    """``<in>-opt``: ``m.onnx`` -> ``m-opt.onnx``, ``artifacts/resnet50`` -> ``artifacts/resnet50-opt``."""
    p = Path(in_path)
    if p.suffix == ".onnx" and not is_artifact_dir(p):
        return p.with_name(f"{p.stem}-opt{p.suffix}")
    return p.with_name(f"{p.name.rstrip('/')}-opt")


def optimize_artifact(
    in_dir: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    passes: Sequence[str] | str | None = None,
    force: bool = False,
    max_iterations: int = 10,
) -> tuple[Artifact, OptimizeResult]:  # noqa: F821
    """Optimise an artifact's graph, prove parity with it, and commit a child artifact."""
    from deploykit.optimize import load_onnx, optimize_model, resolve_passes, save_onnx, verify_or_raise

    names = resolve_passes(passes)
    parent = Artifact.load(in_dir, verify=True)
    m = parent.manifest
    if m.format != "onnx":
        raise DeployKitError(f"{parent.path}: a {m.format} artifact cannot be graph-optimised (ONNX only)")
    if m.precision != "fp32":
        raise DeployKitError(
            f"{parent.path}: precision is {m.precision}; optimise the fp32 artifact before FP16/INT8 conversion"
        )
    out = Path(out_dir) if out_dir is not None else default_output(parent.path)
    if out.resolve() == parent.path.resolve():
        raise DeployKitError(f"{out}: output would overwrite the input artifact; choose another -o")
    model = load_onnx(parent.main_path)
    external = _external_files(onnx.load(str(parent.main_path), load_external_data=False))
    # Inputs the manifest promises are fed by the user, even where an initializer backs them.
    result = optimize_model(model, names, max_iterations=max_iterations, keep_inputs=[t.name for t in m.inputs])
    batch = m.batch.opt if not m.batch.dynamic else max(2, m.batch.min)
    result.parity = verify_or_raise(model, result.model, where=str(parent.main_path), batch=batch)

    with ArtifactWriter(out, force=force, reads=(parent.path,)) as writer:
        save_onnx(result.model, writer.dir / m.main_file)
        for rel in m.files:  # labels and other side files travel along; inlined weights do not
            if rel != m.main_file and rel not in external:
                dst = writer.dir / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(parent.path / rel, dst)
        manifest = copy.deepcopy(m)
        manifest.parent = parent.parent_ref()
        manifest.created = utc_now()
        manifest.versions = tool_versions("onnxscript", "onnx-ir")
        manifest.results = {
            "parity": {
                "reference": "parent artifact",
                "backend": "onnxruntime-cpu (graph optimisations disabled)",
                "precision": "fp32",
                **result.parity.to_dict(),
            }
        }
        manifest.add_stage(
            "optimize",
            params={"passes": names, "max_iterations": max_iterations},
            modified=result.modified,
            report=result.to_dict(),
            parity=result.parity.to_dict(),
        )
        artifact = writer.commit(manifest)
    return artifact, result


def _external_files(proto: onnx.ModelProto) -> set[str]:
    from onnx.external_data_helper import _get_all_tensors

    out = set()
    for t in _get_all_tensors(proto):
        if t.data_location == onnx.TensorProto.EXTERNAL:
            out.update(e.value for e in t.external_data if e.key == "location")
    return out
