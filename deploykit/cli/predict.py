"""``deploykit predict``: top-k labels of images through the torch-free runtime (thin wrapper)."""

from __future__ import annotations

import json

import click

from deploykit.cli.options import threads_option


@click.command("predict")
@click.argument("artifact", type=click.Path())
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--topk", "-k", type=click.IntRange(min=1), default=5, show_default=True, help="Classes shown per image.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@threads_option
@click.option(
    "--backend",
    type=click.Choice(["onnxruntime", "openvino", "openvino-bf16", "tensorrt", "auto"]),
    default=None,
    help="Runtime (default: onnxruntime for ONNX, tensorrt for an engine); auto = the fastest recorded for "
    "this machine in the artifact's runtime_choice at the batch nearest the number of images, else onnxruntime.",
)
@click.option("--device", default=None, help="The GPU an engine artifact runs on: cuda:N (default: the first).")
def predict_cmd(
    artifact: str,
    images: tuple[str, ...],
    topk: int,
    as_json: bool,
    threads: int | None,
    backend: str | None,
    device: str | None,
) -> None:
    """Top-k labels and probabilities of each IMAGE (a folder expands to the images in it)."""
    from deploykit.runtime import Predictor
    from deploykit.runtime.predictor import image_files

    files = image_files(images)
    # auto: the runtime measured fastest at the batch these images make (split at the profile's max)
    predictor = Predictor.from_artifact(
        artifact, backend=backend, threads=threads, device=device, expected_batch=len(files) or None
    )
    if backend is not None:
        click.echo(f"backend: {predictor.backend} ({predictor.backend_reason})", err=True)
    preds = predictor.predict(files, topk=topk)
    if as_json:
        click.echo(json.dumps([p.to_dict() for p in preds], indent=2))
        return
    width = max(len(lab) for p in preds for lab in p.labels)
    for p in preds:
        click.echo(p.source)
        for rank, (lab, idx, prob) in enumerate(zip(p.labels, p.indices, p.probabilities), 1):
            click.echo(f"  {rank}. {lab:<{width}}  {prob:7.2%}  (class {idx})")
