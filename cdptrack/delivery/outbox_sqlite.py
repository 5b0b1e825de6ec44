"""A durable outbox in one SQLite file: accepted events survive a crash of the process.

**The guarantee.**  ``capture`` writes the event row and commits it before it returns
(WAL journal, ``synchronous=NORMAL``: tens of microseconds, no fsync on the request
path).  "Accepted" means ``capture`` returned; from then on the event survives a crash or
``SIGKILL`` of the process and is delivered, at least once, after the next start.  With
``synchronous=NORMAL`` a power cut or OS crash may lose the last transactions; add
``?synchronous=full`` to the URL to fsync every capture instead (slower).  A request's
events (the middleware's deferred record) are built on the request's thread and
committed by one multi-row ``INSERT``: one statement, so one implicit transaction and
one call into SQLite per request (each call lets go of the GIL, and on a busy server
getting it back costs a request more than the write does).

**What the sender reads from the file, and when.**  The events ``capture`` just wrote
are also handed to the sender in memory (no read back, no second validation), and the
deliveries the dispatcher records wait in memory per destination as well; the file is
read only for work this process did not accept itself (a dead process's rows taken
over, replayed dead letters, what did not fit in memory).

**What the sender writes, and when.**  Routing writes nothing while the deliveries fit
in memory.  The sender writes once per burst (``SETTLE_EVERY`` seconds or
``SETTLE_BATCH`` finished items, whichever comes first), in one transaction: it deletes
the events all of whose destinations have them (sent or dead-lettered; a lone
``DELETE ... WHERE id IN (...)`` when that is all), stores dead letters, and writes a
``deliveries`` row per unfinished destination for the events still unfinished
``PERSIST_AFTER`` seconds after they were routed (an API that is slow or down).  An
event routed in memory still reads ``routed = 0`` in the file: a crash before its burst
write routes it again after the restart, to every destination (at least once, same
message ids); once its rows are written, only the destinations still missing it get it
again.

**Layout.**  ``events`` holds accepted events (canonical JSON).  ``deliveries`` holds,
for the events written as unfinished (above), one row per destination still missing
the event; the row goes when that destination has it.  An event row disappears once
every destination has the event.  ``dead_letters`` keeps refused requests with status,
response and attempts; ``cdptrack replay`` moves them back.  Credentials are never
written: a request is re-rendered from the canonical event with the current
configuration when it is not in memory.

**Several processes, one file** (gunicorn workers sharing ``CDPTRACK_OUTBOX``): each row
belongs to the process that wrote it, so no event is sent twice by two workers.  A
process whose owner is gone (its pid no longer runs on this host, or it stopped sending
heartbeats for ``LEASE`` seconds) has its rows taken over by a live one.

Capacity is bounded by the disk, not ``max_queue``: nothing is dropped for lack of room.
URLs follow SQLAlchemy: ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext, suppress
from typing import Any, TypeVar
from urllib.parse import parse_qs

from ..config import ConfigError
from ..destinations.base import WireRequest
from ..events import Event
from .deferred import DeferredBuild, run_build
from .identity_store import SQLITE_SCHEMA, IdentityStore, SQLiteIdentityStore
from .outbox import DeadLetter, Delivery, Outbox, Payload, Routing

LEASE = 60.0  # seconds without a heartbeat after which another process takes over
# Finished deliveries are written (deleted) together: at most this long after the first
# of them, or as soon as this many wait, or when anyone asks what is open.
SETTLE_EVERY = 0.02
SETTLE_BATCH = 512
# An event routed in memory gets its ``deliveries`` rows (one per unfinished destination)
# once it has been unfinished this long; most are finished and deleted before.
PERSIST_AFTER = 0.25
# Values bound into one statement: under 999, the variable limit of SQLite before 3.32.
_MAX_IDS = 512  # ids in one ``WHERE id IN (...)``
_MAX_ROWS = 256  # rows of 3 values in one multi-row INSERT
_HOST = socket.gethostname()
# Connections inherited over fork() are never closed in the child (closing a parent's
# connection there is unsafe); they are parked here.
_INHERITED: list[sqlite3.Connection] = []

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    owner TEXT NOT NULL,
    body TEXT NOT NULL,
    routed INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_owner ON events (owner, routed, id);
CREATE TABLE IF NOT EXISTS deliveries (
    event_id INTEGER NOT NULL,
    destination TEXT NOT NULL,
    owner TEXT NOT NULL,
    only_ids TEXT,
    PRIMARY KEY (event_id, destination)
);
CREATE INDEX IF NOT EXISTS deliveries_by_owner ON deliveries (owner, destination, event_id);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    destination TEXT NOT NULL,
    message_id TEXT NOT NULL,
    method TEXT NOT NULL,
    url TEXT NOT NULL,
    status INTEGER,
    response TEXT NOT NULL,
    reason TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    event TEXT NOT NULL,
    request TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS owners (
    owner TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    seen REAL NOT NULL
);
"""


