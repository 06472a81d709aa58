"""After ``deploykit export --fp16`` (or ``--int8``): build the engine when this machine can.

The export commands call :func:`engine_after_export` with the ONNX (or INT8) artifact they wrote.
Without the ``tensorrt`` module or an NVIDIA GPU it builds nothing and says why, with the
``deploykit build`` command to run later; the export itself has succeeded, so that is not an error.
With both it builds the engine, proves engine vs ONNX Runtime vs PyTorch parity on fixed-seed
inputs before the engine artifact is committed, and measures one latency figure.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploykit.backends.tensorrt.builder import BuildProgress
from deploykit.build import BuildResult, build_engine_artifact, environment_problem
from deploykit.errors import DeployKitError

PARITY_BATCH = 8


@dataclass
class EngineOutcome:
    """What happened after the export: an engine (with parity and latency) or the reason there is none."""

    onnx_artifact: Path
    precision: str
    build_command: str
    built: BuildResult | None = None
    reason: str | None = None
    parity: dict[str, Any] = field(default_factory=dict)
    latency: dict[str, Any] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """What the CLI prints: one line without an engine; build, parity and latency lines with one."""
        if self.built is None:
            return [f"No TensorRT engine built: {self.reason}; build it later with: {self.build_command}"]
        out = [
            f"Wrote {self.built.path}: {self.precision} TensorRT {self.built.record['tensorrt']} engine "
            f"on {self.built.record['gpu']}, built in {self.built.seconds:.1f} s"
        ]
        for key, r in self.parity.items():
            out.append(
                f"Parity {key}: max abs {r['max_abs']:.3g} ({r['max_rel']:.3g} of logit range), "
                f"cosine {r['cosine']:.6f}, top-1 agreement {r['top1_agreement']:.1%} on {r['count']} (gate passed)"
            )
        if self.latency:
            out.append(
                f"Latency ({self.built.path.name}, batch {self.latency['batch']}): "
                f"p50 {self.latency['p50_ms']:.3f} ms, {self.latency['throughput']:.0f} img/s"
            )
        return out


def build_command(artifact_dir: str | Path, precision: str) -> str:
    """The command that builds this artifact's engine later, on a machine with TensorRT and a GPU."""
    return f"deploykit build {shlex.quote(str(artifact_dir))} --precision {precision}"


def engine_after_export(
    artifact: Any,
    precision: str = "fp16",
    *,
    force: bool = False,
    progress: BuildProgress | None = None,
    device: str = "cuda",
) -> EngineOutcome:
    """Build, prove and time the engine of a freshly exported artifact, or say why not here."""
    outcome = EngineOutcome(
        onnx_artifact=Path(artifact.path), precision=precision, build_command=build_command(artifact.path, precision)
    )
    problem = environment_problem()
    if problem is not None:
        outcome.reason = problem
        return outcome

    def verify(plan: Path) -> dict[str, Any]:
        outcome.parity = prove_parity(artifact, plan, precision, device)
        return outcome.parity

    outcome.built = build_engine_artifact(
        artifact, precision=precision, out=None, force=force, progress=progress, verify=verify
    )
    outcome.latency = measure_latency(outcome.built.artifact, device)
    outcome.built.artifact.record_result("latency_headline", outcome.latency)
    return outcome


def int8_engine_after_export(
    artifact: Any,
    calib: str,
    val: str,
    *,
    force: bool = False,
    quantize_progress: bool = False,
    log_fn: Any = None,
    progress: BuildProgress | None = None,
    device: str = "cuda",
) -> tuple[Any, EngineOutcome]:
    """Quantise the FP32 artifact for TensorRT (Q/DQ profile, accuracy gate), then as engine_after_export."""
    from deploykit.quantize import quantize_artifact

    int8 = quantize_artifact(
        artifact.path, calib, val, profile="tensorrt", force=force, progress=quantize_progress, log_fn=log_fn
    ).artifact
    return int8, engine_after_export(int8, "int8", force=force, progress=progress, device=device)


def prove_parity(artifact: Any, plan: Path, precision: str, device: str = "cuda") -> dict[str, Any]:
    """Engine vs ONNX Runtime and engine vs PyTorch on fixed-seed inputs; raises when a gate fails."""
    from deploykit.backends import make_runner
    from deploykit.backends.tensorrt.runner import TensorRTRunner
    from deploykit.parity import check_gate, compare_outputs, parity_inputs

    m = artifact.manifest
    batch = max(m.batch.min, min(PARITY_BATCH, m.batch.max)) if m.batch.dynamic else m.batch.max
    x = parity_inputs(m.data_config, batch).astype(m.inputs[0].dtype)
    name_in, name_out = m.inputs[0].name, m.outputs[0].name
    with TensorRTRunner(plan, device=device, name=plan.name) as trt:
        engine_out = trt.infer({name_in: x})[name_out].astype("float32")
    refs: dict[str, Any] = {}
    with make_runner(artifact.path) as ort:
        refs["engine vs onnxruntime"] = ort.infer({name_in: x})[name_out]
    try:
        torch_runner = make_runner(artifact.path, backend="torch", device=device)
    except DeployKitError:
        torch_runner = None  # no weights recorded: ONNX Runtime (itself gated against PyTorch at export) stands in
    if torch_runner is not None:
        with torch_runner:
            refs["engine vs pytorch"] = torch_runner.infer({name_in: x})[name_out]
    gate_precision = {"best": "int8"}.get(precision, precision)
    out: dict[str, Any] = {}
    for key, ref in refs.items():
        result = compare_outputs(ref.astype("float32"), engine_out)
        failures = check_gate(result, gate_precision)
        if failures:
            raise DeployKitError(
                f"{plan.parent.name}/{plan.name}: {key} parity failed ({'; '.join(failures)}); "
                "no engine artifact written"
            )
        out[key] = result.to_dict()
    return out


def measure_latency(engine_artifact: Any, device: str = "cuda") -> dict[str, Any]:
    """p50 latency and throughput of the engine at batch 1, through the harness."""
    from deploykit.backends import make_runner
    from deploykit.harness.bench import benchmark

    runner = make_runner(engine_artifact.path, backend="tensorrt", device=device, batch_sizes=[1])
    with runner:
        result = benchmark(runner, batch_sizes=[1], warmup=20, iters=200)
    b = result.batch(1)
    return {
        "batch": 1,
        "p50_ms": b.latency_ms.p50,
        "p99_ms": b.latency_ms.p99,
        "throughput": b.throughput,
        "iterations": b.iterations,
    }


__all__ = [
    "EngineOutcome",
    "build_command",
    "engine_after_export",
    "int8_engine_after_export",
    "measure_latency",
    "prove_parity",
]
