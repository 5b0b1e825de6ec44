"""Reading fields of a shop's objects: mappings, dataclasses, pydantic and ORM models.

Shops hand cdptrack whatever they have: a session dict, a ``current_user`` proxy, an ORM
row, a pydantic model.  Every read of a named field goes through here, so that one rule
holds everywhere: a mapping is read by key, anything else by attribute, and a read that
fails (an ORM attribute that runs a query and raises, a property with a bug) is ``None``,
never an exception in the shop's request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def raw_get(mapping: Mapping[str, Any], key: str) -> Any:
    """``mapping.get(key)`` that bypasses dict subclasses' overrides (Flask's session
    marks itself accessed on ``get``; ``dict.get`` does not)."""
    if isinstance(mapping, dict):  # also subclasses: their own get is not called
        return dict.get(mapping, key)
    return mapping.get(key)


def read_field(obj: Any, name: str) -> Any:
    """``obj[name]`` for mappings, else ``obj.name``; ``None`` when absent or failing.

    User and product objects may be ORM models whose attributes run queries or raise;
    a failure here must never reach the shop's request.
    """
    if type(obj) is dict:  # the common case, without the ABC check below
        return obj.get(name)
    if isinstance(obj, Mapping):
        try:
            return dict.get(obj, name) if isinstance(obj, dict) else obj.get(name)
        except Exception:
            return None
    try:
        return getattr(obj, name, None)
    except Exception:
        return None


def read_path(obj: Any, path: str) -> Any:
    """A nested field, ``"category.name"`` → ``obj.category.name`` (keys or attributes at
    each step); ``None`` as soon as a step is missing."""
    for name in path.split("."):
        if obj is None:
            return None
        obj = read_field(obj, name)
    return obj


def call_method(obj: Any, name: str) -> Any:
    """``obj.name()`` for a method taking no arguments (``get_id``, ``get_absolute_url``);
    ``None`` when there is no such method or it raises."""
    method = read_field(obj, name) if not isinstance(obj, Mapping) else None
    if not callable(method):
        return None
    try:
        return method()
    except Exception:
        return None


def first_field(obj: Any, names: tuple[str, ...]) -> Any:
    """The first of ``names`` that ``obj`` has (not ``None``), else ``None``."""
    for name in names:
        value = read_field(obj, name)
        if value is not None:
            return value
    return None


__all__ = ["call_method", "first_field", "raw_get", "read_field", "read_path"]
