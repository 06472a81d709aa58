"""The CLI's progress display: live bars in a terminal, a line every 30 s with the time left elsewhere."""

from __future__ import annotations

import importlib.util
import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO

LOG_EVERY_S = 30.0


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


@dataclass
class _Task:
    label: str
    total: int | None
    started: float = 0.0
    last_line: float = 0.0
    done: int = 0
    bar_id: Any = None


class ConsoleReporter:
    """A deploykit.progress.Reporter for the terminal (rich bars) or a log (periodic lines with ETA)."""

    def __init__(self, stream: TextIO | None = None, every_s: float = LOG_EVERY_S, live: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.every_s = every_s
        # Live bars need rich (the pipeline extra); the plain runtime install prints lines instead.
        if live is None:
            live = self.stream.isatty() and importlib.util.find_spec("rich") is not None
        self.live = live
        self._bars: Any = None
        self._tasks: dict[int, _Task] = {}
        self._next = 0

    # -- Reporter --------------------------------------------------------------------------------
    def start(self, label: str, total: int | None) -> int:
        handle = self._next
        self._next += 1
        now = time.monotonic()
        self._tasks[handle] = _Task(label, total, started=now, last_line=now)
        if self.live:
            bars = self._live_bars()
            self._tasks[handle].bar_id = bars.add_task(label, total=total)
        return handle

    def update(self, handle: object, done: int) -> None:
        t = self._tasks.get(handle)  # type: ignore[arg-type]
        if t is None:
            return
        t.done = done
        if self.live:
            self._bars.update(t.bar_id, completed=done)
            return
        now = time.monotonic()
        if now - t.last_line >= self.every_s:
            t.last_line = now
            self._line(t, now)

    def finish(self, handle: object) -> None:
        t = self._tasks.pop(handle, None)  # type: ignore[arg-type]
        if t is None:
            return
        elapsed = time.monotonic() - t.started
        if self.live:
            self._bars.update(t.bar_id, completed=t.done if t.total is None else t.total, visible=False)
            if not self._tasks:
                self._bars.stop()
                self._bars = None
        elif elapsed >= self.every_s:  # a log gets a closing line for work long enough to have had others
            self._write(f"{t.label}: done ({t.done}{'' if t.total is None else f'/{t.total}'}) in {_clock(elapsed)}")

    def note(self, text: str) -> None:
        self._write(f"✓ {text}")

    # -- helpers ---------------------------------------------------------------------------------
    def line_for(self, label: str, done: int, total: int | None, elapsed: float) -> str:
        """``label: 120/600 (20%), 01:10 elapsed, about 04:40 left``."""
        if total:
            pct = done / total
            left = elapsed / done * (total - done) if done else None
            eta = f", about {_clock(left)} left" if left is not None else ""
            return f"{label}: {done}/{total} ({pct:.0%}), {_clock(elapsed)} elapsed{eta}"
        return f"{label}: {done} done, {_clock(elapsed)} elapsed"

    def _line(self, t: _Task, now: float) -> None:
        self._write(self.line_for(t.label, t.done, t.total, now - t.started))

    def _write(self, text: str) -> None:
        if self._bars is not None:
            self._bars.console.print(text, highlight=False, markup=False)
        else:
            print(text, file=self.stream, flush=True)

    def _live_bars(self) -> Any:
        if self._bars is None:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bars = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(file=self.stream),
                transient=True,
            )
            self._bars.start()
        return self._bars
