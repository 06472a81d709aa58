"""Strict stand-ins for TensorRT objects, specced from NVIDIA's real bindings of one version.

``create_autospec(spec_set=True)`` makes every attribute that a class lacks an error; on top of it
each method checks its arguments against the pybind signatures NVIDIA's docstrings carry (names,
counts, and enum types), and returns a strict stand-in of the class its signature says it returns.
The classes that need TensorRT's libraries to construct (Builder, Runtime, OnnxParser, Refitter)
are replaced, in a module that is otherwise the real one, by factories that check their arguments
the same way; everything else (enums, flags, ILogger, IProgressMonitor) is NVIDIA's own.
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


def _matches_annotation(value: Any, annotation: str, trt: types.ModuleType) -> bool:
    if not annotation.startswith(_PREFIX):
        return True
    cls = getattr(trt, annotation[len(_PREFIX) :].split(".")[0], None)
    if cls is None or not isinstance(cls, type):
        return True
    real = getattr(value, "_dk_spec", None) or type(value)
    if hasattr(cls, "__members__"):  # a pybind enum: a member of that enum, never a plain int of another
        return isinstance(value, cls) or (isinstance(value, int) and not isinstance(value, enum.Enum))
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


class World:
    """Strict stand-ins for one bindings version; ``created`` lists every object made, by class."""

    def __init__(self, trt: types.ModuleType) -> None:
        self.trt = trt
        self.created: dict[str, list[Any]] = {}
        self.module = self._module()

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
        self.created.setdefault(cls_name, []).append(inst)
        return inst

    def _checked(self, qualname: str, sigs: list[Overload], method: Any):
        def side_effect(*args, **kwargs):
            sig = check_call(self.trt, qualname, sigs, args, kwargs)
            if method._mock_return_value is mock.DEFAULT:  # nothing set by the test: what the signature says
                method.return_value = self._returned(sig.returns)
            return mock.DEFAULT

        return side_effect

    def _returned(self, annotation: str) -> Any:
        if annotation.startswith(_PREFIX):
            name = annotation[len(_PREFIX) :]
            cls = getattr(self.trt, name, None)
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
                return world.strict(_name)

            factory._dk_spec = cls  # isinstance checks of a constructed object use the real class
            setattr(fake, name, factory)
        fake.__version__ = real.__version__
        fake.__file__ = getattr(real, "__file__", None)
        return fake
