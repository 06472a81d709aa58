"""The quantisation report: a terminal table, JSON, and a PNG of per-layer SQNR."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploykit._io import atomic_write_bytes, atomic_write_json
from deploykit.quantize.gate import Attempt


@dataclass
class QuantReport:
    """What was tried, what was kept, and what it cost."""

    model: str
    profile: str
    fp32_top1: float
    gate: float
    val: str
    calib: dict[str, Any]
    attempts: list[Attempt] = field(default_factory=list)
    chosen: str | None = None
    passed: bool = False
    warnings: list[str] = field(default_factory=list)
    high_precision: dict[str, Any] | None = None  # the FP16-outside variant: dtype, top1, kept nodes, passed

    @property
    def best(self) -> Attempt | None:
        return next((a for a in self.attempts if a.method == self.chosen), None)

    def to_dict(self) -> dict[str, Any]:
        best = self.best
        return {
            "model": self.model,
            "profile": self.profile,
            "gate": self.gate,
            "val": self.val,
            "calibration": self.calib,
            "fp32_top1": self.fp32_top1,
            "method": self.chosen,
            "int8_top1": best.top1_final if best else None,
            "int8_top1_before_fallback": best.top1_initial if best else None,
            "relative_accuracy": (best.top1_final / self.fp32_top1) if best and self.fp32_top1 else None,
            "passed": self.passed,
            "kept_fp32": best.kept if best else [],
            "fallbacks": [f.__dict__ for f in best.fallbacks] if best else [],
            "warnings": list(self.warnings),
            "high_precision": self.high_precision,
            "attempts": [a.to_dict() for a in self.attempts],
        }

    def render(self, console=None) -> None:
        """Print the summary table (stderr by default, so stdout stays clean for pipes)."""
        from rich.console import Console
        from rich.table import Table

        console = console or Console(stderr=True)
        t = Table(title=f"INT8 ({self.profile}) {self.model}: gate {self.gate} x FP32 top-1 {self.fp32_top1:.4f}")
        for col in ("method", "top-1 before", "top-1 after", "vs FP32", "layers in FP32", "gate"):
            t.add_column(col, justify="right" if col != "method" else "left")
        for a in self.attempts:
            mark = "*" if a.method == self.chosen else ""
            rel = a.top1_final / self.fp32_top1 if self.fp32_top1 else math.nan
            t.add_row(
                f"{a.method}{mark}",
                f"{a.top1_initial:.4f}",
                f"{a.top1_final:.4f}",
                f"{rel:.4f}",
                str(len(a.kept)),
                "[green]pass[/]" if a.passed else "[red]fail[/]",
            )
        console.print(t)
        best = self.best
        if best and best.trials and not any(t.kept == 0 and t.images == best.images for t in best.trials):
            console.print(
                f"top-1 before: on the search set ({best.trials[0].images} evenly spaced validation images); "
                f"after: on all {best.images}"
            )
        if best and best.stopped:
            console.print(f"search stopped: {best.stopped}")
        if best and best.fallbacks:
            f = Table(title="fallbacks to FP32 (worst SQNR drop first; top-1 where the search measured it)")
            for col in ("layer", "op", "SQNR drop dB", "top-1 before", "top-1 after"):
                f.add_column(col)
            for fb in best.fallbacks:
                drop = "-" if fb.sqnr_drop_db is None else f"{fb.sqnr_drop_db:.1f}"
                f.add_row(fb.layer, fb.op, drop, _pct(fb.top1_before), _pct(fb.top1_after))
            console.print(f)
        hp = self.high_precision
        if hp:
            mark = "[green]pass[/]" if hp["passed"] else "[red]fail[/]"
            console.print(
                f"outside the Q/DQ pairs in {hp['dtype'].upper()}: top-1 {hp['top1']:.4f} "
                f"({len(hp['kept_fp32_nodes'])} nodes kept in FP32) {mark}"
            )
        for w in self.warnings:
            console.print(f"[yellow]warning:[/] {w}")

    def write(self, path: str | os.PathLike) -> list[Path]:
        """Write ``<path>`` (JSON) and ``<stem>_sqnr.png`` beside it; returns the files written."""
        p = Path(path)
        if p.suffix != ".json":
            p = p / "quantize_report.json" if p.is_dir() or not p.suffix else p.with_suffix(".json")
        atomic_write_json(p, self.to_dict())
        out = [p]
        png = p.with_name(p.stem + "_sqnr.png")
        if self.best and self.best.sqnr:
            atomic_write_bytes(png, sqnr_png(self.best, f"{self.model} ({self.profile}, {self.chosen})"))
            out.append(png)
        return out


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def sqnr_png(attempt: Attempt, title: str) -> bytes:
    """Bar chart of per-layer output SQNR (fully quantised model), fallbacks highlighted."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = attempt.sqnr
    names = [r.layer for r in rows]
    vals = [r.output_sqnr if math.isfinite(r.output_sqnr) else 60.0 for r in rows]
    fell = {f.layer for f in attempt.fallbacks}
    colors = ["tab:red" if n in fell else "tab:blue" for n in names]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.18 * len(rows) + 2), 4))
    ax.bar(range(len(rows)), vals, color=colors)
    ax.set_xlabel("quantised layer (graph order)")
    ax.set_ylabel("SQNR vs FP32 (dB)\nall layers INT8")
    ax.set_title(title + "  (red: returned to FP32)")
    if len(rows) <= 40:
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels([n[-24:] for n in names], rotation=90, fontsize=6)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
