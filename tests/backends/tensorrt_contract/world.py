"""Strict stand-ins for TensorRT objects, specced from NVIDIA's real bindings of one version.

``create_autospec(spec_set=True)`` makes every attribute that a class lacks an error; on top of it
each method checks its arguments against the pybind signatures NVIDIA's docstrings carry (names,
counts, and enum types), and returns a strict stand-in of the class its signature says it returns.
The classes that need TensorRT's libraries to construct (Builder, Runtime, OnnxParser, Refitter)
are replaced, in a module that is otherwise the real one, by factories that check their arguments
the same way; everything else (enums, flags, ILogger, IProgressMonitor) is NVIDIA's own.

Properties follow the real class too: code that assigns a read-only property (``num_inputs``) gets
AttributeError, and a settable one checks its value against the setter's signature (an enum of the
right type). Tests give stand-ins values with :meth:`World.preset` (every new instance of a class)
or :meth:`World.set` (one instance), which bypass the read-only rule; ``host_memory(b"...")`` is an
``IHostMemory`` with content (a buffer, like the real one); :meth:`World.on_call` runs a function when
a method is called (TensorRT logging while it builds); ``constructed`` keeps the arguments each
Builder/Runtime/OnnxParser/... was constructed with (the logger deploykit gave it).
"""

from __future__ import annotations

import enum
import re
import types
from dataclasses import dataclass
from typing import Any
from unittest import mock

_PREFIX = "tensorrt_bindings.tensorrt."
_CONSTRUCTED = ("Builder", "Runtime", "OnnxParser", "Refitter", "OnnxParserRefitter")
# C++ return annotations pybind leaves unconverted -> the Python class NVIDIA binds them to
_C_RETURNS = {"nvonnxparser::IParserError": _PREFIX + "ParserError"}


@dataclass(frozen=True)
class Param:
    name: str
    annotation: str
    has_default: bool


@dataclass(frozen=True)
class Overload:
    params: tuple[Param, ...]  # without self
    returns: str