def _new_owner() -> str:
    return f"{_HOST}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


class SQLiteOutbox(Outbox):
    durable = True
    # A request's deferred record is built on the caller's thread and its events are
    # committed in one transaction (put_deferred): one commit per request, not per event.
    accepts_deferred = True

    def __init__(self, path: str, *, synchronous: str = "NORMAL", url: str | None = None,
                 max_cached: int = 10_000) -> None:
        if synchronous.upper() not in {"NORMAL", "FULL", "EXTRA"}:
            raise ConfigError("outbox: synchronous must be normal, full or extra")
        self.path = path
        self.url = url or f"sqlite:///{path}"
        self._synchronous = synchronous.upper()
        self._max_cached = max_cached
        self._reset()

    @classmethod
    def from_url(cls, url: str, *, max_queue: int = 10_000) -> SQLiteOutbox:
        rest = url[len("sqlite://"):]
        rest, _, query = rest.partition("?")
        if not rest.startswith("/") or len(rest) < 2:
            raise ConfigError(f"outbox: expected sqlite:///path/to/file.db, got {url!r}")
        path = rest[1:]  # sqlite:///rel.db -> rel.db ; sqlite:////abs.db -> /abs.db
        options = {k.lower(): v[-1] for k, v in parse_qs(query).items()}
        return cls(path, synchronous=options.get("synchronous", "normal"), url=url,
                   max_cached=max_queue)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        # One connection per process, shared by capture and the sender under the lock:
        # two connections would contend through file locks, whose busy handler sleeps in
        # milliseconds; a Python lock hands over in microseconds.  ``capture`` takes
        # only this lock, and the sender takes it only to read or write the file: its
        # bookkeeping (routing, settling, what waits in memory) is guarded by
        # ``_books``, so a request never waits for the sender's Python code (nor for
        # the sender to get the GIL back while it holds a lock the request needs).
        # Order: ``_books`` before ``_lock``.
        self._books = threading.Lock()
        self._writer: sqlite3.Connection | None = None
        self._owner = _new_owner()
        self._last = 0
        self._handed: dict[str, set[int]] = {}
        self._rendered: dict[tuple[int, str], list[WireRequest]] = {}
        self._refused: dict[str, int] = {}  # deferred builds that raised, for the sender
        # event id -> [the routed Event, its deliveries not yet handed out]
        self._decoded: dict[int, list[Any]] = {}
        # Events accepted here and not yet routed, handed over without a read back.
        self._fresh: deque[tuple[int, Event | str]] = deque()
        self._fresh_keys: set[int] = set()
        self._disk_new = True  # the file may hold unrouted rows that are not in _fresh
        # Per destination, routed deliveries waiting in memory (the rows are on disk).
        self._waiting: dict[str, deque[int]] = {}
        # Per destination: the file may hold deliveries that are not in _waiting.
        self._disk_more: dict[str, bool] = {}
        # Per destination: the newest delivery handed out from the file.
        self._disk_mark: dict[str, int] = {}
        # Finished deliveries and dead letters not yet written (see _write_settled).
        self._done: list[tuple[int, str]] = []
        self._letters: list[DeadLetter] = []
        self._done_since = 0.0
        # Events routed in memory whose deliveries rows are not written (see route):
        # event id -> its destinations not finished yet (empty: all finished, the
        # event's row is deleted by the next burst write).
        self._unwritten: dict[int, set[str]] = {}
        self._young: deque[tuple[float, int]] = deque()  # (when routed, id), in order
        self._finished: list[int] = []  # unwritten events all of whose work is done
        self._new_cursor = 0  # take_new's position in the file while it reads from it

    # -- connections -------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None,
                               check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute("PRAGMA busy_timeout=10000")
        conn.executescript(SCHEMA + SQLITE_SCHEMA)
        return conn

    def _writer_conn(self) -> sqlite3.Connection:
        # Called with self._lock held.
        if self._writer is None:
            self._writer = self._connect()
            self._writer.execute(
                "INSERT OR REPLACE INTO owners (owner, host, pid, seen) VALUES (?, ?, ?, ?)",
                (self._owner, _HOST, os.getpid(), time.time()))
        return self._writer

    @contextmanager
    def _locked(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._writer_conn()

    @contextmanager
    def _booked(self) -> Iterator[sqlite3.Connection]:
        """Both locks: for what writes the settled work (see _write_settled)."""
        with self._books, self._lock:
            yield self._writer_conn()

    @staticmethod
    @contextmanager
    def _transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # -- capture side ------------------------------------------------------------------

    def put(self, item: Payload) -> bool:
        body = _body(item)
        with self._lock:
            cursor = self._writer_conn().execute(
                "INSERT INTO events (owner, body, created) VALUES (?, ?, ?)",
                (self._owner, body, time.time()))
            self._last = int(cursor.lastrowid or self._last)
            # An Event cannot change; a caller's mapping might: hand over what was stored.
            self._hand_over(self._last, item if isinstance(item, Event) else body)
        return True

    def _hand_over(self, key: int, item: Event | str) -> None:
        # Called with self._lock held, after the row was committed.  The sender pops
        # from the other end of the deque without the lock (both ends are thread-safe);
        # the key is marked first, so the sender's pop always finds it to unmark.
        if len(self._fresh) < self._max_cached:
            self._fresh_keys.add(key)
            self._fresh.append((key, item))
        else:
            self._disk_new = True  # the sender reads it back from the file

    def put_deferred(self, job: DeferredBuild) -> bool:
        """A request's events, built here (on the caller's thread: what is accepted is
        on disk when this returns) and committed in one transaction, not one each.  A
        build that raises is logged and counted as ``invalid`` (see
        :meth:`take_refusals`)."""
        built = run_build(job)
        items: list[Event | str] = []
        bodies: list[str] = []
        invalid = 0 if built is not None else 1
        for one in built or ():
            if isinstance(one, Event | Mapping):
                body = _body(one)
                items.append(one if isinstance(one, Event) else body)
                bodies.append(body)
            else:
                invalid += 1
        with self._lock:
            if invalid:
                self._refused["invalid"] = self._refused.get("invalid", 0) + invalid
            if not bodies:
                return True
            conn = self._writer_conn()
            now = time.time()
            # One statement, so one implicit transaction (atomic; committed when it
            # returns) and one call into SQLite: each call lets go of the GIL, and
            # under load getting it back is what a request waits for, not the write.
            # (More than _MAX_ROWS events: several statements in one transaction.)
            keys: list[int] = []
            with self._transaction(conn) if len(bodies) > _MAX_ROWS else nullcontext():
                for start in range(0, len(bodies), _MAX_ROWS):
                    chunk = bodies[start:start + _MAX_ROWS]
                    args: list[Any] = []
                    for body in chunk:
                        args += (self._owner, body, now)
                    last = int(conn.execute(_insert_events(len(chunk)), args).lastrowid or 0)
                    # AUTOINCREMENT numbers the rows of one statement consecutively.
                    keys.extend(range(last - len(chunk) + 1, last + 1))
            self._last = max(self._last, keys[-1])
            for key, item in zip(keys, items, strict=True):
                self._hand_over(key, item)
        return True

    def take_refusals(self) -> dict[str, int]:
        # Asked on every round of the dispatcher: the connection's lock (which every
        # capture needs) only when a build did fail.
        if not self._refused:
            return {}
        with self._lock:
            refused, self._refused = self._refused, {}
        return refused

    def last_key(self) -> int:
        return self._last

    def _scalar(self, sql: str, *args: Any) -> Any:
        with self._locked() as conn:
            row = conn.execute(sql, args).fetchone()
        return row[0] if row else None

    def min_open_key(self) -> int | None:
        with self._booked() as conn:
            self._write_settled(conn)
            row = conn.execute("SELECT min(id) FROM events WHERE owner = ?",
                               (self._owner,)).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def open_count(self) -> int:
        with self._booked() as conn:
            self._write_settled(conn)
            row = conn.execute("SELECT count(*) FROM events WHERE owner = ?",
                               (self._owner,)).fetchone()
        return int(row[0])

    def queue_depths(self) -> dict[str, int]:
        with self._booked() as conn:
            self._write_settled(conn)
            return self._open_deliveries(conn)

    def _open_deliveries(self, conn: sqlite3.Connection) -> dict[str, int]:
        """Per destination, unfinished deliveries: rows in the file, and those of events
        routed in memory.  Called with both locks held, after _write_settled."""
        rows = conn.execute("SELECT destination, count(*) FROM deliveries WHERE owner = ? "
                            "GROUP BY destination", (self._owner,)).fetchall()
        depths = {str(name): int(n) for name, n in rows}
        for left in self._unwritten.values():
            for name in left:
                depths[name] = depths.get(name, 0) + 1
        return depths

    # -- sender side -------------------------------------------------------------------

    def start(self) -> None:
        self.maintain()

    def maintain(self) -> bool:
        """Heartbeat, and take over the rows of owners that are gone."""
        with self._booked() as conn:
            self._write_settled(conn)
            return self._maintain(conn)

    def _maintain(self, conn: sqlite3.Connection) -> bool:
        now = time.time()
        conn.execute(
            "INSERT OR REPLACE INTO owners (owner, host, pid, seen) VALUES (?, ?, ?, ?)",
            (self._owner, _HOST, os.getpid(), now))
        others = [row[0] for row in conn.execute(
            "SELECT DISTINCT owner FROM events WHERE owner != ?", (self._owner,))]
        taken = False
        for other in others:
            if not self._is_gone(conn, other, now):
                continue
            with self._transaction(conn):
                conn.execute("UPDATE events SET owner = ? WHERE owner = ?", (self._owner, other))
                conn.execute("UPDATE deliveries SET owner = ? WHERE owner = ?",
                             (self._owner, other))
                conn.execute("DELETE FROM owners WHERE owner = ?", (other,))
            taken = True
        if taken:
            # Their rows are read from the file (unrouted events, open deliveries).
            self._disk_new = True
            self._new_cursor = 0
            for name in self._disk_more:
                self._disk_more[name] = True
            row = conn.execute("SELECT max(id) FROM events WHERE owner = ?",
                               (self._owner,)).fetchone()
            self._last = max(self._last, int(row[0] or 0))
        return taken

    @staticmethod
    def _is_gone(conn: sqlite3.Connection, owner: str, now: float) -> bool:
        host, _, rest = owner.partition(":")
        pid_text = rest.partition(":")[0]
        if host == _HOST and pid_text.isdigit() and not _pid_running(int(pid_text)):
            return True
        row = conn.execute("SELECT seen FROM owners WHERE owner = ?", (owner,)).fetchone()
        return row is None or now - float(row[0]) > LEASE

    def take_new(self, limit: int) -> list[tuple[int, Payload | str]]:
        # Taking and routing happen in one step of the sender's loop, so "not routed"
        # is exactly "not taken yet".  What capture handed over comes first; the file
        # is read only when it may hold more (see _hand_over, _maintain).
        out: list[tuple[int, Payload | str]] = []
        fresh = self._fresh
        while fresh and len(out) < limit:  # without the lock: see _hand_over
            key, item = fresh.popleft()
            self._fresh_keys.discard(key)
            out.append((key, item))
        want = limit - len(out)
        with self._books:
            self._settle_if_due()
            if want > 0 and self._disk_new:
                self._take_from_disk(out, want)
        return out

    def _take_from_disk(self, out: list[tuple[int, Payload | str]], want: int) -> None:
        # Called with self._books held.
        with self._locked() as conn:
            if self._disk_new:
                # Rows this process routed without writing deliveries rows still read
                # "not routed": they are skipped, and the cursor moves past them.
                rows = conn.execute(
                    "SELECT id, body FROM events WHERE owner = ? AND routed = 0 "
                    "AND id > ? ORDER BY id LIMIT ?",
                    (self._owner, self._new_cursor, want)).fetchall()
                taken = {key for key, _ in out}
                for key, body in rows:
                    self._new_cursor = max(self._new_cursor, int(key))
                    if (key not in self._fresh_keys and key not in taken
                            and key not in self._unwritten):
                        out.append((int(key), str(body)))
                if len(rows) < want:
                    self._disk_new = False  # read to the end
                    self._new_cursor = 0

    def route(self, routings: Sequence[Routing]) -> list[tuple[int, str]]:
        """Routing writes nothing while the deliveries fit in memory: an event whose
        destinations all finish within its first burst is deleted (one statement per
        burst) and never has ``deliveries`` rows.  Rows are written for the events
        still unfinished ``PERSIST_AFTER`` seconds after routing (see
        :meth:`_write_settled`), and at once for what does not fit in memory."""
        now = time.monotonic()
        with self._books:
            written: list[Routing] = []
            for routing in routings:
                key = routing.key
                if routing.event is None or not routing.requests:
                    self._finish(key)  # nothing to deliver: the row goes with the burst
                    continue
                if self._fits_in_memory(key, routing.requests):
                    self._unwritten[key] = set(routing.requests)
                    self._young.append((now, key))
                else:
                    written.append(routing)
                self._keep(routing)
            if written:
                with self._locked() as conn, self._transaction(conn):
                    self._write_deliveries(conn, [
                        (routing.key, list(routing.requests)) for routing in written])
        return []

    def _fits_in_memory(self, key: int, destinations: Iterable[str]) -> bool:
        if len(self._decoded) >= self._max_cached:
            return False
        for name in destinations:
            if key <= self._disk_mark.get(name, 0) or \
                    len(self._waiting.get(name, ())) >= self._max_cached:
                return False
        return True

    def _keep(self, routing: Routing) -> None:
        """The routed event and its deliveries, waiting in memory where they fit."""
        for name, requests in routing.requests.items():
            if requests is not None and len(self._rendered) < self._max_cached:
                self._rendered[(routing.key, name)] = requests
            waiting = self._waiting.setdefault(name, deque())
            if routing.key <= self._disk_mark.get(name, 0):
                # Older than what was read from the file already (a dead process's
                # event routed late): read from the file too, in event order.
                self._disk_more[name] = True
            elif len(waiting) < self._max_cached:
                waiting.append(routing.key)
            else:
                self._disk_more[name] = True
        if len(self._decoded) < self._max_cached:
            self._decoded[routing.key] = [routing.event, len(routing.requests)]

    def _write_deliveries(self, conn: sqlite3.Connection,
                          open_work: Sequence[tuple[int, Iterable[str]]]) -> None:
        """``deliveries`` rows for these events' unfinished destinations (in a
        transaction the caller holds)."""
        rows = [(key, name) for key, names in open_work for name in names]
        for start in range(0, len(rows), _MAX_ROWS):  # a statement per chunk, not per row
            part = rows[start:start + _MAX_ROWS]
            args: list[Any] = []
            for key, name in _padded(part):  # repeats are ignored (OR IGNORE)
                args += (key, name, self._owner)
            conn.execute(_insert_deliveries(len(args) // 3), args)
        for chunk in _chunks([key for key, _ in open_work]):
            conn.execute(_where_id_in("UPDATE events SET routed = 1", len(chunk)), chunk)

    def _finish(self, key: int) -> None:
        # Called with self._books held.
        if not self._done and not self._letters and not self._finished:
            self._done_since = time.monotonic()
        self._unwritten[key] = set()
        self._finished.append(key)

    def _event_of(self, key: int, body: str) -> Event:
        """The event of row ``key``: the one the dispatcher validated when it is still in
        memory (each lane would otherwise decode and validate the row again), else
        decoded from ``body`` (``ValueError`` when it is not a valid event)."""
        cached = self._decoded.get(key)
        if cached is None:
            return Event.from_dict(json.loads(body))
        cached[1] -= 1
        if cached[1] <= 0:
            del self._decoded[key]
        event: Event = cached[0]
        return event

    def next_for(self, destination: str, limit: int) -> list[Delivery]:
        """The oldest deliveries for ``destination`` not handed out yet, in the order
        their events were accepted (lanes keep each visitor's order from there).  While
        the file may hold deliveries that are not waiting in memory (a dead process's
        rows, replayed dead letters, what did not fit in memory, the last run's), it is
        read first, in event order; then what this process routed, from memory."""
        handed = self._handed.setdefault(destination, set())
        if self._disk_more.setdefault(destination, True):
            out = self._next_from_disk(destination, handed, limit)
            if out:
                return out
        waiting = self._waiting.get(destination)
        if waiting:
            return self._next_in_memory(destination, waiting, handed, limit)
        return []

    def _next_from_disk(self, destination: str, handed: set[int], limit: int
                        ) -> list[Delivery]:
        asked = limit + len(handed)
        with self._books, self._locked() as conn:
            # What waits in memory for this destination without rows gets them first:
            # the file is then read in event order with it, and the mark set below
            # (which makes the memory path skip older keys) cannot pass over it.
            open_work = [(key, left) for key, left in self._unwritten.items()
                         if destination in left]
            if open_work:
                with self._transaction(conn):
                    self._write_deliveries(conn, open_work)
                for key, _ in open_work:
                    del self._unwritten[key]
            rows = conn.execute(
                "SELECT d.event_id, e.body, d.only_ids FROM deliveries d "
                "JOIN events e ON e.id = d.event_id "
                "WHERE d.owner = ? AND d.destination = ? ORDER BY d.event_id LIMIT ?",
                (self._owner, destination, asked)).fetchall()
        out: list[Delivery] = []
        broken: list[Delivery] = []
        mark = self._disk_mark.get(destination, 0)
        for key, body, only in rows:
            if key in handed:
                continue
            mark = max(mark, key)
            try:
                event = self._event_of(key, body)
            except ValueError:
                broken.append(Delivery(key, destination, Event(type="track", event="?")))
                continue
            handed.add(key)
            out.append(Delivery(
                key, destination, event,
                requests=self._rendered.pop((key, destination), None),
                only=frozenset(json.loads(only)) if only else None,
            ))
            if len(out) >= limit:
                break
        # Deliveries up to here came from the file: their copies waiting in memory are
        # skipped (see _next_in_memory), and later routings at or below it go to the file.
        self._disk_mark[destination] = mark
        if broken:  # unreadable rows (written by something else): do not loop on them
            self.settle(broken)
        if len(rows) < asked:
            self._disk_more[destination] = False  # read to the end
        return out

    def _next_in_memory(self, destination: str, waiting: deque[int], handed: set[int],
                        limit: int) -> list[Delivery]:
        """Deliveries the dispatcher routed in this process, without reading the file
        (the row's event is the one the dispatcher validated), in routing order."""
        out: list[Delivery] = []
        mark = self._disk_mark.get(destination, 0)
        while waiting and len(out) < limit:
            key = waiting.popleft()
            if key in handed or key <= mark:  # in flight, or handed out from the file
                continue
            if key not in self._decoded:
                # Not kept in memory: it and what follows it come from the file, in order.
                self._disk_more[destination] = True
                break
            event = self._event_of(key, "")
            handed.add(key)
            out.append(Delivery(key, destination, event,
                                requests=self._rendered.pop((key, destination), None)))
        return out

    def settle(self, done: Sequence[Delivery], letters: Sequence[DeadLetter] = ()) -> None:
        """Record finished deliveries; they are written with the others of the burst
        (see the module docstring) and stay handed out until then."""
        with self._books:
            if not self._done and not self._letters and not self._finished:
                self._done_since = time.monotonic()
            for delivery in done:
                left = self._unwritten.get(delivery.key)
                if left is None:  # its deliveries row is in the file
                    self._done.append((delivery.key, delivery.destination))
                    continue
                # No row to delete: it is out of the way at once.
                self._handed.get(delivery.destination, set()).discard(delivery.key)
                if delivery.destination in left:
                    left.discard(delivery.destination)
                    if not left:
                        self._finished.append(delivery.key)
            self._letters.extend(letters)
            self._settle_if_due()

    def _settle_if_due(self) -> None:
        """End a burst when it is due: finished work waited ``SETTLE_EVERY`` seconds
        (or ``SETTLE_BATCH`` of it waits), or an event routed in memory has been
        unfinished for ``PERSIST_AFTER`` seconds.  Called with self._books held."""
        now = time.monotonic()
        waiting = len(self._done) + len(self._finished)
        if ((waiting or self._letters)
                and (waiting >= SETTLE_BATCH or now - self._done_since >= SETTLE_EVERY)) \
                or (self._young and now - self._young[0][0] >= PERSIST_AFTER):
            with self._locked() as conn:
                self._write_settled(conn, persist_before=now - PERSIST_AFTER)

    def _write_settled(self, conn: sqlite3.Connection,
                       persist_before: float | None = None) -> None:
        """The end of a burst, in one transaction: delete the events whose work is all
        finished (one statement when that is all there is to write) and the finished
        deliveries rows, store the dead letters, and with ``persist_before`` write the
        ``deliveries`` rows of the events routed in memory before that moment that
        are still unfinished.  Called with both locks held."""
        open_work: list[tuple[int, set[str]]] = []
        aged = 0  # routed before persist_before (taken off _young once written)
        if persist_before is not None:
            for routed, key in self._young:
                if routed > persist_before:
                    break
                aged += 1
                if left := self._unwritten.get(key):
                    open_work.append((key, left))
        if not (self._done or self._letters or self._finished or open_work):
            for _ in range(aged):
                self._young.popleft()
            return
        done, letters, finished = self._done, self._letters, self._finished
        if done or letters or open_work or len(finished) > _MAX_IDS:
            with self._transaction(conn):
                self._write_burst(conn, done, letters, finished, open_work)
        else:  # one statement: its own transaction, one call into SQLite
            self._write_burst(conn, done, letters, finished, open_work)
        self._done, self._letters, self._finished = [], [], []
        for _ in range(aged):
            self._young.popleft()
        for key, destination in done:
            self._handed.get(destination, set()).discard(key)
        for key in finished:
            self._unwritten.pop(key, None)
        for key, _ in open_work:
            del self._unwritten[key]  # its rows are in the file from here on

    def _write_burst(self, conn: sqlite3.Connection, done: list[tuple[int, str]],
                     letters: list[DeadLetter], finished: list[int],
                     open_work: list[tuple[int, set[str]]]) -> None:
        if letters:
            conn.executemany(
                "INSERT INTO dead_letters (destination, message_id, method, url, status, "
                "response, reason, attempts, event, request, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(d.destination, d.message_id, d.method, d.url, d.status, d.response,
                  d.reason, d.attempts, json.dumps(d.event, ensure_ascii=False),
                  json.dumps(d.request, ensure_ascii=False), d.created) for d in letters])
        if done:
            conn.executemany("DELETE FROM deliveries WHERE event_id = ? AND destination = ?",
                             done)
            conn.executemany(
                "DELETE FROM events WHERE id = ? AND routed = 1 AND NOT EXISTS "
                "(SELECT 1 FROM deliveries WHERE event_id = ?)",
                [(key, key) for key in {key for key, _ in done}])
        for chunk in _chunks(finished):
            conn.execute(_where_id_in("DELETE FROM events", len(chunk)), chunk)
        if open_work:
            self._write_deliveries(conn, open_work)

    def release(self, deliveries: Iterable[Delivery]) -> None:
        deliveries = list(deliveries)
        with self._books:
            # Handed back unfinished (shutdown): they are read from the file again, so
            # the events routed in memory get their rows now.
            open_work = [(key, left) for key in {d.key for d in deliveries}
                         if (left := self._unwritten.get(key))]
            if open_work:
                with self._locked() as conn, self._transaction(conn):
                    self._write_deliveries(conn, open_work)
                for key, _ in open_work:
                    del self._unwritten[key]
        for delivery in deliveries:
            self._handed.get(delivery.destination, set()).discard(delivery.key)
            self._disk_more[delivery.destination] = True  # handed out again from the file

    def backlog(self) -> dict[str, int]:
        with self._booked() as conn:
            self._write_settled(conn)
            depths = self._open_deliveries(conn)
        return {name: n - len(self._handed.get(name, ())) for name, n in depths.items()}

    # -- dead letters ------------------------------------------------------------------

    def dead_letters(self, limit: int = 1000, destination: str | None = None
                     ) -> list[DeadLetter]:
        sql = ("SELECT id, destination, message_id, method, url, status, response, reason, "
               "attempts, event, request, created FROM dead_letters")
        args: list[Any] = []
        if destination is not None:
            sql += " WHERE destination = ?"
            args.append(destination)
        sql += " ORDER BY id LIMIT ?"
        args.append(limit)
        with self._booked() as conn:
            self._write_settled(conn)
            rows = conn.execute(sql, args).fetchall()
        return [
            DeadLetter(destination=r[1], message_id=r[2], method=r[3], url=r[4], status=r[5],
                       response=r[6], reason=r[7], attempts=r[8], event=json.loads(r[9]),
                       request=json.loads(r[10]), created=r[11], id=r[0])
            for r in rows
        ]

    def requeue_dead(self, ids: Iterable[int]) -> int:
        moved = 0
        now = time.time()
        with self._locked() as conn, self._transaction(conn):
            for ident in ids:
                row = conn.execute(
                    "SELECT destination, message_id, event FROM dead_letters WHERE id = ?",
                    (ident,)).fetchone()
                if row is None:
                    continue  # replayed by someone else meanwhile
                destination, message_id, event = row
                cursor = conn.execute(
                    "INSERT INTO events (owner, body, routed, created) VALUES (?, ?, 1, ?)",
                    (self._owner, event, now))
                key = int(cursor.lastrowid or 0)
                conn.execute(
                    "INSERT INTO deliveries (event_id, destination, owner, only_ids) "
                    "VALUES (?, ?, ?, ?)",
                    (key, destination, self._owner, json.dumps([message_id])))
                conn.execute("DELETE FROM dead_letters WHERE id = ?", (ident,))
                self._last = max(self._last, key)
                self._disk_more[destination] = True
                moved += 1
        return moved

    def identity_store(self) -> IdentityStore:
        """The ``identities`` table of this file (a restart knows every user it
        provisioned; processes sharing the file share it)."""
        return SQLiteIdentityStore(self._locked)

    # -- lifecycle ---------------------------------------------------------------------

    def after_fork(self) -> None:
        if self._writer is not None:
            _INHERITED.append(self._writer)
        self._reset()

    def close(self) -> None:
        with self._books, self._lock:
            if self._writer is not None:
                with suppress(sqlite3.Error):  # what is unfinished keeps its rows
                    self._write_settled(self._writer, persist_before=float("inf"))
                with suppress(sqlite3.Error):
                    self._writer.close()
            self._writer = None


def _pid_running(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) process on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _chunks(ids: Sequence[int]) -> Iterator[list[int]]:
    """``ids`` in statements of at most ``_MAX_IDS``, each padded (with its last id) to
    a power of two: a handful of prepared statements serve every size."""
    for start in range(0, len(ids), _MAX_IDS):
        yield _padded(list(ids[start:start + _MAX_IDS]))


T = TypeVar("T")


def _padded(items: list[T]) -> list[T]:
    """``items`` with its last one repeated up to a power of two in length."""
    size = 1
    while size < len(items):
        size *= 2
    return items + items[-1:] * (size - len(items))


@functools.lru_cache(maxsize=32)
def _where_id_in(statement: str, count: int) -> str:
    return f"{statement} WHERE id IN ({', '.join(['?'] * count)})"


@functools.lru_cache(maxsize=16)
def _insert_deliveries(rows: int) -> str:
    return "INSERT OR IGNORE INTO deliveries (event_id, destination, owner) VALUES " + \
        ", ".join(["(?, ?, ?)"] * rows)


@functools.lru_cache(maxsize=16)
def _insert_events(rows: int) -> str:
    """One INSERT for ``rows`` events (one prepared statement per row count, kept in
    the connection's statement cache)."""
    return "INSERT INTO events (owner, body, created) VALUES " + ", ".join(
        ["(?, ?, ?)"] * rows)


# One encoder for every row: ``json.dumps`` with options builds a new one per call,
# a third of the encoding's cost for an event (it runs on the request path).
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str)


def _body(item: Payload) -> str:
    """An event as stored: compact canonical JSON."""
    return _ENCODER.encode(item.to_dict() if isinstance(item, Event) else item)
