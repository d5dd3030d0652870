"""Records: the part of ``dataclasses`` the compiler's data types use, cheap to define.

``@dataclass`` compiles six methods per class with ``exec`` and inspects the class's
signature: about 1.5 ms a class, and the syntax tree, the IR and the diagnostics are
about fifty classes — half of ``cnndsl info``'s start-up. ``@record`` compiles only
``__init__`` (so that making an instance costs what a dataclass's costs) and shares the
other methods:

- fields are the class's annotations, in order; a class attribute is the default, and
  ``factory(list)`` a fresh default per instance (``field(default_factory=list)``);
- ``frozen=True`` (the default): assigning or deleting an attribute raises
  :class:`FrozenError` (an ``AttributeError``, like ``dataclasses.FrozenInstanceError``);
- ``eq=True`` (the default): ``==`` compares the fields of two instances of the same
  class; frozen and eq: hashed by the fields; eq and not frozen: unhashable;
- ``slots=True``: the class gets ``__slots__`` of its fields;
- ``repr`` is ``Name(field=value, ...)``; ``fields_of(obj)`` gives the field names;
- a ``__post_init__`` method is called at the end of ``__init__``.

>>> @record
... class Point:
...     x: int
...     y: int = 0
>>> Point(1), Point(1) == Point(1, 0), hash(Point(2)) == hash(Point(2, 0))
(Point(x=1, y=0), True, True)
"""

from __future__ import annotations

from operator import attrgetter
from types import FunctionType

_MISSING = object()


class FrozenError(AttributeError):
    """An assignment to a field of a frozen record."""


class _Factory:
    __slots__ = ("make",)

    def __init__(self, make):
        self.make = make


def factory(make) -> _Factory:
    """A default made afresh for each instance: ``items: list = factory(list)``."""
    return _Factory(make)


def fields_of(obj) -> tuple[str, ...]:
    """The field names of a record (or of its class), in order; () for anything else."""
    return getattr(obj, "__record_fields__", ())


def is_record(obj) -> bool:
    return hasattr(type(obj), "__record_fields__") and not isinstance(obj, type)


def _frozen_setattr(self, name, value):
    raise FrozenError(f"cannot assign to field {name!r} of a frozen {type(self).__name__}")


def _frozen_delattr(self, name):
    raise FrozenError(f"cannot delete field {name!r} of a frozen {type(self).__name__}")


def _repr(self):
    return f"{type(self).__qualname__}(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__record_fields__) + ")"


def _eq(self, other):
    if other.__class__ is self.__class__:
        return self.__record_values__(self) == other.__record_values__(other)
    return NotImplemented


def _hash(self):
    return hash(self.__record_values__(self))


def _reduce(self):  # copy, deepcopy and pickle rebuild a record through __init__
    return (type(self), self.__record_values__(self))


def _init_source(cls, names, frozen):
    """The source of ``__init__`` and the globals it needs."""
    own = cls.__dict__
    params, body = [], []
    glob = {"_MISSING": _MISSING, "_set": object.__setattr__}
    for n in names:
        default = own.get(n, _MISSING)
        if default is _MISSING:
            params.append(n)
            value = n
        elif isinstance(default, _Factory):
            glob[f"_make_{n}"] = default.make
            params.append(f"{n}=_MISSING")
            value = f"_make_{n}() if {n} is _MISSING else {n}"
        else:
            glob[f"_default_{n}"] = default
            params.append(f"{n}=_default_{n}")
            value = n
        body.append(f"    _set(self, {n!r}, {value})" if frozen else f"    self.{n} = {value}")
    if "__post_init__" in own:
        body.append("    self.__post_init__()")
    src = f"def __init__(self, {', '.join(params)}):\n" + ("\n".join(body) or "    pass") + "\n"
    if not names:
        src = "def __init__(self):\n" + ("\n".join(body) or "    pass") + "\n"
    return src, glob


_TEMPLATES: dict = {}  # (number of fields, frozen) -> the code of an __init__ with placeholder names
_TEMPLATE_GLOBALS = {"_set": object.__setattr__}


def _shared_init(cls, names, frozen):
    """``__init__`` of a record without factories or ``__post_init__``: the code compiled once per
    (number of fields, frozen), its placeholder names replaced by the fields' (``exec`` compiling
    each class's own source: ~0.12 ms a class, ~6 ms of start-up for the package's fifty). The
    same parameters, defaults, assignments and bytecode as :func:`_init_source`'s function."""
    key = (len(names), frozen)
    code = _TEMPLATES.get(key)
    if code is None:
        holders = [f"_r{i}_" for i in range(len(names))]
        src, _ = _init_source(type("T", (), {}), holders, frozen)
        local: dict = {}
        exec(src, _TEMPLATE_GLOBALS, local)  # noqa: S102 - made from placeholder names
        code = _TEMPLATES[key] = local["__init__"].__code__
    rename = {f"_r{i}_": n for i, n in enumerate(names)}
    code = code.replace(
        co_varnames=tuple(rename.get(v, v) for v in code.co_varnames),
        co_names=tuple(rename.get(v, v) for v in code.co_names),
        co_consts=tuple(rename.get(c, c) if type(c) is str else c for c in code.co_consts),
    )
    own = cls.__dict__
    defaults = tuple(own[n] for n in names if n in own)
    return FunctionType(code, _TEMPLATE_GLOBALS, "__init__", defaults or None)


def record(cls=None, *, frozen: bool = True, eq: bool = True, slots: bool = False):
    """Class decorator: a record of the class's annotated fields (see the module's text)."""

    def wrap(cls):
        names = tuple(cls.__dict__.get("__annotations__", {}))
        for base in cls.__mro__[1:]:
            if fields_of(base):
                raise TypeError(f"record {cls.__name__}: a record cannot extend another record")
        own = cls.__dict__
        given = [n in own for n in names]  # fields with a default: after those without, else a SyntaxError
        if "__post_init__" in own or any(isinstance(own.get(n), _Factory) for n in names) or given != sorted(given):
            src, glob = _init_source(cls, names, frozen)
            local: dict = {}
            exec(src, glob, local)  # noqa: S102 - the source is made above from the class's own field names
            init = local["__init__"]
        else:
            init = _shared_init(cls, names, frozen)
        init.__qualname__ = f"{cls.__qualname__}.__init__"
        ns = {k: v for k, v in cls.__dict__.items() if k not in ("__dict__", "__weakref__")}
        for n in names:
            ns.pop(n, None)  # defaults live in __init__ (and would collide with slots)
        ns["__init__"] = init
        ns["__record_fields__"] = names
        ns["__match_args__"] = names
        own = cls.__dict__  # what the class defines itself is kept, as dataclasses do
        if "__repr__" not in own:
            ns["__repr__"] = _repr
        if names:
            getter = attrgetter(*names)
            ns["__record_values__"] = staticmethod(getter if len(names) > 1 else lambda o, g=getter: (g(o),))
        else:
            ns["__record_values__"] = staticmethod(lambda o: ())
        if eq and "__eq__" not in own:
            ns["__eq__"] = _eq
            ns["__hash__"] = _hash if frozen else None
        ns.setdefault("__reduce__", _reduce)
        if frozen:
            ns["__setattr__"] = _frozen_setattr
            ns["__delattr__"] = _frozen_delattr
        if slots:
            ns["__slots__"] = names
        return type(cls)(cls.__name__, cls.__bases__, ns)

    return wrap if cls is None else wrap(cls)
