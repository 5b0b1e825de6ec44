"""What the observer remembers across requests: each visitor's last cart, the orders
already reported, the signed-in users already identified per visitor, and the details
of products seen on product and category pages.

Three kinds of memory with one interface:

* :class:`LocalMemory` (default): bounded LRUs in this process (``carts`` visitors,
  ``orders`` order keys); the oldest entry is forgotten first.
* :class:`RedisMemory`: used when the outbox is Redis, so that every process of a fleet
  agrees: a cart is one key per visitor (``{prefix}:cart:<visitor>``, JSON lines,
  expiring after ``cart_ttl`` seconds) and an order report is a ``SET NX`` key
  (``{prefix}:order:<order id>``, ``order_ttl``): one report per order, whichever
  visitor or process sees its thank-you page; so is a user's first appearance for a
  visitor (``{prefix}:seen:<visitor>:<user>``, ``cart_ttl``).  When Redis does not
  answer, the local memory stands in (counted by the caller as ``memory_fallback``) so a
  Redis outage never loses or blocks an event.
* :class:`SQLiteMemory`: used when the outbox is a SQLite file, in that file, so that
  the worker processes of one host agree (one small transaction per read or update).

Product details (price, name, ...) seen on pages are kept in this process only
(``products`` entries, least recently seen forgotten first): they complete cart and
order lines that name only a product id, as JSON APIs answer, and a miss only leaves
a field out.

These are read and written when events are built: on the sender thread with the
default deferred build, never in the shop's request.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

logger = logging.getLogger("cdptrack.observe")

Lines = dict[str, dict[str, Any]]
CartChange = Callable[["Lines | None"], "Lines | None"]

# Product properties remembered from pages, to complete lines that lack them.
PRODUCT_DETAILS = ("name", "price", "currency", "category", "brand", "variant", "sku",
                   "url", "image_url")

CART_TTL = 30 * 24 * 3600
ORDER_TTL = 180 * 24 * 3600


class LocalMemory:
    """In-process memory, bounded (see the module docstring).  Thread-safe."""

    def __init__(self, carts: int = 100_000, orders: int = 10_000,
                 users: int = 100_000, products: int = 10_000) -> None:
        self._carts: OrderedDict[str, Lines] = OrderedDict()
        self._orders: OrderedDict[str, None] = OrderedDict()
        self._users: OrderedDict[str, None] = OrderedDict()
        self._products: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._max_carts, self._max_orders, self._max_users = carts, orders, users
        self._max_products = products
        self._lock = threading.Lock()

    def update_cart(self, visitor: str, change: CartChange
                    ) -> tuple[Lines | None, Lines | None]:
        """Apply ``change`` (old lines → new lines, or ``None``: no change) to the
        visitor's remembered cart; ``(old, new)``, ``new`` ``None`` when nothing
        changed."""
        with self._lock:
            old = self._carts.get(visitor)
            new = change(old)
            if new is not None:
                self._carts.pop(visitor, None)
                self._carts[visitor] = new
                while len(self._carts) > self._max_carts:
                    self._carts.popitem(last=False)
        return old, new

    def last_cart(self, visitor: str) -> Lines | None:
        """The visitor's remembered cart (``None``: never seen)."""
        with self._lock:
            return self._carts.get(visitor)

    def remember_products(self, products: Iterable[Any]) -> None:
        """Keep the details (:data:`PRODUCT_DETAILS`) of products seen on a page."""
        with self._lock:
            for product in products:
                if not isinstance(product, dict) or product.get("product_id") is None:
                    continue
                details = {k: product[k] for k in PRODUCT_DETAILS
                           if product.get(k) is not None}
                if "price" not in details and "name" not in details:
                    continue
                pid = str(product["product_id"])
                known = self._products.pop(pid, None)
                self._products[pid] = {**known, **details} if known else details
            while len(self._products) > self._max_products:
                self._products.popitem(last=False)

    def complete_lines(self, lines: Iterable[Any]) -> None:
        """Fill what product ``lines`` (dicts) lack from the products seen, in place;
        what a line says wins."""
        with self._lock:
            for line in lines:
                if isinstance(line, dict) and ("price" not in line or "name" not in line):
                    known = self._products.get(str(line.get("product_id")))
                    if known:
                        for key, value in known.items():
                            line.setdefault(key, value)

    def swap_cart(self, visitor: str, lines: Lines) -> Lines | None:
        """Remember ``lines`` as the visitor's cart; return the cart remembered before
        (``None``: this visitor's cart was never seen)."""
        with self._lock:
            old = self._carts.pop(visitor, None)
            self._carts[visitor] = lines
            while len(self._carts) > self._max_carts:
                self._carts.popitem(last=False)
        return old

    def first_report(self, key: str) -> bool:
        """``True`` the first time ``key`` (an order id) is reported."""
        with self._lock:
            if key in self._orders:
                self._orders.move_to_end(key)
                return False
            self._orders[key] = None
            while len(self._orders) > self._max_orders:
                self._orders.popitem(last=False)
        return True

    def first_sight(self, key: str) -> bool:
        """``True`` the first time ``key`` (visitor + signed-in user) is seen (the last
        ``users`` keys are remembered, least recently seen forgotten first)."""
        with self._lock:
            if key in self._users:
                self._users.move_to_end(key)
                return False
            self._users[key] = None
            while len(self._users) > self._max_users:
                self._users.popitem(last=False)
        return True


