"""The artifact directory and its manifest: the spine every stage reads and writes.

An artifact is a directory with model file(s) and ``manifest.json`` saying what it is, where it
came from, how to feed it and what was proven about it. This module alone writes manifests, and
it writes them atomically: a stage builds its artifact in a temporary sibling directory and
renames it into place only once everything (parity gates included) succeeded.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import platform
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploykit._io import atomic_write_json, sha256_file, stop_signal
from deploykit.data.config import DataConfig
from deploykit.errors import DeployKitError

MANIFEST_NAME = "manifest.json"
SCHEMA = "deploykit.artifact/1"
FORMATS = ("onnx", "tensorrt-engine")
PRECISIONS = ("fp32", "fp16", "int8", "mixed")


def utc_now() -> str:
    """ISO-8601 UTC timestamp used in every manifest."""
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def tool_versions(*extra: str) -> dict[str, str]:
    """Versions of deploykit, Python and the libraries that shaped an artifact."""
    from importlib.metadata import PackageNotFoundError, version

    import deploykit

    out = {"deploykit": deploykit.__version__, "python": platform.python_version()}
    for pkg in ("torch", "onnx", "onnxruntime", *extra):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out


@dataclass
class TensorSpec:
    """Name, dtype and shape of a model input or output; a str dim is symbolic (e.g. 'batch')."""

    name: str
    dtype: str
    shape: list[int | str]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TensorSpec:
        return cls(name=str(d["name"]), dtype=str(d["dtype"]), shape=list(d["shape"]))


@dataclass
class BatchProfile:
    """Batch sizes an artifact accepts: fixed (min == max) or a dynamic range with an optimum."""

    min: int = 1
    opt: int = 1
    max: int = 1
    dynamic: bool = False

    def check(self, batch: int, where: str = "artifact") -> None:
        """Refuse a batch size outside the profile with a one-line error."""
        if not self.dynamic and batch != self.max:
            raise DeployKitError(f"{where}: batch {batch} requested but it was built for batch {self.max} only")
        if self.dynamic and not (self.min <= batch <= self.max):
            raise DeployKitError(f"{where}: batch {batch} is outside its profile [{self.min}, {self.max}]")


@dataclass
class Manifest:
    """The one manifest schema (``deploykit.artifact/1``)."""

    model: str
    family: str
    format: str
    precision: str
    main_file: str
    data_config: DataConfig
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    batch: BatchProfile = field(default_factory=BatchProfile)
    opset: int | None = None
    weights: dict[str, Any] | None = None  # {"file": name, "sha256": hex} or None (random init)
    parent: dict[str, Any] | None = None  # {"path": str, "manifest_sha256": hex, "precision": str}
    versions: dict[str, str] = field(default_factory=tool_versions)
    created: str = field(default_factory=utc_now)
    # One entry per stage that shaped this artifact, oldest first: {"stage", "created", "params", ...}.
    stages: list[dict[str, Any]] = field(default_factory=list)
    # What was proven about this artifact, by check name ("parity", "accuracy", "latency", ...).
    results: dict[str, Any] = field(default_factory=dict)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # filled at commit

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise DeployKitError(f"manifest format '{self.format}' is not one of {', '.join(FORMATS)}")
        if self.precision not in PRECISIONS:
            raise DeployKitError(f"manifest precision '{self.precision}' is not one of {', '.join(PRECISIONS)}")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"schema": SCHEMA}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, DataConfig):
                v = v.to_dict()
            elif dataclasses.is_dataclass(v):
                v = dataclasses.asdict(v)
            elif isinstance(v, list) and v and dataclasses.is_dataclass(v[0]):
                v = [dataclasses.asdict(x) for x in v]
            d[f.name] = v
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "manifest") -> Manifest:
        schema = d.get("schema")
        if schema != SCHEMA:
            prefix, _, version = str(schema).rpartition("/")
            if prefix == SCHEMA.rpartition("/")[0] and version.isdigit() and int(version) > 1:
                raise DeployKitError(
                    f"{where}: written by a newer deploykit (schema {schema}, this one reads "
                    f"{SCHEMA}); upgrade deploykit to read it"
                )
            raise DeployKitError(f"{where}: schema '{str(schema)[:80]}' is not {SCHEMA}")
        try:
            m = cls(
                model=d["model"],
                family=d["family"],
                format=d["format"],
                precision=d["precision"],
                main_file=d["main_file"],
                data_config=DataConfig.from_dict(d["data_config"]),
                inputs=[TensorSpec.from_dict(x) for x in d["inputs"]],
                outputs=[TensorSpec.from_dict(x) for x in d["outputs"]],
                batch=BatchProfile(**d.get("batch", {})),
                opset=d.get("opset"),
                weights=d.get("weights"),
                parent=d.get("parent"),
                versions=dict(d.get("versions", {})),
                created=d.get("created", ""),
                stages=list(d.get("stages", [])),
                results=dict(d.get("results", {})),
                files=dict(d.get("files", {})),
            )
        except KeyError as e:
            raise DeployKitError(f"{where}: missing required field {e.args[0]}") from None
        except (TypeError, ValueError, AttributeError, OverflowError) as e:
            raise DeployKitError(f"{where}: malformed ({e})") from None
        except DeployKitError as e:
            raise DeployKitError(e.args[0] if str(e).startswith(where) else f"{where}: {e}") from None
        _check_fields(m, where)
        return m

    def add_stage(self, stage: str, **info: Any) -> None:
        """Append a provenance entry for a stage."""
        self.stages.append({"stage": stage, "created": utc_now(), **info})


def _check_fields(m: Manifest, where: str) -> None:
    """Types a hand-edited or hostile manifest could get wrong, and file names that leave the folder."""
    for name in ("model", "family", "main_file", "created"):
        if not isinstance(getattr(m, name), str):
            raise DeployKitError(f"{where}: field '{name}' must be a string")
    for name in ("weights", "parent"):
        if not isinstance(getattr(m, name), (dict, type(None))):
            raise DeployKitError(f"{where}: field '{name}' must be an object or null")
    b = m.batch
    if (
        not all(isinstance(v, int) and not isinstance(v, bool) for v in (b.min, b.opt, b.max))
        or not 1 <= b.min <= b.opt <= b.max
    ):
        raise DeployKitError(f"{where}: batch profile {dataclasses.asdict(b)} is not 1 <= min <= opt <= max")
    for spec in (*m.inputs, *m.outputs):
        if not all(
            (isinstance(x, int) and not isinstance(x, bool) and x >= 0) or isinstance(x, str) for x in spec.shape
        ):
            raise DeployKitError(f"{where}: tensor '{spec.name}' has an invalid shape {spec.shape}")
    for rel in (m.main_file, *m.files):
        if not _inside(rel):
            raise DeployKitError(f"{where}: file name '{rel}' points outside the artifact directory")
    for rel, info in m.files.items():
        if not (isinstance(info, dict) and isinstance(info.get("sha256"), str) and isinstance(info.get("bytes"), int)):
            raise DeployKitError(f"{where}: entry for '{rel}' in 'files' needs a sha256 string and a byte count")


def _inside(rel: str) -> bool:
    """True for a relative path that stays inside its directory ('a/b.onnx', not '../x' or '/x')."""
    parts = Path(rel).parts
    return bool(rel) and not Path(rel).is_absolute() and ".." not in parts and "\\" not in rel


class Artifact:
    """A committed artifact directory, loaded with its manifest (hashes verified by default)."""

    def __init__(self, path: Path, manifest: Manifest) -> None:
        self.path = path
        self.manifest = manifest

    @property
    def main_path(self) -> Path:
        return self.path / self.manifest.main_file

    @property
    def data_config(self) -> DataConfig:
        return self.manifest.data_config

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST_NAME

    @classmethod
    def load(cls, path: str | os.PathLike, verify: bool = True) -> Artifact:
        """Read an artifact directory; with ``verify`` every file is re-hashed against the manifest."""
        p = Path(path)
        if not p.exists():
            raise DeployKitError(f"{p}: artifact directory not found")
        if not p.is_dir():
            raise DeployKitError(f"{p}: not an artifact directory (expected a folder with {MANIFEST_NAME})")
        mpath = p / MANIFEST_NAME
        if not mpath.is_file():
            raise DeployKitError(f"{mpath}: manifest not found; is {p} an artifact directory?")
        try:
            raw = json.loads(mpath.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DeployKitError(f"{mpath}: not valid JSON ({e})") from None
        if not isinstance(raw, dict):
            raise DeployKitError(f"{mpath}: expected a JSON object")
        art = cls(p, Manifest.from_dict(raw, where=str(mpath)))
        if verify:
            art.verify()
        return art

    def verify(self) -> None:
        """Re-hash every file listed in the manifest; a mismatch names the file."""
        files = self.manifest.files
        if self.manifest.main_file not in files:
            raise DeployKitError(f"{self.manifest_path}: main file '{self.manifest.main_file}' is not listed")
        root = self.path.resolve()
        for rel, info in files.items():
            fp = self.path / rel
            if not fp.is_file():
                raise DeployKitError(f"{fp}: listed in the manifest but missing")
            if not fp.resolve().is_relative_to(root):
                raise DeployKitError(f"{fp}: a link that points outside the artifact directory")
            if fp.stat().st_size != info.get("bytes"):
                raise DeployKitError(f"{fp}: size does not match the manifest (file changed or truncated)")
            if sha256_file(fp) != info.get("sha256"):
                raise DeployKitError(f"{fp}: sha256 does not match the manifest (file changed)")
        if self.manifest.format == "onnx":
            from deploykit.onnx_io import check_declared_inputs

            check_declared_inputs(self.main_path, self.manifest.inputs)

    def manifest_sha256(self) -> str:
        return sha256_file(self.manifest_path)

    def parent_ref(self) -> dict[str, Any]:
        """How a child artifact names this one as its parent."""
        return {
            "path": str(self.path.resolve()),
            "manifest_sha256": self.manifest_sha256(),
            "main_sha256": self.manifest.files[self.manifest.main_file]["sha256"],
            "precision": self.manifest.precision,
        }

    def record_result(self, key: str, value: Any) -> None:
        """Store a proof (accuracy, latency...) in this artifact's manifest, atomically."""
        self.manifest.results[key] = value
        atomic_write_json(self.manifest_path, self.manifest.to_dict())


