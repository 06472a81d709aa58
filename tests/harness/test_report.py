"""Reports: JSON validates against its schema, PNGs decode, Markdown rows match the results."""

from __future__ import annotations

import json

import jsonschema
import pytest
from PIL import Image
from tiny_models import tiny_module, tiny_onnx

from deploykit.backends import make_runner
from deploykit.errors import DeployKitError
from deploykit.harness.bench import benchmark, describe_machine
from deploykit.harness.compare import compare_backends
from deploykit.harness.report import (
    BENCH_SCHEMA,
    COMPARE_SCHEMA,
    bench_markdown,
    bench_report,
    compare_markdown,
    compare_report,
    plot_latency,
    plot_ratios,
    validate_report,
    write_json,
)


@pytest.fixture(scope="module")
def bench_doc(tmp_path_factory):
    path = tiny_onnx(tmp_path_factory.mktemp("m") / "m.onnx")
    machine = describe_machine()
    runs = [
        benchmark(make_runner(path, threads=1), [1, 2, 4], warmup=2, iters=20, machine=machine, label="ort"),
        benchmark(
            make_runner(tiny_module(), backend="torch", threads=1),
            [1, 2],
            warmup=2,
            iters=20,
            machine=machine,
            label="torch",
        ),
    ]
    suite = {
        "baseline": "torch",
        "settings": {"iters": 20},
        "rows": [
            {
                "model": "tiny",
                "variant": "torch",
                "status": "ok",
                "reason": None,
                "p50_ms": 0.2,
                "speedup_vs_baseline": 1.0,
            },
            {
                "model": "tiny",
                "variant": "ort",
                "status": "ok",
                "reason": None,
                "p50_ms": 0.1,
                "speedup_vs_baseline": 2.0,
            },
            {
                "model": "tiny",
                "variant": "tensorrt",
                "status": "skipped",
                "reason": "no GPU",
                "p50_ms": None,
                "speedup_vs_baseline": None,
            },
        ],
    }
    return bench_report(runs, machine=machine, suite=suite)


def test_schemas_are_valid_json_schemas():
    jsonschema.Draft202012Validator.check_schema(BENCH_SCHEMA)
    jsonschema.Draft202012Validator.check_schema(COMPARE_SCHEMA)


def test_bench_json_validates_and_round_trips(bench_doc, tmp_path):
    validate_report(bench_doc)
    path = write_json(bench_doc, tmp_path / "r.json")
    loaded = json.loads(path.read_text())
    jsonschema.validate(loaded, BENCH_SCHEMA)
    assert loaded["schema"] == "deploykit.bench/1" and len(loaded["runs"]) == 2


def test_schema_rejects_broken_reports(bench_doc):
    broken = json.loads(json.dumps(bench_doc))
    del broken["runs"][0]["batches"][0]["latency_ms"]["p99"]
    with pytest.raises(DeployKitError, match="runs/0/batches/0/latency_ms"):
        validate_report(broken)
    broken = json.loads(json.dumps(bench_doc))
    broken["runs"][0]["batches"][0]["iterations"] = 0
    with pytest.raises(DeployKitError, match="iterations"):
        validate_report(broken)
    with pytest.raises(DeployKitError, match="schema 'other/1'"):
        validate_report({"schema": "other/1"})


def _table_rows(md: str, first_header: str) -> list[list[str]]:
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def test_markdown_rows_match_results(bench_doc):
    md = bench_markdown(bench_doc)
    rows = _table_rows(md, "run")
    expected = [(run, b) for run in bench_doc["runs"] for b in run["batches"]]
    assert len(rows) == len(expected) == 5
    for row, (run, b) in zip(rows, expected):
        assert row[0] == run["label"] and row[1] == run["runner"]["backend"]
        assert int(row[4]) == b["batch"] and int(row[5]) == b["iterations"]
        assert float(row[6]) == pytest.approx(b["latency_ms"]["p50"], abs=5e-4)
        assert float(row[8]) == pytest.approx(b["latency_ms"]["p99"], abs=5e-4)
        assert float(row[11]) == pytest.approx(b["throughput"], abs=0.05)
    suite = _table_rows(md, "model")
    assert [r[1] for r in suite] == ["torch", "ort", "tensorrt"]
    assert suite[1][3] == "2.00x" and suite[2][4] == "skipped: no GPU"
    assert "AMD" in md or bench_doc["machine"]["cpu"] in md


def _decode_png(path):
    with Image.open(path) as img:
        assert img.format == "PNG"
        img.load()
        return img.size


def test_plots_decode(bench_doc, tmp_path):
    w, h = _decode_png(plot_latency(bench_doc, tmp_path / "lat.png"))
    assert w > 300 and h > 200
    w, h = _decode_png(plot_ratios(bench_doc, tmp_path / "ratios.png"))
    assert w > 300 and h > 200
    no_suite = {k: v for k, v in bench_doc.items() if k != "suite"}
    with pytest.raises(DeployKitError, match="needs a suite report"):
        plot_ratios(no_suite, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_compare_report_validates_and_renders(tmp_path):
    good = tiny_onnx(tmp_path / "a.onnx")
    bad = tiny_onnx(tmp_path / "b.onnx", bias_shift=1.0)
    res = compare_backends(None, [make_runner(good), make_runner(good), make_runner(bad)], batch=2)
    doc = compare_report(res)
    validate_report(doc)
    assert doc["passed"] is False and [r["passed"] for r in doc["rows"]] == [True, False]
    rows = _table_rows(compare_markdown(doc), "runner")
    assert len(rows) == 2 and rows[0][-1] == "pass" and rows[1][-1].startswith("FAIL: max abs error")
    assert float(rows[1][2]) == pytest.approx(doc["rows"][1]["parity"]["max_abs"], rel=1e-2)