class RedisMemory:
    """Fleet-wide memory in Redis, with :class:`LocalMemory` standing in when Redis
    fails.  ``url`` is the outbox URL (its ``prefix`` option is honoured, other cdptrack
    options are dropped before connecting)."""

    def __init__(self, url: str, *, carts: int = 100_000, orders: int = 10_000,
                 cart_ttl: int = CART_TTL, order_ttl: int = ORDER_TTL) -> None:
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        self.prefix = query.pop("prefix", "cdptrack")
        kept = {k: v for k, v in query.items()
                if k.startswith("socket_") or k in ("ssl_cert_reqs", "health_check_interval")}
        self._url = urlunsplit(parts._replace(query=urlencode(kept)))
        self._client: Any = None
        self._lock = threading.Lock()
        self.local = LocalMemory(carts, orders)
        self.cart_ttl, self.order_ttl = cart_ttl, order_ttl
        self.failures = 0

    def _redis(self) -> Any:
        with self._lock:
            if self._client is None:
                import redis

                self._client = redis.Redis.from_url(
                    self._url, socket_timeout=2, socket_connect_timeout=2)
            return self._client

    def _failed(self, what: str) -> None:
        self.failures += 1
        if self.failures == 1 or self.failures % 1000 == 0:
            logger.warning("cdptrack: Redis unavailable for the %s memory; this process "
                           "remembers on its own meanwhile (%d failures)", what,
                           self.failures, exc_info=self.failures == 1)

    def swap_cart(self, visitor: str, lines: Lines) -> Lines | None:
        try:
            old = self._redis().set(f"{self.prefix}:cart:{visitor}",
                                    json.dumps(lines, separators=(",", ":")),
                                    ex=self.cart_ttl, get=True)
        except Exception:
            self._failed("cart")
            return self.local.swap_cart(visitor, lines)
        return _lines(old)

    def update_cart(self, visitor: str, change: CartChange
                    ) -> tuple[Lines | None, Lines | None]:
        """:meth:`LocalMemory.update_cart` on the visitor's key (read, then written:
        two requests of one visitor at the same moment may each miss the other's
        line)."""
        key = f"{self.prefix}:cart:{visitor}"
        try:
            client = self._redis()
            old = _lines(client.get(key))
            new = change(old)
            if new is not None:
                client.set(key, json.dumps(new, separators=(",", ":")), ex=self.cart_ttl)
        except Exception:
            self._failed("cart")
            return self.local.update_cart(visitor, change)
        return old, new

    def last_cart(self, visitor: str) -> Lines | None:
        try:
            return _lines(self._redis().get(f"{self.prefix}:cart:{visitor}"))
        except Exception:
            self._failed("cart")
            return self.local.last_cart(visitor)

    def remember_products(self, products: Iterable[Any]) -> None:
        self.local.remember_products(products)

    def complete_lines(self, lines: Iterable[Any]) -> None:
        self.local.complete_lines(lines)

    def first_report(self, key: str) -> bool:
        try:
            return bool(self._redis().set(f"{self.prefix}:order:{key}", b"1", nx=True,
                                          ex=self.order_ttl))
        except Exception:
            self._failed("order")
            return self.local.first_report(key)

    def first_sight(self, key: str) -> bool:
        try:
            return bool(self._redis().set(f"{self.prefix}:seen:{key}", b"1", nx=True,
                                          ex=self.cart_ttl))
        except Exception:
            self._failed("identity")
            return self.local.first_sight(key)


