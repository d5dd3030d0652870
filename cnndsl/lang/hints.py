"""The names of ``typing`` that the generated parser (standalone.py) uses, without importing typing.

Lark's code is annotated; its annotations are not evaluated (the generated file postpones
them), but it also uses typing's names at run time: ``Generic[T]`` as a base class,
``TypeVar``, aliases such as ``Union[...]`` and ``Callable[...]``, ``@overload``, ``cast``,
``isinstance(x, Mapping)``. Importing typing costs about 5 ms of ``cnndsl info``'s start-up;
these stand-ins do what that code needs of them at run time and nothing else (no checking):
``Generic[...]`` is ``Generic``, a subscripted alias is the alias, ``cast`` returns its value,
``@overload`` returns the function (the last definition, the implementation, is kept, as
with typing), and ``Mapping`` is ``collections.abc.Mapping``.
"""

from __future__ import annotations

from collections.abc import Mapping

TYPE_CHECKING = False


class Generic:
    """A base class that ``Generic[T]`` names: subscripting gives the class itself."""

    __slots__ = ()

    def __class_getitem__(cls, params):
        return cls


class _Alias:
    """``Union``, ``Callable``, ``List`` ...: subscripting gives the alias again."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __getitem__(self, params):
        return self

    def __repr__(self) -> str:
        return f"hints.{self.name}"


def TypeVar(name: str, *constraints, **options) -> str:  # noqa: N802 - typing's name
    return name


def cast(typ, value):
    return value


def overload(func):
    return func


Any = _Alias("Any")
AnyStr = TypeVar("AnyStr")
Callable = _Alias("Callable")
ClassVar = _Alias("ClassVar")
Collection = _Alias("Collection")
Dict = _Alias("Dict")
FrozenSet = _Alias("FrozenSet")
IO = _Alias("IO")
Iterable = _Alias("Iterable")
Iterator = _Alias("Iterator")
List = _Alias("List")
Optional = _Alias("Optional")
Pattern = _Alias("Pattern")
Sequence = _Alias("Sequence")
Set = _Alias("Set")
Tuple = _Alias("Tuple")
Type = _Alias("Type")
Union = _Alias("Union")

__all__ = [
    "TYPE_CHECKING",
    "Any",
    "AnyStr",
    "Callable",
    "ClassVar",
    "Collection",
    "Dict",
    "FrozenSet",
    "Generic",
    "IO",
    "Iterable",
    "Iterator",
    "List",
    "Mapping",
    "Optional",
    "Pattern",
    "Sequence",
    "Set",
    "Tuple",
    "Type",
    "TypeVar",
    "Union",
    "cast",
    "overload",
]
