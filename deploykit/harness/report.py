"""Reports for benchmarks and comparisons: JSON (with a JSON Schema), Markdown tables and PNG plots."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deploykit._io import atomic_write_bytes, atomic_write_json, atomic_write_text
from deploykit.artifact import utc_now
from deploykit.errors import DeployKitError
from deploykit.harness.bench import BenchResult
from deploykit.machine import describe_machine, machine_line  # noqa: F401  (machine_line re-exported)

BENCH_SCHEMA_ID = "deploykit.bench/1"
COMPARE_SCHEMA_ID = "deploykit.compare/1"

_num = {"type": "number"}
_num_or_null = {"type": ["number", "null"]}
_LATENCY = {
    "type": "object",
    "required": ["p50", "p90", "p99", "mean", "min", "max", "std"],
    "properties": {k: {"type": "number", "minimum": 0} for k in ("p50", "p90", "p99", "mean", "min", "max", "std")},
}
_BATCH = {
    "type": "object",
    "required": [
        "batch",
        "iterations",
        "warmup",
        "latency_ms",
        "throughput",
        "first_inference_ms",
        "total_s",
        "peak_rss_mb",
        "rss_scope",
        "gpu_peak_mb",
        "p99_reliable",
    ],
    "properties": {
        "batch": {"type": "integer", "minimum": 1},
        "iterations": {"type": "integer", "minimum": 1},
        "warmup": {"type": "integer", "minimum": 0},
        "latency_ms": _LATENCY,
        "throughput": {"type": "number", "exclusiveMinimum": 0},
        "first_inference_ms": _num,
        "total_s": _num,
        "peak_rss_mb": _num_or_null,
        "rss_scope": {"enum": ["batch", "process"]},
        "gpu_peak_mb": _num_or_null,
        "p99_reliable": {"type": "boolean"},
        "round_p50_ms": {"type": ["array", "null"], "items": {"type": "number", "minimum": 0}},
    },
}
_MACHINE = {
    "type": "object",
    "required": ["cpu", "logical_cores", "usable_cores", "versions", "threads", "gpu"],
    "properties": {
        "cpu": {"type": "string"},
        "logical_cores": {"type": ["integer", "null"]},
        "usable_cores": {"type": ["integer", "null"]},
        "versions": {"type": "object", "additionalProperties": {"type": "string"}},
        "threads": {"type": "object"},
        "gpu": {"anyOf": [{"type": "null"}, {"type": "object", "required": ["name", "driver"]}]},
    },
}
_RUN = {
    "type": "object",
    "required": ["label", "model", "runner", "settings", "batches"],
    "properties": {
        "label": {"type": "string"},
        "model": {"type": ["string", "null"]},
        "runner": {"type": "object", "required": ["backend", "name", "device", "precision"]},
        "settings": {"type": "object", "required": ["warmup", "iters", "duration_s"]},
        "batches": {"type": "array", "minItems": 1, "items": _BATCH},
    },
}
_SUITE_ROW = {
    "type": "object",
    "required": ["model", "variant", "status", "reason", "p50_ms", "speedup_vs_baseline"],
    "properties": {
        "model": {"type": "string"},
        "variant": {"type": "string"},
        "status": {"enum": ["ok", "skipped", "failed"]},
        "reason": {"type": ["string", "null"]},
        "p50_ms": _num_or_null,
        "speedup_vs_baseline": _num_or_null,
        "speedup_ci": {"type": ["array", "null"], "items": _num, "minItems": 2, "maxItems": 2},
    },
}
BENCH_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "deploykit benchmark report",
    "type": "object",
    "required": ["schema", "created", "machine", "runs"],
    "properties": {
        "schema": {"const": BENCH_SCHEMA_ID},
        "created": {"type": "string"},
        "machine": _MACHINE,
        "runs": {"type": "array", "items": _RUN},
        "suite": {
            "type": "object",
            "required": ["baseline", "rows", "settings"],
            "properties": {
                "baseline": {"type": "string"},
                "settings": {"type": "object"},
                "rows": {"type": "array", "items": _SUITE_ROW},
            },
        },
    },
}
_PARITY = {
    "type": "object",
    "required": ["max_abs", "max_rel", "cosine", "top1_agreement", "logit_range", "count"],
    "properties": {
        k: {"type": ["number", "string"]} for k in ("max_abs", "max_rel", "cosine", "top1_agreement", "logit_range")
    }
    | {"count": {"type": "integer"}},
}
COMPARE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "deploykit backend comparison",
    "type": "object",
    "required": [
        "schema",
        "created",
        "machine",
        "target",
        "reference",
        "runners",
        "precision",
        "inputs",
        "rows",
        "passed",
    ],
    "properties": {
        "schema": {"const": COMPARE_SCHEMA_ID},
        "created": {"type": "string"},
        "machine": _MACHINE,
        "target": {"type": "string"},
        "reference": {"type": "object", "required": ["backend", "name"]},
        "runners": {"type": "array", "minItems": 2},
        "precision": {"enum": ["fp32", "fp16", "bf16", "mixed", "int8"]},
        "inputs": {"type": "object", "required": ["source", "batch", "samples"]},
        "rows": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["runner", "backend", "output", "reference_output", "parity", "failures", "passed"],
                "properties": {
                    "parity": _PARITY,
                    "failures": {"type": "array", "items": {"type": "string"}},
                    "passed": {"type": "boolean"},
                },
            },
        },
        "passed": {"type": "boolean"},
    },
}
SCHEMAS = {BENCH_SCHEMA_ID: BENCH_SCHEMA, COMPARE_SCHEMA_ID: COMPARE_SCHEMA}


# -- documents ---------------------------------------------------------------------------------
def bench_report(
    results: Sequence[BenchResult], machine: dict[str, Any] | None = None, suite: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The JSON document for one or more benchmark runs (and a suite's ratio table)."""
    doc: dict[str, Any] = {
        "schema": BENCH_SCHEMA_ID,
        "created": utc_now(),
        "machine": machine or (results[0].machine if results else describe_machine()),
        "runs": [r.to_dict() for r in results],
    }
    if suite is not None:
        doc["suite"] = suite
    return doc


