"""``deploykit predict``: a table or JSON per image, folders expanded, bad inputs one line."""

from __future__ import annotations

import json

from click.testing import CliRunner

from deploykit.cli import cli
from deploykit.runtime import Predictor


def test_predict_json_and_table(fmnist_artifact, fmnist_images):
    folder = fmnist_images[0].parent
    res = CliRunner().invoke(cli, ["predict", str(fmnist_artifact.path), str(folder), "--json", "-k", "2"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    want = Predictor.from_artifact(fmnist_artifact.path).predict(sorted(fmnist_images), topk=2)
    assert [o["source"] for o in out] == [str(p) for p in sorted(fmnist_images)]
    assert [[t["index"] for t in o["top"]] for o in out] == [list(p.indices) for p in want]
    res = CliRunner().invoke(cli, ["predict", str(fmnist_artifact.path), str(fmnist_images[0]), "-k", "3"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0] == str(fmnist_images[0]) and len(lines) == 4
    assert lines[1].strip().startswith(f"1. {want[0].labels[0]}")


def test_predict_bad_inputs(fmnist_artifact, tmp_path):
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"\xff\xd8 truncated")
    for args, message in (
        ([str(junk)], "junk.jpg: cannot decode image"),
        ([str(tmp_path / "missing.png")], "missing.png: image file not found"),
        ([str(tmp_path / "empty")], "folder holds no image files"),
    ):
        (tmp_path / "empty").mkdir(exist_ok=True)
        res = CliRunner().invoke(cli, ["predict", str(fmnist_artifact.path), *args])
        assert res.exit_code == 1 and message in res.output, res.output
        assert len(res.output.strip().splitlines()) == 1
