"""Spies and fakes for the timing tests: a spy on ``onnxruntime.InferenceSession`` (the options of every
session made, how many were alive at once) and two fake CPU runtimes beside onnxruntime."""

from __future__ import annotations

from typing import Any

from deploykit.backends.onnxruntime import OnnxRuntimeRunner


class SessionSpy:
    """Replaces ``onnxruntime.InferenceSession`` (through ``monkeypatch``) with a counting subclass."""

    def __init__(self, monkeypatch: Any) -> None:
        import onnxruntime as ort

        self.options: list[Any] = []
        self.alive = 0
        self.max_alive = 0
        spy = self

        class Spied(ort.InferenceSession):
            def __init__(self, *args: Any, sess_options: Any = None, **kwargs: Any) -> None:
                super().__init__(*args, sess_options=sess_options, **kwargs)
                spy.options.append(sess_options)
                spy.alive += 1
                spy.max_alive = max(spy.max_alive, spy.alive)

            def __del__(self) -> None:
                spy.alive -= 1

        monkeypatch.setattr(ort, "InferenceSession", Spied)

    @staticmethod
    def settings(so: Any) -> dict[str, Any]:
        """What a SessionOptions sets, in the vocabulary of ``deploykit.onnx_io.SessionSettings``."""

        def entry(key: str) -> str | None:
            try:
                return so.get_session_config_entry(key)
            except RuntimeError:  # not set: ORT's default
                return None

        return {
            "threads": so.intra_op_num_threads or None,
            "inter_op_threads": so.inter_op_num_threads or None,
            "spin": entry("session.intra_op.allow_spinning") != "0",
            "inter_op_spin": entry("session.inter_op.allow_spinning") != "0",
            "optimization": str(so.graph_optimization_level),
        }


class Instant(OnnxRuntimeRunner):
    """A second 'runtime' that answers from a cache: far faster than ORT on the same file."""

    backend = "fake"

    def _infer(self, feeds):
        if not hasattr(self, "_cached"):
            self._cached = super()._infer(feeds)
        return self._cached


class Twice(OnnxRuntimeRunner):
    """A second 'runtime' that runs every call twice: slower than ORT."""

    backend = "slow"

    def _infer(self, feeds):
        super()._infer(feeds)
        return super()._infer(feeds)


class Broken(OnnxRuntimeRunner):
    """A second 'runtime' that cannot load the model (as OpenVINO refuses some Q/DQ graphs)."""

    backend = "broken"

    def _activate(self):
        from deploykit.errors import DeployKitError

        raise DeployKitError(f"broken[{self.name}]: cannot compile it (a test stand-in)")


def fake_backends(monkeypatch):
    """deployment_runner with extra CPU backends beside onnxruntime: 'fake' (fast), 'slow', 'broken'."""
    from deploykit.harness import bench

    real = bench.deployment_runner

    def runner(target, backend="onnxruntime", threads=None):
        extra = {"fake": Instant, "slow": Twice, "broken": Broken}.get(backend)
        if extra is None:
            return real(target, backend, threads)
        path = target.main_path if hasattr(target, "main_path") else target
        return extra(path, threads=threads, name=backend)

    monkeypatch.setattr(bench, "deployment_runner", runner)
