"""Progress reporting without a display: library code reports, the caller decides what is shown.

Long work (calibration, validation, timing, training, export steps) calls :func:`task` and
:func:`note`. Nothing is printed unless the caller installed a reporter with :func:`reporting`
(the CLI installs a console one) or passed a callback as ``progress``; ``progress=False`` keeps
one call quiet. So a library user embedding deploykit never gets a progress bar they did not
ask for.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import Protocol

# A caller's own callback: (task label, units done, total or None) after every advance.
ProgressFn = Callable[[str, int, "int | None"], None]
Progress = "bool | str | ProgressFn | None"


class Reporter(Protocol):
    """What shows progress: a console bar, periodic log lines, a GUI..."""

    def start(self, label: str, total: int | None) -> object: ...

    def update(self, handle: object, done: int) -> None: ...

    def finish(self, handle: object) -> None: ...

    def note(self, text: str) -> None: ...


_reporter: contextvars.ContextVar[Reporter | None] = contextvars.ContextVar("deploykit_reporter", default=None)


@contextlib.contextmanager
def reporting(reporter: Reporter | None) -> Iterator[Reporter | None]:
    """Install ``reporter`` for the work done inside the block (this thread/context only)."""
    token = _reporter.set(reporter)
    try:
        yield reporter
    finally:
        _reporter.reset(token)


@contextlib.contextmanager
def task(
    progress: bool | str | ProgressFn | None, label: str, total: int | None = None
) -> Iterator[Callable[[int], None]]:
    """Report a unit of work; yields ``advance(n=1)``. Quiet when ``progress`` is falsy.

    ``progress`` may be True (use the installed reporter), a string (the same, with that label)
    or a callback receiving ``(label, done, total)``.
    """
    if isinstance(progress, str) and progress:
        label = progress
    done = 0
    if callable(progress):
        fn = progress

        def advance(n: int = 1) -> None:
            nonlocal done
            done += n
            fn(label, done, total)

        yield advance
        return
    reporter = _reporter.get() if progress else None
    if reporter is None:
        yield lambda n=1: None
        return
    handle = reporter.start(label, total)

    def advance(n: int = 1) -> None:
        nonlocal done
        done += n
        reporter.update(handle, done)

    try:
        yield advance
    finally:
        reporter.finish(handle)


def note(progress: bool | str | ProgressFn | None, text: str) -> None:
    """A finished step worth one line ("exported in 2.1 s"), shown by the installed reporter."""
    reporter = _reporter.get() if progress and not callable(progress) else None
    if reporter is not None:
        reporter.note(text)
