"""User callbacks, called so that they can never hurt the sender.

A callback that raises must not kill the only consumer thread (a failure users report
against other SDKs): exceptions are logged under ``cdptrack`` and swallowed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .outbox import DeadLetter

logger = logging.getLogger("cdptrack")


@dataclass(frozen=True, slots=True)
class Callbacks:
    on_error: Callable[..., None] | None = None  # on_error(dead_letter: DeadLetter)
    on_drop: Callable[..., None] | None = None  # on_drop(event, destination, reason)
    # on_identity(user_id, identity_id): an Orangepill identity was created or found
    # (called by delivery.identities, which logs and counts what it raises).
    on_identity: Callable[[str, str], object] | None = None

    def error(self, letter: DeadLetter) -> None:
        if self.on_error is not None:
            _call(self.on_error, "on_error", letter)

    def drop(self, event: Any, destination: str, reason: str) -> None:
        if self.on_drop is not None:
            _call(self.on_drop, "on_drop", event, destination, reason)


def _call(fn: Callable[..., None], name: str, *args: Any) -> None:
    try:
        fn(*args)
    except Exception:
        logger.exception("the %s callback raised; ignored", name)