_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS memory_carts (
    visitor TEXT PRIMARY KEY, lines TEXT NOT NULL, seen REAL NOT NULL);
CREATE TABLE IF NOT EXISTS memory_keys (
    kind TEXT NOT NULL, key TEXT NOT NULL, seen REAL NOT NULL, PRIMARY KEY (kind, key));
CREATE INDEX IF NOT EXISTS memory_carts_seen ON memory_carts (seen);
CREATE INDEX IF NOT EXISTS memory_keys_seen ON memory_keys (kind, seen);
"""
# Expired entries are deleted once per this many writes of a process.
_SQLITE_PRUNE_EVERY = 1000


class SQLiteMemory:
    """Host-wide memory in the SQLite outbox's file (tables ``memory_carts`` and
    ``memory_keys``), so that every worker process of a server on one host agrees on
    each visitor's cart, the orders reported and the users identified.  Each read or
    update is one transaction (``BEGIN IMMEDIATE``: a cart update is a read and a write
    no other process comes between).  Entries expire like Redis keys (``cart_ttl``,
    ``order_ttl``).  When the file cannot be used, the local memory stands in."""

    def __init__(self, path: str, *, carts: int = 100_000, orders: int = 10_000,
                 cart_ttl: int = CART_TTL, order_ttl: int = ORDER_TTL) -> None:
        self.path = path
        self.local = LocalMemory(carts, orders)
        self.cart_ttl, self.order_ttl = cart_ttl, order_ttl
        self.failures = 0
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._writes = 0

    def _connection(self) -> sqlite3.Connection:
        # Called with self._lock held.  A connection is never used across fork().
        if self._conn is None or self._pid != os.getpid():
            directory = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(directory, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=10000")
            conn.executescript(_SQLITE_SCHEMA)
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def _failed(self, what: str) -> None:
        self.failures += 1
        if self.failures == 1 or self.failures % 1000 == 0:
            logger.warning("cdptrack: the SQLite file %s cannot keep the %s memory; this "
                           "process remembers on its own meanwhile (%d failures)",
                           self.path, what, self.failures, exc_info=self.failures == 1)

    def _pruned(self, conn: sqlite3.Connection, now: float) -> None:
        self._writes += 1
        if self._writes % _SQLITE_PRUNE_EVERY == 0:
            conn.execute("DELETE FROM memory_carts WHERE seen < ?", (now - self.cart_ttl,))
            conn.execute("DELETE FROM memory_keys WHERE kind = 'order' AND seen < ?",
                         (now - self.order_ttl,))
            conn.execute("DELETE FROM memory_keys WHERE kind = 'seen' AND seen < ?",
                         (now - self.cart_ttl,))

    def update_cart(self, visitor: str, change: CartChange
                    ) -> tuple[Lines | None, Lines | None]:
        """:meth:`LocalMemory.update_cart` in one transaction of the file."""
        try:
            with self._lock:
                conn = self._connection()
                now = time.time()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    row = conn.execute(
                        "SELECT lines, seen FROM memory_carts WHERE visitor = ?",
                        (visitor,)).fetchone()
                    old = _lines(row[0]) if row and row[1] >= now - self.cart_ttl else None
                    new = change(old)
                    if new is not None:
                        conn.execute(
                            "INSERT OR REPLACE INTO memory_carts (visitor, lines, seen) "
                            "VALUES (?, ?, ?)",
                            (visitor, json.dumps(new, separators=(",", ":")), now))
                        self._pruned(conn, now)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
        except Exception:
            self._failed("cart")
            return self.local.update_cart(visitor, change)
        return old, new

    def swap_cart(self, visitor: str, lines: Lines) -> Lines | None:
        """Remember ``lines`` as the visitor's cart; the cart remembered before."""
        old, _ = self.update_cart(visitor, lambda _old: lines)
        return old

    def last_cart(self, visitor: str) -> Lines | None:
        """The visitor's remembered cart (``None``: never seen)."""
        try:
            with self._lock:
                row = self._connection().execute(
                    "SELECT lines, seen FROM memory_carts WHERE visitor = ?",
                    (visitor,)).fetchone()
        except Exception:
            self._failed("cart")
            return self.local.last_cart(visitor)
        return _lines(row[0]) if row and row[1] >= time.time() - self.cart_ttl else None

    def remember_products(self, products: Iterable[Any]) -> None:
        """Product details stay in this process (see the module docstring)."""
        self.local.remember_products(products)

    def complete_lines(self, lines: Iterable[Any]) -> None:
        """:meth:`LocalMemory.complete_lines`."""
        self.local.complete_lines(lines)

    def _first(self, kind: str, key: str, ttl: int) -> bool:
        with self._lock:
            conn = self._connection()
            now = time.time()
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute("SELECT seen FROM memory_keys WHERE kind = ? AND key = ?",
                                   (kind, key)).fetchone()
                first = row is None or row[0] < now - ttl
                if first:
                    conn.execute("INSERT OR REPLACE INTO memory_keys (kind, key, seen) "
                                 "VALUES (?, ?, ?)", (kind, key, now))
                    self._pruned(conn, now)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        return first

    def first_report(self, key: str) -> bool:
        """``True`` the first time ``key`` (an order id) is reported by any process
        using the file."""
        try:
            return self._first("order", key, self.order_ttl)
        except Exception:
            self._failed("order")
            return self.local.first_report(key)

    def first_sight(self, key: str) -> bool:
        """``True`` the first time ``key`` (visitor + user) is seen by any process
        using the file."""
        try:
            return self._first("seen", key, self.cart_ttl)
        except Exception:
            self._failed("identity")
            return self.local.first_sight(key)


