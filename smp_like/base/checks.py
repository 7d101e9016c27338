"""Argument checks shared by constructors: one wording for the same mistake everywhere."""
from typing import Any

__all__ = ["check_positive_int"]


def check_positive_int(name: str, value: Any, allow_none: bool = False) -> Any:
    """Return ``value`` if it is a positive int (or None when ``allow_none``).

    Raises:
        ValueError: naming the argument and the value otherwise (bools are not ints here).
    """
    if value is None and allow_none:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive int{' or None' if allow_none else ''}, got {value!r}")
    return value
