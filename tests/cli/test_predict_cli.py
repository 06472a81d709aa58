"""``deploykit predict``: a table or JSON per image, folders expanded, bad inputs one line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap

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


# torch and onnx behave as if not installed (ModuleNotFoundError, like a plain `pip install
# deploykit`); then the CLI runs with the given arguments and reports what it loaded.
WITHOUT_PIPELINE = textwrap.dedent("""
    import importlib.abc, json, sys

    class Absent(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "onnx"):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Absent())
    from deploykit.cli import main

    sys.argv = ["deploykit", *sys.argv[1:]]
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code
    heavy = sorted(m for m in ("torch", "onnx") if m in sys.modules)
    print(json.dumps({"code": code, "heavy": heavy}))
""")


def _without_pipeline(*args: str) -> tuple[dict, str, str]:
    proc = subprocess.run([sys.executable, "-c", WITHOUT_PIPELINE, *args], capture_output=True, text=True, timeout=120)
    *out, last = proc.stdout.strip().splitlines()
    return json.loads(last), "\n".join(out), proc.stderr


def test_predict_and_help_never_import_torch_or_onnx(fmnist_artifact, fmnist_images):
    result, out, err = _without_pipeline("predict", str(fmnist_artifact.path), str(fmnist_images[0]), "--json")
    assert result == {"code": 0, "heavy": []}, err[-2000:]
    want = Predictor.from_artifact(fmnist_artifact.path).predict([fmnist_images[0]])
    assert [t["index"] for t in json.loads(out)[0]["top"]] == list(want[0].indices)
    result, out, err = _without_pipeline("--help")
    assert result == {"code": 0, "heavy": []}, err[-2000:]
    assert "export" in out and "predict" in out


def test_triton_repository_is_written_without_torch_or_onnx(fmnist_artifact, tmp_path):
    result, out, err = _without_pipeline("triton", str(fmnist_artifact.path), "--repo", str(tmp_path / "repo"))
    assert result == {"code": 0, "heavy": []}, err[-2000:]
    written = tmp_path / "repo" / "resnet18" / "1" / "model.onnx"
    assert written.read_bytes() == fmnist_artifact.main_path.read_bytes()


def test_pipeline_command_without_torch_names_the_extra(tmp_path):
    result, out, err = _without_pipeline("export", "resnet18", "-o", str(tmp_path / "a"))
    assert result["code"] == 1
    # One line, no traceback; the package named is whichever of torch / onnx the command reached first.
    assert re.fullmatch(
        r"Error: deploykit export needs the '(torch|onnx)' package, which is not installed; "
        r"install it with: pip install 'deploykit\[pipeline\]'\n",
        err,
    ), err
    assert not (tmp_path / "a").exists()