def accuracy_gate(top1: float, reference_top1: float, ratio: float) -> tuple[bool, str]:
    """The one accuracy gate (MLPerf's rule): pass when top-1 keeps ``ratio`` of the reference's."""
    if not 0 < ratio <= 1:
        raise DeployKitError(f"accuracy gate {ratio} must be in (0, 1] (e.g. 0.99 for 99% of FP32)")
    need = ratio * reference_top1
    passed = top1 >= need - 1e-12
    kept_text = f"{top1 / reference_top1:.2%}" if reference_top1 > 0 else "n/a"
    message = (
        f"top-1 {top1:.2%} vs FP32 reference {reference_top1:.2%}: keeps {kept_text} "
        f"(gate: at least {ratio:.2%}, i.e. top-1 >= {need:.2%}): {'PASS' if passed else 'FAIL'}"
    )
    return passed, message


def accuracy_record(
    dataset: str, top1: float, reference_top1: float | None, gate: float | None, reference: Any = None, **extra: Any
) -> dict[str, Any]:
    """The manifest's ``results["accuracy"]`` entry, the same keys whichever stage measured it."""
    passed = message = None
    if reference_top1 is not None and gate is not None:
        passed, message = accuracy_gate(top1, reference_top1, gate)
    return {
        "dataset": dataset,
        "top1": top1,
        "fp32_top1": reference_top1,
        "relative": (top1 / reference_top1) if reference_top1 else None,
        "gate": gate,
        "passed": passed,
        "gate_message": message,
        "reference": reference,
        "created": utc_now(),
        **extra,
    }


