"""``deploykit triton`` (write a Triton model repository) and ``deploykit serve`` (run one)."""

from __future__ import annotations

import signal
import threading

import click

from deploykit.cli.options import instances_option, int_list, queue_delay_option


@click.command("triton")
@click.argument("artifact", type=click.Path())
@click.option(
    "--repo",
    required=True,
    type=click.Path(file_okay=False),
    help="Model repository folder (created if missing; other models are left alone).",
)
@click.option("--name", default=None, help="Model name (default: the artifact's model name).")
@click.option(
    "--version",
    "version",
    type=click.IntRange(min=1),
    default=None,
    help="Version number (default: one past the highest present).",
)
@click.option(
    "--max-batch",
    type=click.IntRange(min=1),
    default=None,
    help="max_batch_size (default: the artifact's batch profile maximum; 1 for Triton's OpenVINO backend, "
    "which compiles this one batch size and pads smaller batches to it).",
)
@instances_option("Model instances (instance_group count).")
@click.option(
    "--kind",
    type=click.Choice(["cpu", "gpu"]),
    default=None,
    help="Instance kind (default: gpu for an engine, cpu for ONNX).",
)
@click.option(
    "--dynamic-batching/--no-dynamic-batching",
    default=True,
    show_default=True,
    help="Let Triton merge concurrent requests into batches.",
)
@click.option(
    "--preferred-batch", callback=int_list, default=None, help="Preferred batch sizes of the dynamic batcher, e.g. 4,8."
)
@queue_delay_option
@click.option("--force", is_flag=True, help="Replace the version if it exists.")
@click.option(
    "--backend",
    type=click.Choice(["onnxruntime", "openvino", "openvino-bf16"]),
    default="onnxruntime",
    show_default=True,
    help="Triton backend for an ONNX artifact: onnxruntime, or Triton's OpenVINO backend "
    "(openvino for INT8 artifacts; openvino-bf16 runs float layers in bfloat16).",
)
def triton_cmd(
    artifact: str,
    repo: str,
    name: str | None,
    version: int | None,
    max_batch: int | None,
    instances: int,
    kind: str | None,
    dynamic_batching: bool,
    preferred_batch: list[int] | None,
    max_queue_delay_us: int,
    force: bool,
    backend: str,
) -> None:
    """Write ARTIFACT into a Triton model repository: NAME/VERSION/model.* and NAME/config.pbtxt."""
    from deploykit.serve.triton_repo import write_model_repository

    model = write_model_repository(
        artifact,
        repo,
        name=name,
        version=version,
        force=force,
        max_batch=max_batch,
        instances=instances,
        kind=kind,
        dynamic_batching=dynamic_batching,
        preferred_batch=tuple(preferred_batch) if preferred_batch else None,
        max_queue_delay_us=max_queue_delay_us,
        backend=backend,
    )
    click.echo(f"model '{model.name}' version {model.version} written to {model.version_dir}")
    click.echo(f"config: {model.config_path} (max_batch_size {model.max_batch_size})")
    if model.note:
        click.echo(model.note)


@click.command("serve")
@click.argument("artifacts", nargs=-1, required=True, type=click.Path())
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--http-port", type=int, default=8000, show_default=True)
@click.option("--grpc-port", type=int, default=8001, show_default=True)
@click.option("--metrics-port", type=int, default=8002, show_default=True)
@instances_option("Model instances per artifact (concurrent batches).")
@queue_delay_option
@click.option(
    "--log-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Triton's log file (default: deploykit-triton-PID.log in the temp folder).",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="ONNX Runtime intra-op threads per model instance (default: the usable cores shared among the instances; "
    "1 serves better on a machine busy with other work).",
)
@click.option(
    "--backend",
    type=click.Choice(["onnxruntime", "openvino", "openvino-bf16", "auto"]),
    default=None,
    help="Runtime inside each model's Python stub (PyTriton's Triton has only the Python backend): "
    "default onnxruntime; auto = the artifact's recorded fastest on this machine.",
)
def serve_cmd(
    artifacts: tuple[str, ...],
    host: str,
    http_port: int,
    grpc_port: int,
    metrics_port: int,
    instances: int,
    max_queue_delay_us: int,
    log_file: str | None,
    threads: int | None,
    backend: str | None,
) -> None:
    """Serve ARTIFACTS over HTTP and gRPC with a Triton server (Ctrl-C or SIGTERM stops it)."""
    import os
    import tempfile

    from deploykit.serve.server import Server

    log_file = log_file or os.path.join(tempfile.gettempdir(), f"deploykit-triton-{os.getpid()}.log")
    server = Server(
        artifacts,
        host=host,
        http_port=http_port,
        grpc_port=grpc_port,
        metrics_port=metrics_port,
        instances=instances,
        threads=threads,
        max_queue_delay_us=max_queue_delay_us,
        log_file=log_file,
        backend=backend,
    )
    done = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: done.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        info = server.start()
        click.echo(f"serving {', '.join(info.models)}")
        click.echo(f"  HTTP     {info.http_url}  (ready: {info.http_url}/v2/health/ready)")
        click.echo(f"  gRPC     {info.grpc_url}")
        click.echo(f"  metrics  {info.metrics_url}")
        click.echo(f"  log      {log_file}")
        click.echo("Ctrl-C to stop", err=True)
        while not done.wait(1.0):
            if not server.is_alive():
                raise click.ClickException("the Triton server stopped unexpectedly")
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo("stopped")
