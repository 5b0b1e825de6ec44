"""Where a rendered event did not go, and why: counted, handed to ``on_drop``, and for a
request the API would refuse (``invalid_field:<field>``, from a destination's schema
check) said once in a warning.

One warning per destination, event name and field for the life of the process (the
set is bounded: only the spec's semantic events have schemas), with the page the first
such event came from, so the shop can find the route and the value to fix.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from ..destinations import Rendered
from ..events import Event
from .callbacks import Callbacks
from .counters import Counters

logger = logging.getLogger("cdptrack")

_warned: set[tuple[str, str, str]] = set()
_lock = threading.Lock()


def record_skips(rendered: Rendered, event: Event, counters: Counters,
                 callbacks: Callbacks) -> None:
    """Count each ``(destination, reason)`` of ``rendered.skipped`` for ``event``."""
    for destination, reason in rendered.skipped:
        counters.drop(destination, reason)
        callbacks.drop(event, destination, reason)
        if reason.startswith("invalid_field:"):
            _warn(destination, event, reason, rendered.details.get(destination, ""))


def _warn(destination: str, event: Event, reason: str, detail: str) -> None:
    key = (destination, event.label, reason)
    with _lock:
        if key in _warned:
            return
        _warned.add(key)
    url: Any = event.context.get("url") if isinstance(event.context, dict) else None
    logger.warning(
        "cdptrack: %s would refuse %s%s: %s. Not sent there (counted as dropped:%s); "
        "give that field the type the API documents (a number, a string) in what the "
        "view declares or returns.", destination, event.label,
        f" from {url}" if url else "", detail or reason, reason)


__all__ = ["record_skips"]
