"""The Flask storefront example (see :mod:`.app` for its URL map)."""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def create_app(*args: Any, **kwargs: Any) -> Any:
    """Lazy so that importing the package does not import Flask."""
    from .app import create_app as build

    return build(*args, **kwargs)
