"""cdptrack: server-side e-commerce tracking for Python storefronts.

Canonical events in, Yespo (web tracker and generic events), Customer.io Data Pipelines
and Orangepill/Infobip People requests out: asynchronously, batched, retried, never lost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import Config, ConfigError, Secret
from .events import Event, EventError, Visitor
from .version import __version__

if TYPE_CHECKING:
    from .observe.declare import track
    from .tracker import Tracker


def __getattr__(name: str) -> Any:
    # The delivery engine is imported only when used: rendering needs no threads or httpx.
    if name == "Tracker":
        from .tracker import Tracker

        return Tracker
    if name == "track":
        from .observe.declare import track

        return track
    raise AttributeError(f"module 'cdptrack' has no attribute {name!r}")


__all__ = [
    "Config",
    "ConfigError",
    "Event",
    "EventError",
    "Secret",
    "Tracker",
    "Visitor",
    "__version__",
    "track",
]
