"""The ``deploykit`` command: one click group whose commands each parse, call one function, print.

Exit codes: 0 ok, 1 error (a bad file, name or option value), 2 usage (click's own), 3 a gate
(accuracy or parity) failed.

Commands are imported lazily so ``deploykit --version`` and ``--help`` stay fast and a command's
heavy imports (torch, onnxruntime) happen only when it runs.
"""

from __future__ import annotations

import importlib
import sys

import click

from deploykit import __version__
from deploykit._io import note_stop, stop_signal
from deploykit.errors import DeployKitError, missing_extra

# command name -> "module:attribute" of its click.Command
COMMANDS: dict[str, str] = {
    "list": "deploykit.cli.models:list_cmd",
    "info": "deploykit.cli.models:info_cmd",
    "train-reference": "deploykit.cli.train:train_reference_cmd",
    "export": "deploykit.cli.export:export_cmd",
    "import": "deploykit.cli.import_onnx:import_cmd",
    "validate": "deploykit.cli.validate:validate_cmd",
    "optimize": "deploykit.cli.optimize:optimize_cmd",
    "quantize": "deploykit.cli.quantize:quantize_cmd",
    "bench": "deploykit.cli.bench:bench_cmd",
    "compare": "deploykit.cli.bench:compare_cmd",
    "predict": "deploykit.cli.predict:predict_cmd",
    "triton": "deploykit.cli.serve:triton_cmd",
    "serve": "deploykit.cli.serve:serve_cmd",
    "build": "deploykit.cli.build:build_cmd",
}


class DeployKitGroup(click.Group):
    """Lazy command loading, and a user's mistake printed as one line with exit code 1."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attr)

    def invoke(self, ctx: click.Context):
        from deploykit.cli.progress import ConsoleReporter
        from deploykit.progress import reporting

        try:
            try:
                with reporting(ConsoleReporter()):  # library code reports; the CLI shows it
                    return super().invoke(ctx)
            except ImportError as e:
                # A plain install is the torch-free runtime: a pipeline command names the extra.
                extra = missing_extra(e, f"deploykit {ctx.invoked_subcommand or ''}".strip())
                if extra is None:
                    raise
                raise extra from None
        except DeployKitError as e:
            err = click.ClickException(str(e))
            err.exit_code = getattr(e, "exit_code", 1)  # 3 for a failed gate (see errors.GateError)
            raise err from None


@click.group(cls=DeployKitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="deploykit")
def cli() -> None:
    """Take classic CNNs from PyTorch to fast, verified ONNX and TensorRT artifacts."""


def main() -> None:
    """Console-script entry point."""
    _unwind_on_signals()
    try:
        cli(prog_name="deploykit")
    except BaseException:
        stopped = stop_signal()
        if stopped is None:
            raise
        # The stop unwound through library code that re-raised it as its own error (an import in
        # progress, a C extension): every temporary directory is gone by now; just say why we stop.
        click.echo(f"Aborted: stopped by signal {stopped}", err=True)
        sys.exit(128 + stopped)


def _unwind_on_signals() -> None:
    """SIGINT and SIGTERM unwind the stack, so a stage's temporary directory is removed, not left
    (and, recorded, stop any stage from committing if library code swallowed the unwinding)."""
    import signal

    def stop(signum: int, frame: object) -> None:
        note_stop(signum)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
