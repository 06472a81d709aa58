"""What every hostile-input case asserts: one line naming the problem, non-zero exit, no traceback,
nothing new at the output location, and a previous artifact there byte-for-byte unchanged."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner, Result

from deploykit.cli import cli


def invoke(*args: str | Path) -> Result:
    """Run the deploykit CLI in-process; exceptions are caught so a traceback shows in the assert."""
    return CliRunner().invoke(cli, [str(a) for a in args])


def refused(result: Result, *needles: str, code: int = 1) -> str:
    """Assert a clean refusal and return its one ``Error:`` line (each needle must be in it)."""
    text = result.output
    assert result.exit_code == code, f"exit {result.exit_code} != {code}:\n{text}\n{result.exception!r}"
    assert "Traceback" not in text, text
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    errors = [ln for ln in text.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1, text
    if code == 1:  # a user's mistake: the error is the only thing printed
        assert [ln for ln in text.splitlines() if ln.strip()] == errors, text
    for needle in needles:
        assert needle in errors[0], f"{needle!r} not in {errors[0]!r}"
    return errors[0]


def snapshot(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` with its bytes (empty when the path does not exist)."""
    if not path.exists():
        return {}
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def leftovers(out: Path) -> list[str]:
    """Temporary or set-aside siblings a stage may have left beside ``out``."""
    return sorted(p.name for p in out.parent.glob(f".{out.name}.*"))


def assert_untouched(out: Path, before: dict[str, bytes]) -> None:
    """The output location holds exactly what it held before, and nothing was left beside it."""
    assert snapshot(out) == before, f"{out} changed"
    if not before:
        assert not out.exists(), f"{out} was created"
    assert leftovers(out) == [], leftovers(out)