def is_artifact_dir(path: str | os.PathLike) -> bool:
    """True when ``path`` is a directory holding a manifest."""
    p = Path(path)
    return p.is_dir() and (p / MANIFEST_NAME).is_file()


def check_output(
    out_dir: str | os.PathLike,
    force: bool = False,
    reads: tuple[str | os.PathLike, ...] | list[str | os.PathLike] = (),
) -> None:
    """Refuse an output location before any work: taken without --force, not an artifact, inside an
    artifact, or one of the stage's own inputs."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not force:
        raise DeployKitError(f"{out_dir}: already exists; pass --force to replace it")
    if out_dir.exists() and not out_dir.is_dir():
        raise DeployKitError(f"{out_dir}: exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not is_artifact_dir(out_dir):
        # --force replaces an artifact, never an arbitrary folder (a home directory, a dataset).
        raise DeployKitError(
            f"{out_dir}: exists and is not an artifact directory (no {MANIFEST_NAME}); "
            "refusing to replace it, even with --force"
        )
    inside = _enclosing_artifact(out_dir)
    if inside is not None:
        raise DeployKitError(f"{out_dir}: output path is inside the artifact {inside}; choose a path outside it")
    for src in reads:
        src_path = Path(src).resolve()
        if src_path == out_dir.resolve() or src_path.is_relative_to(out_dir.resolve()):
            raise DeployKitError(f"{out_dir}: output path would replace the input {src}; choose another --out")


class ArtifactWriter:
    """Build an artifact in a temporary sibling directory; ``commit`` renames it into place.

    Use as a context manager: on any exception the temporary directory is removed, so a failed
    stage (a parity gate, a crash, Ctrl-C) never leaves a partial artifact behind. With ``force``
    the new directory is swapped with the old one in one step where the OS allows it, so the path
    always holds a complete artifact. ``reads`` names the stage's inputs, which it must not replace.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        force: bool = False,
        reads: tuple[str | os.PathLike, ...] | list[str | os.PathLike] = (),
    ) -> None:
        self.out_dir = Path(out_dir)
        self.force = force
        check_output(self.out_dir, force, reads)
        parent = self.out_dir.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            self.dir = Path(tempfile.mkdtemp(prefix=f".{self.out_dir.name}.tmp-", dir=parent))
        except OSError as e:
            raise DeployKitError(f"{parent}: output directory is not writable ({e.strerror})") from None
        self._committed = False

    def __enter__(self) -> ArtifactWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._committed:
            shutil.rmtree(self.dir, ignore_errors=True)

    def commit(self, manifest: Manifest) -> Artifact:
        """Hash every file, write the manifest and atomically move the directory into place."""
        if not (self.dir / manifest.main_file).is_file():
            raise RuntimeError(f"main file {manifest.main_file} was not written")
        files = {}
        for fp in sorted(self.dir.rglob("*")):
            if fp.is_file() and fp.name != MANIFEST_NAME:
                rel = fp.relative_to(self.dir).as_posix()
                files[rel] = {"sha256": sha256_file(fp), "bytes": fp.stat().st_size}
        manifest.files = files
        atomic_write_json(self.dir / MANIFEST_NAME, manifest.to_dict())
        stopped = stop_signal()
        if stopped is not None:  # a stop that library code swallowed: unwind now, the old artifact stays
            raise SystemExit(128 + stopped)
        if self.out_dir.exists():
            self._replace()
        else:
            os.rename(self.dir, self.out_dir)
            self._committed = True
        return Artifact(self.out_dir, manifest)

    def _replace(self) -> None:
        """Swap the finished directory with the existing one so the path is never empty."""
        if exchange_paths(self.dir, self.out_dir):
            self._committed = True
            shutil.rmtree(self.dir, ignore_errors=True)  # now holds the previous artifact
            return
        # No atomic exchange here (not Linux, old kernel, or a filesystem without it): move the old
        # directory aside, move the new one in, and put the old one back if that second step fails.
        old = self.out_dir.with_name(f".{self.out_dir.name}.old-{os.getpid()}")
        os.rename(self.out_dir, old)
        try:
            os.rename(self.dir, self.out_dir)
        except BaseException:
            os.rename(old, self.out_dir)
            raise
        self._committed = True
        shutil.rmtree(old, ignore_errors=True)


def _enclosing_artifact(path: Path) -> Path | None:
    """The artifact directory that ``path`` would sit inside, if any (never write into an input)."""
    for parent in path.absolute().parents:
        if is_artifact_dir(parent):
            return parent
    return None


_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def exchange_paths(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Atomically swap two existing paths with Linux renameat2(RENAME_EXCHANGE).

    Returns False, having changed nothing, where the call is unavailable (another OS, glibc
    before 2.28, a kernel or filesystem without it), so the caller can fall back.
    """
    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    import errno

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(err, f"cannot swap {b} into place: {os.strerror(err)}", str(b))
