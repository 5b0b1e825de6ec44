"""Where the Orangepill identity id of each of the shop's users is remembered.

The id comes from ``POST /v1/identities/person`` (see :mod:`.identities`); remembering
it is what keeps a user from being created twice and spares a request per event.  It
lives with the outbox, so it is as durable and as shared as the events are:

* :class:`MemoryIdentityStore` (memory outbox): this process only, bounded (the least
  recently used users are forgotten first; forgetting costs one more create request,
  which the idempotency key answers with the same identity);
* :class:`SQLiteIdentityStore` (SQLite outbox): a table ``identities`` in the outbox's
  file, so a restart knows every user it provisioned;
* :class:`RedisIdentityStore` (Redis outbox): one hash per realm,
  ``{prefix}:identities:<realm>`` (field: user id), so a fleet agrees.

Entries are keyed by ``(realm, user_id)``: the realm is a fingerprint of the API key
(:func:`cdptrack.destinations.orangepill.realm_of`), never the key.  ``get`` and ``put``
run on the sender thread; a store that fails (Redis down) answers "unknown" and the
caller creates again, which the idempotency key makes harmless.
"""

from __future__ import annotations

import abc
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

MEMORY_USERS = 100_000

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS identities (
    realm TEXT NOT NULL,
    user_id TEXT NOT NULL,
    identity TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (realm, user_id)
);
"""


class IdentityStore(abc.ABC):
    """``(realm, user_id) → identity id``.  Implementations never raise from ``get``
    (a failure is "unknown"); ``put`` may raise (the caller logs and counts it)."""

    @abc.abstractmethod
    def get(self, realm: str, user_id: str) -> str | None:
        """The remembered identity id of ``user_id`` in ``realm``, or None."""

    @abc.abstractmethod
    def put(self, realm: str, user_id: str, identity: str) -> None:
        """Remember ``identity`` for ``user_id`` in ``realm`` (the first value stays when
        two processes race: both got the same id from the idempotency key anyway)."""


class MemoryIdentityStore(IdentityStore):
    """In this process, at most ``size`` users (least recently used forgotten first)."""

    def __init__(self, size: int = MEMORY_USERS) -> None:
        self._ids: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, realm: str, user_id: str) -> str | None:
        with self._lock:
            found = self._ids.get((realm, user_id))
            if found is not None:
                self._ids.move_to_end((realm, user_id))
            return found

    def put(self, realm: str, user_id: str, identity: str) -> None:
        with self._lock:
            self._ids.setdefault((realm, user_id), identity)
            self._ids.move_to_end((realm, user_id))
            while len(self._ids) > self._size:
                self._ids.popitem(last=False)


class SQLiteIdentityStore(IdentityStore):
    """The ``identities`` table of a SQLite outbox's file.  ``locked`` is the outbox's
    own connection under its lock (one connection per process, as the outbox uses)."""

    def __init__(self, locked: Callable[[], AbstractContextManager[sqlite3.Connection]]
                 ) -> None:
        self._locked = locked

    def get(self, realm: str, user_id: str) -> str | None:
        try:
            with self._locked() as conn:
                row = conn.execute(
                    "SELECT identity FROM identities WHERE realm = ? AND user_id = ?",
                    (realm, user_id)).fetchone()
        except sqlite3.Error:
            return None
        return str(row[0]) if row else None

    def put(self, realm: str, user_id: str, identity: str) -> None:
        with self._locked() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO identities (realm, user_id, identity, created) "
                "VALUES (?, ?, ?, ?)", (realm, user_id, identity, time.time()))


class RedisIdentityStore(IdentityStore):
    """A hash per realm in the Redis outbox's database.  ``client`` returns the outbox's
    client (``decode_responses=True``)."""

    def __init__(self, client: Callable[[], Any], prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    def _key(self, realm: str) -> str:
        return "{" + self._prefix + "}:identities:" + realm

    def get(self, realm: str, user_id: str) -> str | None:
        try:
            found = self._client().hget(self._key(realm), user_id)
        except Exception:
            return None
        return str(found) if found else None

    def put(self, realm: str, user_id: str, identity: str) -> None:
        self._client().hsetnx(self._key(realm), user_id, identity)


__all__ = ["IdentityStore", "MemoryIdentityStore", "RedisIdentityStore",
           "SQLiteIdentityStore"]
