"""The Triton Python-backend stub finds this interpreter's libpython first."""

from __future__ import annotations

import sysconfig

from deploykit.serve.server import model_names, python_libdir_first


def test_libdir_goes_first_once(monkeypatch):
    libdir = sysconfig.get_config_var("LIBDIR")
    monkeypatch.setenv("LD_LIBRARY_PATH", f"/opt/other:{libdir}:/usr/lib")
    assert python_libdir_first() == f"{libdir}:/opt/other:/usr/lib"
    monkeypatch.delenv("LD_LIBRARY_PATH")
    assert python_libdir_first() == libdir


def test_two_artifacts_of_one_model_are_served_under_their_folder_names(tmp_path):
    from tiny_models import tiny_artifact

    from deploykit.runtime import Predictor

    a = Predictor.from_artifact(tiny_artifact(tmp_path / "tiny-fp32").path)
    b = Predictor.from_artifact(tiny_artifact(tmp_path / "tiny v2").path)
    assert model_names([a]) == ["tiny"]
    assert model_names([a, b]) == ["tiny-fp32", "tiny_v2"]


def test_served_threads_share_the_usable_cores_among_the_instances(monkeypatch):
    import deploykit.machine as machine
    from deploykit.serve.server import serve_threads

    monkeypatch.setattr(machine, "usable_cores", lambda: 8)
    assert [serve_threads(n) for n in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]
