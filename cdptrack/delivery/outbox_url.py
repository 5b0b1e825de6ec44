"""Opening an outbox from its ``CDPTRACK_OUTBOX`` URL.

Kept apart from :mod:`.outbox` (the interface) so that the interface never imports its
implementations, and an implementation's optional dependency (``redis``) is imported
only when its URL is used.
"""

from __future__ import annotations

from ..config import ConfigError
from .outbox import Outbox


def open_outbox(url: str, *, max_queue: int = 10_000) -> Outbox:
    """``memory``, ``sqlite:///relative.db``, ``sqlite:////absolute.db``,
    ``redis://host:port/db`` (see :mod:`.outbox_redis`); anything else is a
    :class:`~cdptrack.config.ConfigError` that names the setting.  Nothing connects yet."""
    text = (url or "memory").strip()
    if text in {"memory", "memory://", "mem"}:
        from .outbox_memory import MemoryOutbox

        return MemoryOutbox(max_queue=max_queue)
    if text.startswith("sqlite://"):
        from .outbox_sqlite import SQLiteOutbox

        return SQLiteOutbox.from_url(text, max_queue=max_queue)
    if text.startswith(("redis://", "rediss://", "unix://")):
        from .outbox_redis import RedisOutbox

        return RedisOutbox.from_url(text, max_queue=max_queue)
    raise ConfigError(
        "outbox must be 'memory', 'sqlite:///path' or 'redis://host:port/db', "
        f"got {text!r} (CDPTRACK_OUTBOX)"
    )


__all__ = ["open_outbox"]