def _split_params(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return [p.strip() for p in parts]


def overloads(func: Any, name: str) -> list[Overload]:
    """Every signature NVIDIA's pybind docstring gives for ``name``."""
    doc = getattr(func, "__doc__", None) or ""
    found = []
    for m in re.finditer(rf"(?:^|\n)(?:\d+\. )?{re.escape(name)}\((.*?)\) -> ([^\n]+)", doc):
        params = []
        for p in _split_params(m.group(1)):
            if p in ("*args", "**kwargs"):
                continue
            head, _, default = p.partition(" = ")
            pname, _, ann = head.partition(": ")
            params.append(Param(pname.strip(), ann.strip(), bool(default)))
        if params and params[0].name == "self":
            params = params[1:]
        found.append(Overload(tuple(params), m.group(2).strip()))
    return found


def _plain_matches(value: Any, annotation: str) -> bool:
    """Plain pybind annotations: ints take anything with __index__, buffers anything memoryview takes."""
    if annotation in ("int", "typing.SupportsInt"):
        return hasattr(value, "__index__") and not isinstance(value, str | bytes)
    if annotation in ("typing_extensions.Buffer", "collections.abc.Buffer", "buffer"):
        try:
            memoryview(value)
        except TypeError:
            return False
    if annotation == "str":
        return isinstance(value, str)
    return True


def _matches_annotation(value: Any, annotation: str, trt: types.ModuleType) -> bool:
    if not annotation.startswith(_PREFIX):
        return _plain_matches(value, annotation)
    cls = getattr(trt, annotation[len(_PREFIX) :].split(".")[0], None)
    if cls is None or not isinstance(cls, type):
        return True
    real = getattr(value, "_dk_spec", None) or type(value)
    if hasattr(cls, "__members__"):  # a pybind enum: a member of that enum, never a plain int of another
        return isinstance(value, cls) or (isinstance(value, int) and not isinstance(value, enum.Enum))
    if cls.__name__.startswith("Dims") and isinstance(value, list | tuple):
        try:  # pybind converts a sequence of ints to Dims implicitly: the real constructor decides
            cls(value)
        except (TypeError, ValueError):
            return False
        return True
    if isinstance(value, mock.NonCallableMagicMock | mock.MagicMock) and getattr(value, "_dk_spec", None) is None:
        return True  # a loose mock a test made on purpose
    return isinstance(real, type) and issubclass(real, cls) or isinstance(value, cls)


def check_call(trt: types.ModuleType, qualname: str, sigs: list[Overload], args: tuple, kwargs: dict) -> Overload:
    """The overload these arguments bind to, or TypeError naming the call and the signatures."""
    if not sigs:
        return Overload((), "")
    for sig in sigs:
        names = [p.name for p in sig.params]
        if len(args) > len(names) or any(k not in names for k in kwargs):
            continue
        bound = dict(zip(names, args))
        if any(k in bound for k in kwargs):
            continue
        bound.update(kwargs)
        if any(p.name not in bound and not p.has_default for p in sig.params):
            continue
        if all(_matches_annotation(bound[p.name], p.annotation, trt) for p in sig.params if p.name in bound):
            return sig
    shown = "; ".join(f"({', '.join(f'{p.name}: {p.annotation}' for p in s.params)})" for s in sigs)
    raise TypeError(f"{qualname} got args={args!r} kwargs={kwargs!r}; TensorRT {trt.__version__} takes {shown}")


class HostMemory(bytes):
    """An ``IHostMemory`` stand-in: a buffer with ``nbytes`` (what deploykit reads of the real one)."""

    _dk_spec: Any = None

    @property
    def nbytes(self) -> int:
        return len(self)


def _property_setter_annotation(prop: property) -> str | None:
    """The value annotation of a pybind property's setter (``arg1: ...``), or None."""
    doc = getattr(prop.fset, "__doc__", None) or ""
    m = re.search(r"arg1: ([\w.]+)", doc)
    return m.group(1) if m else None


class World:
    """Strict stand-ins for one bindings version; ``created`` lists every object made, by class."""

    def __init__(self, trt: types.ModuleType) -> None:
        self.trt = trt
        self.created: dict[str, list[Any]] = {}
        self.presets: dict[str, dict[str, Any]] = {}
        self.constructed: dict[str, list[tuple[tuple, dict]]] = {}  # Builder/Runtime/...: the arguments given
        self.hooks: dict[str, Any] = {}  # "Class.method" -> fn(*args, **kwargs), run when it is called
        self.module = self._module()

    def preset(self, cls_name: str, **values: Any) -> None:
        """Values for every later stand-in of ``trt.<cls_name>``: property values, or method return values."""
        getattr(self.trt, cls_name)  # a class the version lacks is an error here too
        self.presets.setdefault(cls_name, {}).update(values)

    def set(self, inst: Any, **values: Any) -> Any:
        """Give one stand-in property values (read-only ones included) or method return values."""
        cls = inst._dk_spec
        for name, value in values.items():
            attr = getattr(cls, name)  # AttributeError for a name the class lacks
            if isinstance(attr, property):
                mock.NonCallableMock.__setattr__(inst, name, value)
            else:
                getattr(inst, name).return_value = value
        return inst

    def on_call(self, cls_name: str, method: str, fn: Any) -> None:
        """Run ``fn(*args, **kwargs)`` whenever ``trt.<cls_name>.<method>`` is called (after the signature check),
        e.g. to log through the logger TensorRT was given while a build runs."""
        getattr(getattr(self.trt, cls_name), method)  # AttributeError for a name the version lacks
        self.hooks[f"{cls_name}.{method}"] = fn

    def host_memory(self, data: bytes) -> HostMemory:
        """An ``IHostMemory`` holding ``data`` (e.g. what build_serialized_network returns)."""
        mem = HostMemory(data)
        mem._dk_spec = self.trt.IHostMemory
        return mem

    def strict(self, cls_name: str) -> Any:
        """A strict stand-in instance of ``trt.<cls_name>``."""
        cls = getattr(self.trt, cls_name)
        inst = mock.create_autospec(cls, instance=True, spec_set=True)
        for name in dir(cls):
            if name.startswith("_"):
                continue
            attr = getattr(cls, name, None)
            if isinstance(attr, property) or isinstance(attr, type) or not callable(attr):
                continue
            method = getattr(inst, name)
            method.side_effect = self._checked(f"{cls_name}.{name}", overloads(attr, name), method)
        inst.__dict__["_dk_spec"] = cls
        type(inst).__setattr__ = self._guarded_setattr(cls_name, cls)
        self.set(inst, **self.presets.get(cls_name, {}))
        self.created.setdefault(cls_name, []).append(inst)
        return inst

    def _guarded_setattr(self, cls_name: str, cls: type):
        trt = self.trt

        def setattr_(inst: Any, name: str, value: Any) -> None:
            attr = getattr(cls, name, None)
            if isinstance(attr, property):
                if attr.fset is None:
                    raise AttributeError(
                        f"{cls_name}.{name} is read-only in TensorRT {trt.__version__} "
                        f"(tests give it a value with world.set(obj, {name}=...))"
                    )
                ann = _property_setter_annotation(attr)
                if ann and not _matches_annotation(value, ann, trt):
                    raise TypeError(f"{cls_name}.{name} = {value!r}: TensorRT {trt.__version__} takes {ann}")
            mock.NonCallableMock.__setattr__(inst, name, value)

        return setattr_

    def _checked(self, qualname: str, sigs: list[Overload], method: Any):
        def side_effect(*args, **kwargs):
            sig = check_call(self.trt, qualname, sigs, args, kwargs)
            if qualname in self.hooks:
                self.hooks[qualname](*args, **kwargs)
            if method._mock_return_value is mock.DEFAULT:  # nothing set by the test: what the signature says
                method.return_value = self._returned(sig.returns)
            return mock.DEFAULT

        return side_effect

    def _returned(self, annotation: str) -> Any:
        annotation = _C_RETURNS.get(annotation, annotation)
        if annotation.startswith(_PREFIX):
            name = annotation[len(_PREFIX) :]
            cls = getattr(self.trt, name, None)
            if name == "IHostMemory":
                return self.host_memory(b"")
            if isinstance(cls, type) and not hasattr(cls, "__members__"):
                return self.strict(name)
        return {"bool": True, "int": 0, "float": 0.0, "str": "", "None": None}.get(annotation, mock.MagicMock())

    def _module(self) -> types.ModuleType:
        world, real = self, self.trt

        class FakeTensorRT(types.ModuleType):
            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)

        fake = FakeTensorRT("tensorrt")
        for name in _CONSTRUCTED:
            cls = getattr(real, name, None)
            if cls is None:
                continue
            sigs = overloads(cls.__init__, "__init__")

            def factory(*args, _name=name, _sigs=sigs, **kwargs):
                check_call(real, f"{_name}()", _sigs, args, kwargs)
                world.constructed.setdefault(_name, []).append((args, kwargs))
                return world.strict(_name)

            factory._dk_spec = cls  # isinstance checks of a constructed object use the real class
            setattr(fake, name, factory)
        fake.__version__ = real.__version__
        fake.__file__ = getattr(real, "__file__", None)
        return fake