def latency_summary(doc: dict[str, Any]) -> dict[str, Any]:
    """The manifest's compact form of a bench report: per run and batch size, the percentiles."""

    def one(b: dict[str, Any]) -> dict[str, Any]:
        lat = b["latency_ms"]
        return {
            "p50_ms": lat["p50"],
            "p90_ms": lat["p90"],
            "p99_ms": lat["p99"],
            "mean_ms": lat["mean"],
            "throughput_per_s": b["throughput"],
            "iterations": b["iterations"],
        }

    return {
        "created": doc["created"],
        "machine": machine_line(doc["machine"]),
        "runs": {run["label"]: {str(b["batch"]): one(b) for b in run["batches"]} for run in doc["runs"]},
        # what each figure ran as: backend and precision (OpenVINO: the inference precision it compiled with)
        "runners": {
            run["label"]: {
                k: (run.get("runner") or {}).get(k)
                for k in ("backend", "precision", "inference_precision")
                if (run.get("runner") or {}).get(k) is not None
            }
            for run in doc["runs"]
        },
    }


def compare_report(result: Any, machine: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON document for a CompareResult."""
    return {
        "schema": COMPARE_SCHEMA_ID,
        "created": utc_now(),
        "machine": machine or describe_machine(),
        **result.to_dict(),
    }


def validate_report(doc: dict[str, Any]) -> None:
    """Check a report against its JSON Schema (needs the jsonschema package from the dev extra)."""
    try:
        import jsonschema
    except ImportError:
        from deploykit.errors import MissingExtraError

        raise MissingExtraError("jsonschema", "dev", "Validating a report") from None
    schema = SCHEMAS.get(doc.get("schema"))
    if schema is None:
        raise DeployKitError(f"report schema '{doc.get('schema')}' is not one of {', '.join(SCHEMAS)}")
    try:
        jsonschema.validate(doc, schema)
    except jsonschema.ValidationError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise DeployKitError(f"report does not match {doc['schema']} at {where}: {e.message}") from None


def write_json(doc: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write a report atomically."""
    return atomic_write_json(path, doc)


# -- Markdown ----------------------------------------------------------------------------------
BENCH_COLUMNS = (
    "run",
    "backend",
    "device",
    "precision",
    "batch",
    "iters",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "mean ms",
    "min ms",
    "img/s",
    "first ms",
    "peak RSS MiB",
)


def _f(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return lines


def _several_models(doc: dict[str, Any]) -> bool:
    return len({run.get("model") for run in doc["runs"]}) > 1


def bench_columns(doc: dict[str, Any]) -> tuple[str, ...]:
    """Column names of ``bench_rows``: a model column leads when the runs cover several models."""
    return (("model",) if _several_models(doc) else ()) + BENCH_COLUMNS


def bench_rows(doc: dict[str, Any]) -> list[list[str]]:
    """Table rows (one per run and batch size), shared by Markdown and the terminal table."""
    rows = []
    lead = _several_models(doc)
    for run in doc["runs"]:
        r = run["runner"]
        for b in run["batches"]:
            lat = b["latency_ms"]
            rows.append(
                ([str(run.get("model"))] if lead else [])
                + [
                    run["label"],
                    r["backend"],
                    r["device"],
                    r.get("precision") or "-",
                    str(b["batch"]),
                    str(b["iterations"]),
                    _f(lat["p50"]),
                    _f(lat["p90"]),
                    _f(lat["p99"]),
                    _f(lat["mean"]),
                    _f(lat["min"]),
                    _f(b["throughput"], 1),
                    _f(b["first_inference_ms"]),
                    _f(b["peak_rss_mb"], 0),
                ]
            )
    return rows


def bench_markdown(doc: dict[str, Any]) -> str:
    """Markdown: the machine, then one table row per run and batch size (and the suite's ratios)."""
    lines = ["# Benchmark", "", f"Machine: {machine_line(doc['machine'])}", ""]
    if doc["runs"]:
        s = doc["runs"][0]["settings"]
        if s.get("iters") and s.get("time_limit_s"):
            count = (
                f"{s['iters']} timed iterations (cut after {s['time_limit_s']:g} s of timing but never under "
                f"{s.get('min_iters')}; the iters column has each row's count)"
            )
        elif s.get("iters"):
            count = f"{s['iters']} timed iterations"
        else:
            count = f"{s.get('duration_s')} s of timed calls per batch size"
        lines += [f"Timing: {count} after {s['warmup']} warm-up calls; latency = host numpy in to host numpy out.", ""]
        lines += _table(bench_columns(doc), bench_rows(doc))
    if "suite" in doc:
        lines += ["", suite_markdown(doc)]
    return "\n".join(lines) + "\n"


SUITE_COLUMNS = ("model", "variant", "p50 ms", "speedup vs baseline (95% CI)", "status")


def suite_rows(doc: dict[str, Any]) -> list[list[str]]:
    """Rows of the suite's ratio table."""
    out = []
    for row in doc["suite"]["rows"]:
        status = row["status"] if row["status"] == "ok" else f"{row['status']}: {row['reason']}"
        speed = "-" if row["speedup_vs_baseline"] is None else f"{row['speedup_vs_baseline']:.2f}x"
        if row.get("speedup_ci"):
            speed += f" ({row['speedup_ci'][0]:.2f}-{row['speedup_ci'][1]:.2f})"
        out.append([row["model"], row["variant"], _f(row["p50_ms"]), speed, status])
    return out


def suite_markdown(doc: dict[str, Any]) -> str:
    """Markdown table of every suite row: p50 and speed-up over the baseline measured in the same run."""
    suite = doc["suite"]
    lines = [f"## Speed-up over {suite['baseline']} (median per-round p50 ratio, same run)", ""]
    lines += _table(SUITE_COLUMNS, suite_rows(doc))
    return "\n".join(lines) + "\n"


def compare_markdown(doc: dict[str, Any]) -> str:
    """Markdown table of a comparison: one row per backend output against the reference."""
    head = ("runner", "output", "max abs", "max rel", "cosine", "top-1 agree", "result")
    rows = []
    for r in doc["rows"]:
        p = r["parity"]
        rows.append(
            [
                r["runner"],
                r["output"],
                _fmt_sci(p["max_abs"]),
                _fmt_sci(p["max_rel"]),
                _fmt_cos(p["cosine"]),
                _fmt_pct(p["top1_agreement"]),
                "pass" if r["passed"] else "FAIL: " + "; ".join(r["failures"]),
            ]
        )
    inp = doc["inputs"]
    lines = [
        f"# Comparison against {doc['reference']['name']}",
        "",
        f"Inputs: {inp['samples']} samples from {inp['source']} (batch {inp['batch']}); "
        f"gate: {doc['precision']}; overall: {'PASS' if doc['passed'] else 'FAIL'}",
        "",
    ]
    return "\n".join(lines + _table(head, rows)) + "\n"


def _fmt_sci(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, (int, float)) else str(v)


def _fmt_cos(v: Any) -> str:
    return f"{v:.6f}" if isinstance(v, (int, float)) else str(v)


def _fmt_pct(v: Any) -> str:
    return f"{v:.2%}" if isinstance(v, (int, float)) else str(v)


def write_markdown(text: str, path: str | os.PathLike) -> Path:
    """Write Markdown atomically."""
    return atomic_write_text(path, text)


# -- plots -------------------------------------------------------------------------------------
def _figure_bytes(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def plot_latency(doc: dict[str, Any], path: str | os.PathLike) -> Path:
    """PNG: p50 latency (p90 to p99 shaded) and throughput against batch size, one line per run."""
    plt = _pyplot()
    fig, (ax_l, ax_t) = plt.subplots(1, 2, figsize=(11, 4.2))
    for run in doc["runs"]:
        bs = [b["batch"] for b in run["batches"]]
        p50 = [b["latency_ms"]["p50"] for b in run["batches"]]
        p90 = [b["latency_ms"]["p90"] for b in run["batches"]]
        p99 = [b["latency_ms"]["p99"] for b in run["batches"]]
        label = f"{run['label']} ({run['runner'].get('precision') or '-'})"
        (line,) = ax_l.plot(bs, p50, marker="o", label=label)
        ax_l.fill_between(bs, p90, p99, color=line.get_color(), alpha=0.15)
        ax_t.plot(bs, [b["throughput"] for b in run["batches"]], marker="o", color=line.get_color(), label=label)
    for ax, title, ylabel in (
        (ax_l, "Latency p50 (band: p90 to p99)", "ms per batch"),
        (ax_t, "Throughput", "images / s"),
    ):
        ax.set_xlabel("batch size")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.set_xscale("log", base=2)
        ax.grid(True, alpha=0.3)
    ax_t.legend(fontsize=7, loc="best")
    fig.text(0.01, -0.02, machine_line(doc["machine"]), fontsize=7, ha="left")
    return atomic_write_bytes(path, _figure_bytes(fig))


def plot_ratios(doc: dict[str, Any], path: str | os.PathLike) -> Path:
    """PNG: grouped bars of each variant's speed-up over the baseline, per model (suite reports)."""
    if "suite" not in doc:
        raise DeployKitError("plot_ratios needs a suite report (with a 'suite' section)")
    plt = _pyplot()
    rows = [r for r in doc["suite"]["rows"] if r["speedup_vs_baseline"] is not None]
    models = list(dict.fromkeys(r["model"] for r in doc["suite"]["rows"]))
    variants = list(dict.fromkeys(r["variant"] for r in rows))  # only variants that measured something
    fig, ax = plt.subplots(figsize=(max(7.0, 1.8 * len(models) + 2), 4.8))
    width = 0.8 / max(1, len(variants))
    colors = plt.get_cmap("tab20").colors
    for i, v in enumerate(variants):
        xs, ys = [], []
        for j, m in enumerate(models):
            hit = [r for r in rows if r["model"] == m and r["variant"] == v]
            if hit:
                xs.append(j + (i - (len(variants) - 1) / 2) * width)
                ys.append(hit[0]["speedup_vs_baseline"])
        bars = ax.bar(xs, ys, width=width, label=v, color=colors[i % len(colors)])
        ax.bar_label(bars, labels=[f"{y:.1f}" for y in ys], fontsize=6, padding=1)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(models)), models)
    ax.set_ylabel("speed-up (p50 baseline / p50 row)")
    ax.set_title(f"Speed-up over {doc['suite']['baseline']}; higher is faster, skipped rows have no bar", fontsize=9)
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    ax.grid(True, axis="y", alpha=0.3)
    fig.text(0.01, -0.02, machine_line(doc["machine"]), fontsize=7, ha="left")
    return atomic_write_bytes(path, _figure_bytes(fig))
