"""Named registries (lr schedules, evaluation protocols): one decorator factory for all."""

from __future__ import annotations

from typing import Callable, TypeVar

T = TypeVar("T")


def registrar(table: dict[str, T], kind: str) -> Callable[[str], Callable[[T], T]]:
    """``register(name)``: a decorator adding its target to ``table`` under ``name``.

    Args:
        table: the registry (name -> registered function).
        kind: what it holds, for the error when a name is taken twice.
    """

    def register(name: str) -> Callable[[T], T]:
        """Decorator adding a {kind} under ``name``; a second one of that name raises ValueError."""

        def wrap(item: T) -> T:
            if name in table:
                raise ValueError(f"{kind} {name!r} is already registered")
            table[name] = item
            return item

        return wrap

    register.__doc__ = register.__doc__.format(kind=kind)
    return register