def server_workers() -> str | None:
    """What says this process is one of several worker processes of one server, or
    ``None``: a uWSGI worker with ``processes`` above 1, or a gunicorn worker whose
    master (its parent process) has more than one child (read from ``/proc``, so Linux
    only).  Nothing is guessed where it cannot be read."""
    import sys

    uwsgi = sys.modules.get("uwsgi")
    numproc = getattr(uwsgi, "numproc", 0) if uwsgi is not None else 0
    if isinstance(numproc, int) and numproc > 1:
        return f"uWSGI runs {numproc} worker processes"
    if "gunicorn.workers.base" in sys.modules:
        parent = os.getppid()
        try:
            with open(f"/proc/{parent}/task/{parent}/children") as f:
                children = f.read().split()
        except OSError:
            return None
        if len(children) > 1:
            return f"gunicorn runs {len(children)} worker processes"
    return None


def sqlite_path(url: str) -> str | None:
    """The file of a SQLite outbox URL (``sqlite:///rel.db``, ``sqlite:////abs.db``)."""
    rest = url[len("sqlite://"):].partition("?")[0]
    return rest[1:] if rest.startswith("/") and len(rest) > 1 else None


def _lines(raw: Any) -> Lines | None:
    if raw is None:
        return None
    try:
        found = json.loads(raw)
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


Memory = LocalMemory | RedisMemory | SQLiteMemory


def memory_for(outbox_url: str | None, *, orders: int = 10_000) -> Memory:
    """:class:`RedisMemory` when the outbox URL is Redis (a fleet agrees),
    :class:`SQLiteMemory` in the same file when it is SQLite (the processes of one host
    agree), else :class:`LocalMemory` (this process only)."""
    text = (outbox_url or "").strip()
    if text.startswith(("redis://", "rediss://", "unix://")):
        return RedisMemory(text, orders=orders)
    if text.startswith("sqlite://"):
        path = sqlite_path(text)
        if path is not None:
            return SQLiteMemory(path, orders=orders)
    return LocalMemory(orders=orders)


__all__ = ["CART_TTL", "ORDER_TTL", "LocalMemory", "Memory", "RedisMemory", "SQLiteMemory",
           "memory_for", "server_workers", "sqlite_path"]
