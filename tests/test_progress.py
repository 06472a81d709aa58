"""Progress: library code reports, only an installed reporter or a callback shows anything."""

from __future__ import annotations

import io

from deploykit.cli.progress import ConsoleReporter
from deploykit.progress import note, reporting, task


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def start(self, label, total):
        self.events.append(("start", label, total))
        return len(self.events)

    def update(self, handle, done):
        self.events.append(("update", done))

    def finish(self, handle):
        self.events.append(("finish",))

    def note(self, text):
        self.events.append(("note", text))


def test_nothing_is_shown_without_a_reporter_or_when_quiet():
    rec = Recorder()
    with task(True, "work", 3) as advance:  # no reporter installed: silent
        advance()
    with reporting(rec), task(False, "work", 3) as advance:  # quiet call
        advance()
        note(False, "done")
    assert rec.events == []


def test_an_installed_reporter_sees_every_step():
    rec = Recorder()
    with reporting(rec):
        with task("calibrating", "ignored label", 4) as advance:
            advance(3)
            advance()
        note(True, "exported")
    assert rec.events == [("start", "calibrating", 4), ("update", 3), ("update", 4), ("finish",), ("note", "exported")]


def test_a_callback_gets_label_done_total():
    seen = []
    with task(lambda *a: seen.append(a), "images", 10) as advance:
        advance(4)
        advance(6)
    assert seen == [("images", 4, 10), ("images", 10, 10)]


def test_a_log_gets_a_line_with_the_time_left_at_most_every_interval(monkeypatch):
    from deploykit.cli import progress as cp

    now = [0.0]
    monkeypatch.setattr(cp.time, "monotonic", lambda: now[0])
    out = io.StringIO()
    rep = ConsoleReporter(out, every_s=30, live=False)
    with reporting(rep), task(True, "training", 100) as advance:
        for _ in range(100):
            now[0] += 1.0  # one second per step: lines at 30, 60, 90 s
            advance()
    lines = out.getvalue().splitlines()
    assert lines[0] == "training: 30/100 (30%), 00:30 elapsed, about 01:10 left"
    assert len(lines) == 4 and lines[-1] == "training: done (100/100) in 01:40"
