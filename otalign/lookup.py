"""Choosing a component by name or passing your own: how costs and divergences are looked up."""

from __future__ import annotations

from typing import Mapping, TypeVar, Union

T = TypeVar("T")


def named_or_callable(kind: str, value: Union[str, T], table: Mapping[str, T]) -> T:
    """``value`` itself when callable, else ``table[value]``; a ValueError naming ``kind`` otherwise.

    Example::

        >>> named_or_callable("cost", "sqeuclidean", COSTS) is COSTS["sqeuclidean"]
        True
    """
    if callable(value):
        return value
    if isinstance(value, str) and value in table:
        return table[value]
    raise ValueError(f"{kind}: unknown {kind} {value!r}; expected a callable or one of {sorted(table)}")
