"""Small immutable records, made without ``dataclasses``.

Every worker imports this package as it starts, and ``import dataclasses`` costs that start
more than the rest of the codec together: it imports ``inspect``, which imports ``ast``,
``dis``, ``tokenize`` and more (``docs/performance.md``, "The worker's start"). The codec's
records are plain classes instead. Each names its fields in order as ``__match_args__``,
which are its ``__slots__`` too, and writes its own ``__init__`` (with
``object.__setattr__``, as a frozen dataclass's generated one does); this base gives them
the rest of what ``@dataclass(frozen=True)`` gave: equality and a hash by fields (records of
the same class only), a repr that names every field, and an ``AttributeError`` on
assignment or deletion after ``__init__``.
"""

from __future__ import annotations

__all__ = ["FrozenRecord"]


class FrozenRecord:
    """The base of an immutable record: its fields, in order, are its ``__match_args__``
    (and its ``__slots__``: ``__slots__ = __match_args__``)."""

    __slots__ = ()
    __match_args__: tuple[str, ...] = ()

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__match_args__)

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{name}={getattr(self, name)!r}" for name in self.__match_args__
        )
        return f"{type(self).__qualname__}({fields})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return self._values() == other._values()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._values())

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r}: {type(self).__name__} is frozen")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}: {type(self).__name__} is frozen")
