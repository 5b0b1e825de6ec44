"""An outbox on Redis Streams, shared by a fleet: web processes append events, and
``cdptrack worker`` processes (any number, on any host) render and send them.

**Roles.**  ``role=producer`` (the default for ``CDPTRACK_OUTBOX=redis://...``): the
process only appends; its ``Tracker`` starts no consumer and sends nothing, and
``flush()`` means "Redis has every event this process accepted".  ``role=worker``
(what ``cdptrack worker`` uses; ``?role=worker`` makes every app process a worker too):
the process also joins the consumer groups and sends.

**Keys** (``prefix`` defaults to ``cdptrack``; the ``{...}`` hash tag keeps every key of
one outbox in one Redis Cluster slot, so the Lua scripts below may touch several):

* ``{prefix}:events``: stream of accepted events, field ``e`` = canonical JSON.  Consumer
  group ``workers``: each entry goes to one worker, which renders it and, in one atomic
  script per round of events, adds one delivery per destination and acknowledges and
  deletes the event.
* ``{prefix}:d:<destination>``: stream of deliveries for one destination (field ``e`` =
  canonical JSON, ``o`` = the message ids to replay, ``r`` = a tag of the process that
  routed it, which reads it back as an id only), group ``workers``.  A delivery is
  acknowledged and deleted when that destination has it (sent or dead-lettered), so
  ``XLEN`` of a stream is exactly its unfinished work, and a dead API only grows its
  own stream.
* ``{prefix}:dead`` (+ ``{prefix}:dead:seq``): stream of dead letters (field ``l`` = the
  letter as JSON, response scrubbed, request redacted) with ids ``<n>-1``, so
  ``DeadLetter.id`` is the integer ``n``.  Kept to the newest ``dead_maxlen``
  (``MAXLEN ~``); ``cdptrack replay`` moves a letter back into its destination stream.

Credentials are never written to Redis: a worker renders each delivery from the
canonical event with its own configuration.

**Staging: one round trip per burst, off the request path.**  Once the process's sender
thread runs, ``put`` (and ``put_deferred``: a middleware's record, built into events in
the sender thread) only appends to an in-process list, and the sender moves each burst
to Redis in one script call, at most about 20 ms later (``flush()`` waits for
it).  The trade-off: an event is in Redis a few milliseconds after ``capture`` returned,
not before, so a process killed in that window loses it (a graceful stop moves it).
Before the sender starts, and in a forked child until its own sender starts, ``put``
writes through (one round trip per event).

**A worker's round trips: per round, never per event.**  Routing a round of events (up
to 256) is one script call, and that call also takes the new deliveries for this
worker's lanes (``XREADGROUP`` inside the script; per destination what a lane starts at
once plus what it finished since the last take, see ``TAKE_AHEAD``), so the lanes need
no read of their own while the worker keeps up.  A lane reads Redis only when unread
entries may be there (the script did not take them all, or the worker's waker saw
another worker or a replay add some).  Finished deliveries are settled in one script
call per burst (``SETTLE_EVERY``, 20 ms, or ``SETTLE_BATCH``): a worker killed in that
window has them sent again by the worker that takes them over (at least once, same
message ids).

**Guarantees.** Once an event is in Redis it is delivered at least once per destination
even if workers die: a worker keeps its in-flight entries fresh (``XCLAIM ... JUSTID``
about every ``claim_idle / 4`` seconds), and entries idle for ``claim_idle`` seconds
(their worker was killed or hung) are taken over by another worker (``XAUTOCLAIM``).
Retries and duplicates after a takeover carry the same ``message_id``. Under normal
operation each event reaches each destination once: routing and settling acknowledge
first and skip their writes when another worker already did the work. A worker that
stops gracefully hands its unfinished entries back to the group at once.

**Poison entries.**  An entry that crashes (or hangs) every worker that takes it would
be taken over forever, killing one worker after another.  Redis counts how often each
entry was handed out (``XPENDING``'s delivery count; a graceful hand-back does not
count); when a takeover finds an entry handed out more than ``max_deliveries`` times
(default 5), it is not handed out again but moved to the dead letters with reason
``too_many_deliveries`` (see :meth:`RedisOutbox.poisoned`).  A delivery's letter names
its destination; an event that was never routed gets one letter with destination
``*``, which ``replay`` puts back into the events stream.

**Bounds.**  Each stream holds at most ``maxlen`` unfinished entries (default 100 000):
when the events stream is full ``put`` refuses (the ``Tracker`` counts
``dropped:queue_full``); when a destination's stream is full that destination drops the
event (``queue_full``), the others still get it.  Nothing is trimmed silently except the
oldest dead letters beyond ``dead_maxlen``.

**Redis down.**  ``put`` never raises and never waits long (connect timeout 0.25 s,
command timeout 1 s, one immediate reconnect, no retry loop): it keeps up to
``buffer`` events (default ``max_queue``) in memory, tries Redis again with a backoff
(0.25 s doubling to 5 s) instead of on every request, and the sender thread moves the
buffer to Redis when it answers again.  When the buffer is full, ``put`` refuses and the
drop is counted here under ``outbox_unavailable`` (see :meth:`RedisOutbox.drops`).
Buffered events are lost if the process exits before Redis comes back (counted and
logged).  Log lines and ``url`` never show the password.

URL: ``redis://[:password@]host:port/db?prefix=cdptrack&role=producer&maxlen=100000
&claim_idle=30&buffer=10000&dead_maxlen=10000&max_deliveries=5`` (``rediss://`` and
``unix://`` too);
other query options (``socket_timeout``, ``socket_connect_timeout``, ...) go to redis-py.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import re
import socket
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..config import ConfigError
from ..destinations.base import WireRequest
from ..events import Event
from .deferred import DeferredBuild, run_build
from .identity_store import IdentityStore, RedisIdentityStore
from .outbox import DeadLetter, Delivery, Outbox, Payload, Routing

logger = logging.getLogger("cdptrack")

GROUP = "workers"
ROLES = ("producer", "worker")
DEFAULT_MAXLEN = 100_000
DEFAULT_DEAD_MAXLEN = 10_000
DEFAULT_CLAIM_IDLE = 30.0
DEFAULT_MAX_DELIVERIES = 5
POISON_REASON = "too_many_deliveries"
EVERY_DESTINATION = "*"  # a dead letter for an event that was never routed
BACKOFF_FIRST, BACKOFF_MAX = 0.25, 5.0
MAX_UNREADABLE_CHARS = 2000
# Finished deliveries are settled together: at most this long after the first of them,
# or as soon as this many wait (a crash in between sends them again, same message ids).
SETTLE_EVERY = 0.02
SETTLE_BATCH = 512
# Deliveries per destination a worker takes from Redis ahead of its lanes, when routing
# (the script that adds them takes them for this worker at once) and when reading: what
# a lane starts at once (4 workers x 4), plus as many as the lane finished since the
# last take (what it keeps up with), at most TAKE_AHEAD_MAX.  Taking more would leave
# other workers of the fleet idle while this one holds work it has not started.
TAKE_AHEAD = 16
TAKE_AHEAD_MAX = 256
RELEASED_IDLE_MS = 10**11  # "idle for years": any worker's XAUTOCLAIM takes it at once
OUR_OPTIONS = {"prefix", "role", "maxlen", "claim_idle", "buffer", "dead_maxlen",
               "max_deliveries"}
_PREFIX_OK = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_HOST = socket.gethostname()

# Scripts take many small values joined into one argument each (ids with ",", lists of
# them with ";", compact JSON bodies, which never hold a raw newline, with "\n") and
# answer likewise: redis-py's cost is per argument and per element of an answer.

# KEYS[1] events; ARGV[1] maxlen, ARGV[2] events as JSON, one a line.  How many were
# appended: the first n, in order (the others found the stream full).
PUT = """
local room = tonumber(ARGV[1]) - redis.call('XLEN', KEYS[1])
local text, pos, n = ARGV[2], 1, 0
while n < room and pos <= #text do
  local stop = string.find(text, '\\n', pos, true) or (#text + 1)
  redis.call('XADD', KEYS[1], '*', 'e', string.sub(text, pos, stop - 1))
  n = n + 1
  pos = stop + 1
end
return n
"""

# KEYS[1] events, KEYS[2..] destination streams; ARGV[1] group, ARGV[2] maxlen, ARGV[3]
# this consumer, ARGV[4] this process's tag (written with each delivery, see READ), then
# per destination stream (KEYS[k] -> ARGV[k + 3]) how many of its entries this worker
# takes ahead, then the round's events: their entry ids, their destinations (KEYS
# indexes, "2,3,5" per event), their JSON.  Returns {per event, ";"-joined: "0" when
# another worker routed it already, else its new entry ids, one per destination (""
# when that stream was full); per destination stream the entries taken (XREADGROUP) in
# READ's form}.
ROUTE = """
local group, maxlen, consumer, tag = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local entries, dests, bodies = ARGV[#KEYS + 4], ARGV[#KEYS + 5], ARGV[#KEYS + 6]
local room, out = {}, {}
local dpos, bpos = 1, 1
for entry in string.gmatch(entries, '[^,]+') do
  local dstop = string.find(dests, ';', dpos, true) or (#dests + 1)
  local dlist = string.sub(dests, dpos, dstop - 1)
  dpos = dstop + 1
  local bstop = string.find(bodies, '\\n', bpos, true) or (#bodies + 1)
  local body = string.sub(bodies, bpos, bstop - 1)
  bpos = bstop + 1
  if redis.call('XACK', KEYS[1], group, entry) == 0 then
    out[#out + 1] = '0'
  else
    redis.call('XDEL', KEYS[1], entry)
    local ids = {}
    for d in string.gmatch(dlist, '%d+') do
      local k = tonumber(d)
      if room[k] == nil then room[k] = maxlen - redis.call('XLEN', KEYS[k]) end
      if room[k] > 0 then
        ids[#ids + 1] = redis.call('XADD', KEYS[k], '*', 'e', body, 'r', tag)
        room[k] = room[k] - 1
      else
        ids[#ids + 1] = ''
      end
    end
    out[#out + 1] = table.concat(ids, ',')
  end
end
local taken = {}
for k = 2, #KEYS do
  local want = tonumber(ARGV[k + 3])
  local got = {''}
  if want > 0 then
    local args = {'XREADGROUP', 'GROUP', group, consumer, 'COUNT', want, 'STREAMS', KEYS[k], '>'}
    local reply = redis.pcall(unpack(args))
    if type(reply) == 'table' and reply.err then
      redis.pcall('XGROUP', 'CREATE', KEYS[k], group, '0', 'MKSTREAM')
      reply = redis.call(unpack(args))
    end
    local ids = {}
    if reply then
      for _, e in ipairs(reply[1][2]) do
        local f, mine = e[2], false
        for j = 1, #f - 1, 2 do
          if f[j] == 'r' and f[j + 1] == tag then mine = true end
        end
        ids[#ids + 1] = e[1]
        if not mine then got[#got + 1] = e[1]; got[#got + 1] = f end
      end
    end
    got[1] = table.concat(ids, ',')
  end
  taken[k - 1] = got
end
return {table.concat(out, ';'), taken}
"""

# KEYS[1] a stream; ARGV[1] group, ARGV[2] consumer, ARGV[3] count, ARGV[4] this
# process's tag.  XREADGROUP, answered as {the entry ids, ","-joined; then id, fields
# for each entry this process did not route}.  An entry this process routed (field r =
# the tag) is only its id: its worker has the event in memory, so its body need not
# come back over the wire.
READ = """
local args = {'XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3], 'STREAMS', KEYS[1], '>'}
local reply = redis.pcall(unpack(args))
if type(reply) == 'table' and reply.err then
  redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
  reply = redis.call(unpack(args))
end
local ids, out = {}, {''}
if reply then
  for _, e in ipairs(reply[1][2]) do
    local f, mine = e[2], false
    for j = 1, #f - 1, 2 do
      if f[j] == 'r' and f[j + 1] == ARGV[4] then mine = true end
    end
    ids[#ids + 1] = e[1]
    if not mine then out[#out + 1] = e[1]; out[#out + 1] = f end
  end
end
out[1] = table.concat(ids, ',')
return out
"""

# KEYS[1] dead stream, KEYS[2] dead id sequence, KEYS[3..] destination streams; ARGV[1]
# group, ARGV[2] dead maxlen, ARGV[3] how many streams' plain deliveries follow, each:
# the KEYS index of its stream, its entry ids ","-joined; then per delivery with dead
# letters: its KEYS index, its entry id ('' for letters without one), how many letters
# n, and n letters as JSON.  Per delivery with letters: 1, or 0 when another worker
# settled it already (its letters are skipped).
SETTLE = """
local i = 4
for _ = 1, tonumber(ARGV[3]) do
  local stream = KEYS[tonumber(ARGV[i])]
  for entry in string.gmatch(ARGV[i + 1], '[^,]+') do
    if redis.call('XACK', stream, ARGV[1], entry) == 1 then
      redis.call('XDEL', stream, entry)
    end
  end
  i = i + 2
end
local out = {}
while i <= #ARGV do
  local stream, entry, n = KEYS[tonumber(ARGV[i])], ARGV[i + 1], tonumber(ARGV[i + 2])
  local done = 1
  if entry ~= '' then
    if redis.call('XACK', stream, ARGV[1], entry) == 0 then
      done = 0
    else
      redis.call('XDEL', stream, entry)
    end
  end
  if done == 1 then
    for j = i + 3, i + 2 + n do
      local seq = redis.call('INCR', KEYS[2])
      local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
      if #last > 0 then
        local top = tonumber(string.match(last[1][1], '^(%d+)'))
        if top >= seq then seq = top + 1; redis.call('SET', KEYS[2], seq) end
      end
      redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], seq .. '-1', 'l', ARGV[j])
    end
  end
  out[#out + 1] = done
  i = i + 3 + n
end
return out
"""

# KEYS[1] dead stream, KEYS[2] destination stream; ARGV[1] dead entry id, ARGV[2] event
# JSON, ARGV[3] only-ids JSON.  nil: someone else replayed it meanwhile.
REQUEUE = """
if redis.call('XDEL', KEYS[1], ARGV[1]) == 0 then return false end
return redis.call('XADD', KEYS[2], '*', 'e', ARGV[2], 'o', ARGV[3])
"""

# KEYS[1] stream; ARGV[1] group, ARGV[2] consumer, ARGV[3] idle ms to set, ARGV[4..] ids.
# Touch entries still owned by this consumer: idle 0 keeps them (heartbeat), a huge
# idle hands them to the next XAUTOCLAIM (release).  Never takes another's entry.  JUSTID
# leaves the delivery count alone; a release takes one off, so that the takeover that
# follows a graceful hand-back is not counted against the entry (only crashes are).
TOUCH = """
local n = 0
for i = 4, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if #p > 0 then
    if ARGV[3] == '0' then
      redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'IDLE', 0, 'JUSTID')
    else
      local count = math.max(tonumber(p[1][4]) - 1, 0)
      redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'IDLE', ARGV[3],
                 'RETRYCOUNT', count, 'JUSTID')
    end
    n = n + 1
  end
end
return n
"""


def _import_redis() -> Any:
    try:
        import redis
    except ImportError as error:
        raise ConfigError(
            "outbox: a Redis outbox needs the redis client: pip install 'cdptrack[redis]'"
        ) from error
    return redis


def redact_url(url: str) -> str:
    """The URL with its password replaced, safe for logs and reprs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


class RedisOutbox(Outbox):
    durable = True

    def __init__(self, url: str, *, prefix: str = "cdptrack", role: str = "producer",
                 maxlen: int = DEFAULT_MAXLEN, claim_idle: float = DEFAULT_CLAIM_IDLE,
                 buffer: int = 10_000, dead_maxlen: int = DEFAULT_DEAD_MAXLEN,
                 max_deliveries: int = DEFAULT_MAX_DELIVERIES,
                 redis_options: Mapping[str, Any] | None = None) -> None:
        """``url`` is the connection URL without this module's options (see
        :meth:`from_url`, which parses them)."""
        if not _PREFIX_OK.match(prefix):
            raise ConfigError("outbox: prefix must be 1-64 characters of A-Z a-z 0-9 _ . : -")
        if role not in ROLES:
            raise ConfigError(f"outbox: role must be 'producer' or 'worker', not {role!r}")
        if maxlen < 1 or buffer < 0 or dead_maxlen < 1 or claim_idle <= 0:
            raise ConfigError("outbox: maxlen, dead_maxlen and claim_idle must be positive")
        if max_deliveries < 1:
            raise ConfigError("outbox: max_deliveries must be at least 1")
        self._redis = _import_redis()
        self._conn_url = url
        self._password = urlsplit(url).password or ""
        self.url = redact_url(url)
        self.prefix = prefix
        self.role = role
        self.maxlen = maxlen
        self.claim_idle = claim_idle
        self.buffer_max = buffer
        self.dead_maxlen = dead_maxlen
        self.max_deliveries = max_deliveries
        self._options = dict(redis_options or {})
        tag = "{" + prefix + "}"
        self.events_key = f"{tag}:events"
        self.dead_key = f"{tag}:dead"
        self._dead_seq_key = f"{tag}:dead:seq"
        self._dest_prefix = f"{tag}:d:"
        self._reset()

    @classmethod
    def from_url(cls, url: str, *, max_queue: int = 10_000, role: str | None = None,
                 claim_idle: float | None = None) -> RedisOutbox:
        """Parse ``redis://host:port/db?prefix=...&role=...`` (see the module docstring).
        ``role`` / ``claim_idle`` given here win over the URL's."""
        text = url.strip()
        if not text.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(f"outbox: expected redis://host:port/db, got {redact_url(text)!r}")
        parts = urlsplit(text)
        ours: dict[str, str] = {}
        theirs: list[tuple[str, str]] = []
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            if name in OUR_OPTIONS:
                ours[name] = value
            else:
                theirs.append((name, value))
        conn_url = urlunsplit(parts._replace(query=urlencode(theirs)))
        try:
            return cls(
                conn_url,
                prefix=ours.get("prefix", "cdptrack"),
                role=role or ours.get("role", "producer"),
                maxlen=int(ours.get("maxlen", DEFAULT_MAXLEN)),
                claim_idle=(claim_idle if claim_idle is not None
                            else float(ours.get("claim_idle", DEFAULT_CLAIM_IDLE))),
                buffer=int(ours.get("buffer", max_queue)),
                dead_maxlen=int(ours.get("dead_maxlen", DEFAULT_DEAD_MAXLEN)),
                max_deliveries=int(ours.get("max_deliveries", DEFAULT_MAX_DELIVERIES)),
            )
        except ValueError as error:
            if isinstance(error, ConfigError):
                raise
            raise ConfigError(f"outbox: bad option in {redact_url(text)!r}: {error}") from None

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._connect_lock = threading.Lock()
        self._client_obj: Any = None
        self._scripts: dict[str, Any] = {}
        self.consumer = f"{_HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._tag = uuid.uuid4().hex[:8]  # on the deliveries this process routes
        # capture side
        self._last = 0
        # Staged (and, while Redis is down, buffered) events: the JSON text, or while
        # staging the event or deferred build itself, encoded in the sender thread.
        self._buffer: deque[tuple[int, Payload | str | DeferredBuild]] = deque()
        # Once this process's sender thread runs (start()), put() only stages and the
        # sender appends each burst with one pipelined round trip.  Before that (and in
        # a forked child until its sender starts) put() writes through.
        self._staging = False
        self.accepts_deferred = False
        self._refused: dict[str, int] = {}  # staged, then refused: for the sender to count
        self._moved = False  # staged events went to Redis since took_staged()
        # key -> (stream, entry id)
        self._requeued: OrderedDict[int, tuple[str, str]] = OrderedDict()
        self._checked = 0.0
        self._drops: dict[str, int] = {}
        self._poisoned: dict[str, int] = {}  # destination -> entries dead-lettered
        # availability (shared by both sides)
        self._retry_at = 0.0
        self._backoff = BACKOFF_FIRST
        self._down_since: float | None = None
        # sender side (the sender thread only)
        self._keys = itertools.count(1)
        self._taken: dict[int, str] = {}  # event key -> events entry id
        self._handed: dict[int, tuple[str, str]] = {}  # delivery key -> (dest, entry id)
        # Per stream, entries this consumer holds in Redis (pending on it) and has not
        # handed out yet: taken over from stopped workers, or taken ahead while routing
        # (see TAKE_AHEAD) or reading.
        self._waiting: dict[str, deque[tuple[str, dict[str, str]]]] = {}
        # (destination, entry id) -> the event of a waiting entry this worker routed
        # itself, and its rendered requests (None: the lane renders).
        self._ahead: dict[tuple[str, str], tuple[Event, list[WireRequest] | None]] = {}
        # Per stream: whether entries no consumer has read yet may be in it (then a lane
        # out of waiting entries reads; else it sleeps without asking Redis).
        self._more: dict[str, bool] = {}
        # Per destination stream, deliveries settled since this worker last took some
        # (see TAKE_AHEAD).
        self._finished: dict[str, int] = {}
        # Per destination stream, the newest entry this worker added (the waker ignores
        # its own entries, see notice()).
        self._own_last: dict[str, tuple[int, int]] = {}
        # Finished deliveries not settled in Redis yet: (destination, entry, letters).
        self._unsettled: list[tuple[str, str, list[str]]] = []
        self._settle_timer: asyncio.TimerHandle | None = None
        # (destination, entry id) -> the routed event and its rendered requests, so this
        # worker's lane neither decodes and validates the entry again nor renders it.
        self._rendered: OrderedDict[tuple[str, str],
                                    tuple[Event, list[WireRequest] | None]] = (
            OrderedDict())
        self._groups: set[str] = set()
        self._cursors: dict[str, str] = {}
        self._next_touch = 0.0
        self._next_claim = 0.0
        self._next_cleanup = 0.0
        self._taking = True

    # -- connection ----------------------------------------------------------------------

    def _client(self) -> Any:
        client = self._client_obj
        if client is not None:
            return client
        with self._connect_lock:
            return self._connect()

    def _connect(self) -> Any:
        client = self._client_obj
        if client is None:
            redis = self._redis
            options: dict[str, Any] = {
                "socket_connect_timeout": 0.25, "socket_timeout": 1.0,
                "decode_responses": True,
                # One immediate retry (a pooled connection gone stale after a Redis
                # restart); redis-py's default retries with sleeps would block capture.
                "retry": redis.retry.Retry(redis.backoff.NoBackoff(), 1),
                "client_name": f"cdptrack-{self.role}",
                **self._options,
            }
            client = redis.Redis.from_url(self._conn_url, **options)
            self._client_obj = client
            self._scripts = {name: client.register_script(text) for name, text in (
                ("put", PUT), ("route", ROUTE), ("read", READ), ("settle", SETTLE),
                ("requeue", REQUEUE), ("touch", TOUCH))}
        return client

    def blocking_client(self, timeout: float) -> Any:
        """A separate client for blocking reads (``XREAD BLOCK``), so that they never
        hold a connection the outbox needs."""
        redis = self._redis
        options = {"socket_connect_timeout": 1.0, "socket_timeout": timeout,
                   "decode_responses": True, "client_name": "cdptrack-waker",
                   **self._options}
        return redis.Redis.from_url(self._conn_url, **options)

    def stream_keys(self, destinations: Iterable[str]) -> list[str]:
        """The events stream and the given destinations' delivery streams."""
        return [self.events_key, *map(self._dest_key, destinations)]

    def _run_script(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """One script call, by SHA (``EVALSHA``: redis-py's ``Script`` objects ask
        ``SCRIPT EXISTS`` first in pipelines, a second round trip).  A Redis that lost
        its script cache (a restart) answers ``NOSCRIPT`` without running anything: the
        script is loaded and the call sent once more."""
        client = self._client()
        script = self._scripts[name]
        try:
            return client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        except _import_redis().exceptions.NoScriptError:
            client.script_load(script.script)
            return client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)

    def _settle_call(self, work: Sequence[tuple[str, str, Sequence[str]]]
                     ) -> tuple[list[str], list[Any]]:
        """Keys and arguments of one ``SETTLE`` call for ``(stream, entry id, dead
        letters)`` items; its answer has one 0/1 per item with letters, in order."""
        keys = [self.dead_key, self._dead_seq_key]
        index: dict[str, int] = {}
        plain: dict[int, list[str]] = {}
        lettered: list[Any] = []
        for stream, entry, texts in work:
            k = index.get(stream)
            if k is None:
                keys.append(stream)
                k = index[stream] = len(keys)
            if texts or not entry:
                lettered += [k, entry, len(texts), *texts]
            else:
                plain.setdefault(k, []).append(entry)
        args: list[Any] = [GROUP, self.dead_maxlen, len(plain)]
        for k, entries in plain.items():
            args += [k, ",".join(entries)]
        return keys, args + lettered

    def _script(self, name: str) -> Any:
        self._client()
        return self._scripts[name]

    def _available(self) -> bool:
        return time.monotonic() >= self._retry_at

    def _failed(self, error: BaseException, doing: str) -> None:
        """Redis did not answer: back off (no caller retries before ``_retry_at``)."""
        now = time.monotonic()
        self._retry_at = now + self._backoff
        self._backoff = min(self._backoff * 2, BACKOFF_MAX)
        if self._down_since is None:
            self._down_since = now
            logger.warning("cdptrack: Redis outbox %s unavailable while %s (%s); "
                           "keeping up to %d new events in memory meanwhile",
                           self.url, doing, self.scrub(error), self.buffer_max)

    def _answered(self) -> None:
        if self._down_since is not None:
            logger.warning("cdptrack: Redis outbox %s answers again (down %.1fs)",
                           self.url, time.monotonic() - self._down_since)
            self._down_since = None
        self._backoff = BACKOFF_FIRST
        self._retry_at = 0.0

    def scrub(self, error: BaseException) -> str:
        """An error as text, without the Redis password."""
        text = f"{type(error).__name__}: {error}"
        return text.replace(self._password, "***") if self._password else text

    def _errors(self) -> tuple[type[Exception], ...]:
        return (self._redis.RedisError, OSError)

    # -- capture side --------------------------------------------------------------------

    def put(self, item: Payload) -> bool:
        item = _with_id(item)  # fixed now: every copy (a retry, a takeover) has one id
        if self._staging:
            return self._stage(item)
        body = _body(item)
        if not self._buffer and self._available():
            try:
                added = self._run_script("put", [self.events_key], [self.maxlen, body])
            except self._errors() as error:
                self._failed(error, "accepting an event")
            else:
                self._answered()
                if not added:
                    return False  # full: the Tracker counts dropped:queue_full
                with self._lock:
                    self._last += 1
                return True
        return self._stage(body)

    def put_deferred(self, job: DeferredBuild) -> bool:
        """Only while staging (``accepts_deferred``): the job is built in the sender
        thread, its events appended to Redis with the next burst."""
        return self._stage(job)

    def _stage(self, item: Payload | str | DeferredBuild) -> bool:
        with self._lock:
            if len(self._buffer) >= self.buffer_max:
                self._drops["outbox_unavailable"] = self._drops.get("outbox_unavailable",
                                                                    0) + 1
                return False
            self._last += 1
            self._buffer.append((self._last, item))
            return True

    def take_refusals(self) -> dict[str, int]:
        with self._lock:
            refused, self._refused = self._refused, {}
        return refused

    def took_staged(self) -> bool:
        moved, self._moved = self._moved, False
        return moved

    def drops(self) -> dict[str, int]:
        """Events this outbox refused or lost, by reason (``outbox_unavailable``)."""
        with self._lock:
            return dict(self._drops)

    def last_key(self) -> int:
        return self._last

    def min_open_key(self) -> int | None:
        self._prune_requeued()
        with self._lock:
            candidates = [k for k in (
                self._buffer[0][0] if self._buffer else None,
                next(iter(self._requeued), None)) if k is not None]
        return min(candidates) if candidates else None

    def open_count(self) -> int:
        self._prune_requeued()
        with self._lock:
            return len(self._buffer) + len(self._requeued)

    def _prune_requeued(self) -> None:
        """Replayed dead letters are open until some worker settled their entry."""
        if not self._requeued or time.monotonic() - self._checked < 0.02:
            return
        with self._lock:
            first = list(itertools.islice(self._requeued.items(), 100))
        try:
            pipe = self._client().pipeline(transaction=False)
            for _, (stream, entry) in first:
                pipe.xrange(stream, entry, entry)
            found = pipe.execute()
        except self._errors():
            return
        self._checked = time.monotonic()
        with self._lock:
            for (key, _), rows in zip(first, found, strict=True):
                if rows:
                    break
                self._requeued.pop(key, None)

    # -- sender side ---------------------------------------------------------------------

    def _dest_key(self, destination: str) -> str:
        return self._dest_prefix + destination

    def start(self) -> None:
        self._staging = True
        self.accepts_deferred = True  # deferred builds are built in the sender thread
        if self.role == "worker":
            try:
                self._ensure_group(self.events_key)
            except self._errors() as error:  # made later, on the first read
                self._failed(error, "starting")
            self._tick(force=True)

    def maintain(self) -> bool:
        """Periodic upkeep; also a safety net for a notice the waker missed: every lane
        looks in Redis once."""
        if self.role == "worker":
            for stream in self._groups:
                self._more[stream] = True
        return self._tick(force=True) or self.role == "worker"

    def stop_taking(self) -> None:
        """Graceful stop, step one: hand out nothing more (in-flight work finishes)."""
        self._taking = False

    def taking(self) -> bool:
        return self._taking

    def in_flight(self) -> int:
        """Entries this worker holds: handed to lanes, taken, or waiting to settle."""
        return len(self._handed) + len(self._taken) + len(self._unsettled)

    def take_new(self, limit: int) -> list[tuple[int, Payload | str]]:
        self._tick()
        if self.role != "worker" or not self._taking or not self._available():
            return []
        waiting = self._waiting.setdefault(self.events_key, deque())
        if len(waiting) < limit:
            waiting.extend(self._read(self.events_key, limit - len(waiting)))
        out: list[tuple[int, Payload | str]] = []
        while waiting and len(out) < limit:
            entry, fields = waiting.popleft()
            key = next(self._keys)
            self._taken[key] = entry
            out.append((key, fields.get("e", "")))
        return out

    def _read(self, stream: str, count: int) -> list[tuple[str, dict[str, str]]]:
        """Up to ``count`` entries no consumer of the group has read yet, now this
        worker's (``XREADGROUP``); ``_more[stream]`` says whether more may wait."""
        try:
            self._ensure_group(stream)
            # A delivery this process routed comes back without its body ({}).
            out = _read_answer(self._run_script("read", [stream],
                                                [GROUP, self.consumer, count, self._tag]))
        except self._errors() as error:
            self._failed(error, "reading work")
            return []
        self._answered()
        self._more[stream] = len(out) >= count
        return out

    def _ensure_group(self, stream: str) -> None:
        if stream in self._groups:
            return
        try:
            self._client().xgroup_create(stream, GROUP, id="0", mkstream=True)
        except self._redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
        self._groups.add(stream)
        self._next_claim = 0.0  # look for a stopped worker's entries in it right away

    def route(self, routings: Sequence[Routing]) -> list[tuple[int, str]]:
        """One script call for the whole round: acknowledge and delete each event, add
        its deliveries, and take them for this worker's lanes (as many as each lane
        keeps up with, see ``TAKE_AHEAD``), which then need no read of their own."""
        refused: list[tuple[int, str]] = []
        calls: list[tuple[Routing, list[str]]] = []
        names: list[str] = []
        index: dict[str, int] = {}
        entries: list[str] = []
        dests: list[str] = []
        bodies: list[str] = []
        try:
            for routing in routings:
                entry = self._taken.get(routing.key)
                if entry is None:
                    continue
                destinations = list(routing.requests) if routing.event is not None else []
                body = (json.dumps(routing.event.to_dict(), separators=(",", ":"),
                                   ensure_ascii=False, default=str)
                        if routing.event is not None and destinations else "")
                ks: list[str] = []
                for name in destinations:
                    k = index.get(name)
                    if k is None:
                        names.append(name)
                        k = index[name] = len(names) + 1  # KEYS[1] is the events stream
                    ks.append(str(k))
                entries.append(entry)
                dests.append(",".join(ks))
                bodies.append(body)
                calls.append((routing, destinations))
            if not calls:
                return []
            streams = [self._dest_key(name) for name in names]
            for stream in streams:
                self._ensure_group(stream)  # once per process: takeover and backlog know it
            wanted = [self._appetite(stream) if self._taking else 0 for stream in streams]
            results = self._run_script("route", [self.events_key, *streams],
                                       [GROUP, self.maxlen, self.consumer, self._tag,
                                        *wanted, ",".join(entries), ";".join(dests),
                                        "\n".join(bodies)])
        except self._errors() as error:
            # Left pending on us and no longer refreshed: taken over after claim_idle.
            for routing in routings:
                self._taken.pop(routing.key, None)
            self._failed(error, "routing events")
            return []
        self._answered()
        added_by_event, taken = str(results[0]).split(";"), results[1]
        new: dict[tuple[str, str], tuple[Event, list[WireRequest] | None]] = {}
        last: dict[str, str] = {}
        for (routing, destinations), added in zip(calls, added_by_event, strict=True):
            self._taken.pop(routing.key, None)
            event = routing.event
            if added == "0" or event is None or not destinations:
                continue  # routed by another worker after a takeover, or invalid
            for name, entry in zip(destinations, added.split(","), strict=True):
                if not entry:
                    refused.append((routing.key, name))
                else:
                    new[(name, entry)] = (event, routing.requests[name])
                    last[name] = entry  # ids grow within a stream
        for name, entry in last.items():
            self._own_last[self._dest_key(name)] = _entry_order(entry)
        for name, stream, want, got in zip(names, streams, wanted, taken, strict=True):
            if want:
                self._finished[stream] = 0
            waiting = self._waiting.setdefault(stream, deque())
            read = _read_answer(got)
            for entry, fields in read:
                mine = None if fields else new.pop((name, entry), None)
                if mine is not None:
                    self._ahead[(name, entry)] = mine
                waiting.append((entry, fields))
            self._more[stream] = len(read) >= want
        for (name, entry), (event, requests) in new.items():  # left in Redis for now
            self._cache(name, entry, event, requests)
        return refused

    def _cache(self, destination: str, entry: str, event: Event,
               requests: list[WireRequest] | None) -> None:
        """The routed event and its rendered requests (None: the lane renders) in
        memory, so this worker's lane need not read, decode nor validate it again."""
        self._rendered[(destination, entry)] = (event, requests)
        while len(self._rendered) > 10_000:
            self._rendered.popitem(last=False)

    def next_for(self, destination: str, limit: int) -> list[Delivery]:
        """What waits for this worker first (taken ahead when routing, or taken over);
        Redis is asked only when unread entries may be there (``_more``), and then for
        as many at once as the lane keeps up with (see ``TAKE_AHEAD``)."""
        self._tick()
        if self.role != "worker" or not self._taking or not self._available():
            return []
        stream = self._dest_key(destination)
        waiting = self._waiting.setdefault(stream, deque())
        if len(waiting) < limit and self._more.get(stream, True):
            waiting.extend(self._read(stream, max(limit - len(waiting),
                                                  self._appetite(stream))))
            self._finished[stream] = 0
        out: list[Delivery] = []
        broken: list[Delivery] = []
        items = [waiting.popleft() for _ in range(min(limit, len(waiting)))]
        cache = [self._ahead.pop((destination, entry), None)
                 or self._rendered.pop((destination, entry), None) for entry, _ in items]
        missing = [entry for (entry, fields), cached in zip(items, cache, strict=True)
                   if not fields and cached is None]
        bodies = self._bodies(stream, missing) if missing else {}
        if bodies is None:  # Redis did not answer: handed out later
            for (entry, fields), cached in zip(reversed(items), reversed(cache), strict=True):
                waiting.appendleft((entry, fields))
                if cached is not None:
                    self._ahead[(destination, entry)] = cached
            return []
        for (entry, fields), cached in zip(items, cache, strict=True):
            fields = fields or bodies.get(entry, {})
            key = next(self._keys)
            self._handed[key] = (destination, entry)
            try:
                event = (cached[0] if cached is not None
                         else Event.from_dict(json.loads(fields.get("e", ""))))
                only = json.loads(fields["o"]) if fields.get("o") else None
            except ValueError:
                broken.append(Delivery(key, destination, Event(type="track", event="?")))
                continue
            out.append(Delivery(key, destination, event,
                                requests=cached[1] if cached is not None else None,
                                only=frozenset(only) if only else None))
        if broken:  # unreadable entries (written by something else): do not loop on them
            logger.warning("cdptrack: %d unreadable %s entries in %s dropped",
                           len(broken), destination, self.url)
            self.settle(broken)
        return out

    def _bodies(self, stream: str, entries: Sequence[str]
                ) -> dict[str, dict[str, str]] | None:
        """The fields of entries this process routed whose event it no longer has in
        memory (rare: its cache is bounded); an entry not found is left out (and then
        dropped as unreadable: it was deleted meanwhile); None when Redis did not
        answer."""
        try:
            pipe = self._client().pipeline(transaction=False)
            for entry in entries:
                pipe.xrange(stream, entry, entry)
            found = pipe.execute()
        except self._errors() as error:
            self._failed(error, "reading entries")
            return None
        return {rows[0][0]: rows[0][1] for rows in found if rows}

    def _appetite(self, stream: str) -> int:
        """How many more of ``stream``'s deliveries to take ahead now (see TAKE_AHEAD)."""
        want = min(TAKE_AHEAD_MAX, TAKE_AHEAD + self._finished.get(stream, 0))
        return max(0, want - len(self._waiting.get(stream, ())))

    def notice(self, stream: str, entry: str) -> bool:
        """The worker's waker saw ``entry`` added to ``stream``: True when that is work
        for this worker to look at (a new event, or a delivery another worker or a
        replay added); this worker's own deliveries, taken ahead when it routed them,
        are not."""
        if stream == self.events_key:
            return True
        last = self._own_last.get(stream)
        if last is not None and _entry_order(entry) <= last:
            return False
        self._more[stream] = True
        return True

    def settle(self, done: Sequence[Delivery], letters: Sequence[DeadLetter] = ()) -> None:
        by_event: dict[tuple[str, str], list[str]] = {}
        for letter in letters:
            text = json.dumps(_letter_dict(letter), ensure_ascii=False, default=str)
            by_event.setdefault((letter.destination, str(letter.event.get("message_id"))),
                                []).append(text)
        work: list[tuple[str, str, list[str]]] = []
        finished = self._finished
        for delivery in done:
            place = self._handed.pop(delivery.key, None)
            if place is None:
                continue
            stream = self._dest_key(place[0])
            finished[stream] = finished.get(stream, 0) + 1
            texts = by_event.pop((delivery.destination, delivery.event.message_id), [])
            work.append((place[0], place[1], texts))
        for (destination, _), texts in by_event.items():  # letters matching no delivery
            work.append((destination, "", texts))
        self._unsettled.extend(work)
        if len(self._unsettled) >= SETTLE_BATCH:
            self._settle_pending()
        elif self._settle_timer is None and self._unsettled:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # not in the sender's loop (close, a test): at once
                self._settle_pending()
            else:
                self._settle_timer = loop.call_later(SETTLE_EVERY, self._settle_due)

    def _settle_due(self) -> None:
        self._settle_timer = None
        self._settle_pending()

    def _settle_pending(self) -> None:
        """Settle what finished, in one script call (see ``SETTLE``)."""
        if not self._unsettled or not self._available():
            return
        work, self._unsettled = self._unsettled, []
        try:
            self._run_script("settle", *self._settle_call(
                [(self._dest_key(destination), entry, texts)
                 for destination, entry, texts in work]))
        except self._errors() as error:
            self._unsettled = work + self._unsettled  # kept (and refreshed) for later
            self._failed(error, "settling deliveries")
            return
        self._answered()

    def release(self, deliveries: Iterable[Delivery]) -> None:
        places = [p for p in (self._handed.pop(d.key, None) for d in deliveries) if p]
        self._touch([(self._dest_key(dest), entry) for dest, entry in places],
                    RELEASED_IDLE_MS)

    def backlog(self) -> dict[str, int]:
        """Deliveries not yet read by any worker, per destination seen by this process."""
        names = [s[len(self._dest_prefix):] for s in self._groups
                 if s.startswith(self._dest_prefix)]
        try:
            pipe = self._client().pipeline(transaction=False)
            for name in names:
                pipe.xinfo_groups(self._dest_key(name))
            infos = pipe.execute()
        except self._errors():
            return {}
        out: dict[str, int] = {}
        for name, groups in zip(names, infos, strict=True):
            for group in groups:
                if group.get("name") == GROUP and group.get("lag"):
                    out[name] = int(group["lag"])
        return out

    def remaining(self, destinations: Iterable[str]) -> dict[str, int]:
        """Unfinished entries in Redis (new events, and deliveries per destination),
        over the whole fleet: entries are deleted when settled."""
        names = list(destinations)
        pipe = self._client().pipeline(transaction=False)
        pipe.xlen(self.events_key)
        for name in names:
            pipe.xlen(self._dest_key(name))
        counts = pipe.execute()
        return {"events": int(counts[0]),
                **{name: int(n) for name, n in zip(names, counts[1:], strict=True)}}

    def dead_count(self) -> int:
        """How many dead letters Redis keeps for this outbox (the whole fleet's)."""
        return int(self._client().xlen(self.dead_key))

    # -- upkeep: buffer, heartbeat, takeover ----------------------------------------------

    def _tick(self, force: bool = False) -> bool:
        """Upkeep, rate-limited; runs on every ``take_new`` (the dispatcher calls it at
        least once a second) so that its pace follows ``claim_idle``, not the sender's."""
        more = self._drain_buffer()
        if self._settle_timer is None:  # else settled when it fires
            self._settle_pending()
        if self.role != "worker" or not self._available():
            return more
        now = time.monotonic()
        if force or now >= self._next_touch:
            self._next_touch = now + max(0.1, self.claim_idle / 4)
            self._heartbeat()
        if self._taking and (force or now >= self._next_claim):
            self._next_claim = now + max(0.2, min(self.claim_idle / 2, 5.0))
            more = self._take_over() or more
        if force and now >= self._next_cleanup:
            self._next_cleanup = now + 60.0
            self._forget_idle_consumers()
        return more

    def _drain_buffer(self) -> bool:
        """Move staged events to Redis: one script call for up to 500."""
        if not self._buffer or not self._available():
            return False
        with self._lock:
            batch = list(itertools.islice(self._buffer, 500))
        bodies: list[str] = []
        invalid = 0
        for _, item in batch:
            if isinstance(item, DeferredBuild):
                built = run_build(item)
                if built is None:
                    invalid += 1
                    continue
                for one in built:
                    if isinstance(one, Event | Mapping):
                        bodies.append(_body(_with_id(one)))
                    else:
                        invalid += 1
            else:
                bodies.append(item if isinstance(item, str) else _body(item))
        try:
            added = (int(self._run_script("put", [self.events_key],
                                          [self.maxlen, "\n".join(bodies)]))
                     if bodies else 0)
        except self._errors() as error:
            self._failed(error, "moving buffered events")
            return False
        self._answered()
        full = len(bodies) - added
        self._moved = True
        with self._lock:
            for _ in batch:
                self._buffer.popleft()
            if full:
                self._drops["queue_full"] = self._drops.get("queue_full", 0) + full
                self._refused["queue_full"] = self._refused.get("queue_full", 0) + full
            if invalid:
                self._refused["invalid"] = self._refused.get("invalid", 0) + invalid
        if full:
            logger.warning("cdptrack: %d buffered events dropped: %s is full (maxlen %d)",
                           full, self.url, self.maxlen)
        return True

    def _heartbeat(self) -> None:
        held = [(self.events_key, entry) for entry in self._taken.values()]
        held += [(self._dest_key(dest), entry) for dest, entry in self._handed.values()]
        held += [(self._dest_key(dest), entry) for dest, entry, _ in self._unsettled if entry]
        held += [(stream, entry) for stream, waiting in self._waiting.items()
                 for entry, _ in waiting]
        self._touch(held, 0)

    def _touch(self, held: Sequence[tuple[str, str]], idle_ms: int) -> None:
        if not held:
            return
        by_stream: dict[str, list[str]] = {}
        for stream, entry in held:
            by_stream.setdefault(stream, []).append(entry)
        try:
            pipe = self._client().pipeline(transaction=False)
            script = self._script("touch")
            for stream, entries in by_stream.items():
                for start in range(0, len(entries), 500):
                    script(keys=[stream], client=pipe, args=[
                        GROUP, self.consumer, idle_ms, *entries[start:start + 500]])
            pipe.execute()
        except self._errors() as error:
            self._failed(error, "refreshing in-flight entries")

    def _take_over(self) -> bool:
        """XAUTOCLAIM entries idle longer than ``claim_idle`` (their worker died)."""
        streams = sorted(self._groups)
        if not streams:
            return False
        try:
            pipe = self._client().pipeline(transaction=False)
            for stream in streams:
                pipe.xautoclaim(stream, GROUP, self.consumer, int(self.claim_idle * 1000),
                                start_id=self._cursors.get(stream, "0-0"), count=100)
            replies = pipe.execute(raise_on_error=False)
        except self._errors() as error:
            self._failed(error, "taking over idle entries")
            return False
        claimed: list[tuple[str, str, dict[str, str]]] = []
        for stream, reply in zip(streams, replies, strict=True):
            if isinstance(reply, Exception):
                if "NOGROUP" in str(reply):
                    self._groups.discard(stream)
                continue
            cursor, entries = reply[0], reply[1]
            self._cursors[stream] = cursor
            claimed += [(stream, entry, fields) for entry, fields in entries if fields]
        if not claimed:
            return False
        poison = self._poison(claimed)
        taken: dict[str, list[tuple[str, dict[str, str]]]] = {}
        for stream, entry, fields in claimed:
            if (stream, entry) not in poison:
                taken.setdefault(stream, []).append((entry, fields))
        for stream, entries in taken.items():
            # Older than what this worker took ahead: handed out first.
            self._waiting.setdefault(stream, deque()).extendleft(reversed(entries))
            logger.info("cdptrack: took over %d idle entries of %s from a stopped worker",
                        len(entries), stream)
        return bool(taken)

    def _poison(self, claimed: Sequence[tuple[str, str, dict[str, str]]]
                ) -> set[tuple[str, str]]:
        """Of the entries just taken over, those handed out more than ``max_deliveries``
        times: moved to the dead letters (or, if Redis fails meanwhile, left pending on
        this worker, to be found again by the next takeover).  Never handed out."""
        try:
            pipe = self._client().pipeline(transaction=False)
            for stream, entry, _ in claimed:
                pipe.xpending_range(stream, GROUP, min=entry, max=entry, count=1)
            counts = pipe.execute()
        except self._errors() as error:
            self._failed(error, "reading delivery counts")
            return set()
        poison: list[tuple[str, str, dict[str, str], int]] = []
        for (stream, entry, fields), rows in zip(claimed, counts, strict=True):
            times = int(rows[0]["times_delivered"]) if rows else 0
            if times > self.max_deliveries:
                poison.append((stream, entry, fields, times))
        if not poison:
            return set()
        found = {(stream, entry) for stream, entry, _, _ in poison}
        work = [(stream, entry, [json.dumps(
                    _letter_dict(self._poison_letter(stream, fields, times)),
                    ensure_ascii=False, default=str)])
                for stream, entry, fields, times in poison]
        try:
            moved = self._run_script("settle", *self._settle_call(work))
        except self._errors() as error:
            self._failed(error, "dead-lettering entries handed out too often")
            return found
        for (stream, _, _, times), done in zip(poison, moved, strict=True):
            if not done:
                continue
            destination = self._destination_of(stream)
            with self._lock:
                self._poisoned[destination] = self._poisoned.get(destination, 0) + 1
            logger.warning("cdptrack: an entry of %s was handed out %d times and never "
                           "settled (it stops every worker that takes it); moved to the "
                           "dead letters (%s)", stream, times, POISON_REASON)
        return found

    def _destination_of(self, stream: str) -> str:
        if stream.startswith(self._dest_prefix):
            return stream[len(self._dest_prefix):]
        return EVERY_DESTINATION

    def _poison_letter(self, stream: str, fields: Mapping[str, str], times: int
                       ) -> DeadLetter:
        try:
            event = json.loads(fields.get("e", ""))
        except ValueError:
            event = None
        if not isinstance(event, dict):
            event = {"unreadable": str(fields.get("e", ""))[:MAX_UNREADABLE_CHARS]}
        return DeadLetter(
            destination=self._destination_of(stream),
            message_id=str(event.get("message_id", "")), method="", url="", status=None,
            response=f"handed out {times} times without being settled: every worker that "
                     "took it stopped or hung", reason=POISON_REASON, attempts=times,
            event=event, request={})

    def poisoned(self) -> dict[str, int]:
        """Entries this process moved to the dead letters as ``too_many_deliveries``, per
        destination (``*``: events never routed)."""
        with self._lock:
            return dict(self._poisoned)

    def _forget_idle_consumers(self) -> None:
        """Remove consumers that hold nothing and were idle for long (stopped workers);
        a consumer holding entries is kept, or its entries would never come back."""
        limit = max(600_000, int(self.claim_idle * 20_000))
        try:
            client = self._client()
            for stream in sorted(self._groups):
                for info in client.xinfo_consumers(stream, GROUP):
                    if (info.get("name") != self.consumer and not info.get("pending")
                            and int(info.get("idle", 0)) > limit):
                        client.xgroup_delconsumer(stream, GROUP, info["name"])
        except self._errors():
            pass

    # -- dead letters ----------------------------------------------------------------------

    def dead_letters(self, limit: int = 1000, destination: str | None = None
                     ) -> list[DeadLetter]:
        out: list[DeadLetter] = []
        start = "-"
        client = self._client()
        while len(out) < limit:
            rows = client.xrange(self.dead_key, start, "+", count=500)
            for entry, fields in rows:
                letter = _letter_from(entry, fields.get("l", ""))
                if letter is not None and destination in (None, letter.destination):
                    out.append(letter)
                    if len(out) >= limit:
                        break
            if len(rows) < 500:
                break
            start = "(" + rows[-1][0]
        return out

    def requeue_dead(self, ids: Iterable[int]) -> int:
        client = self._client()
        script = self._script("requeue")
        moved = 0
        for ident in ids:
            entry = f"{int(ident)}-1"
            rows = client.xrange(self.dead_key, entry, entry)
            letter = _letter_from(entry, rows[0][1].get("l", "")) if rows else None
            if letter is None:
                continue  # replayed by someone else meanwhile
            body = json.dumps(letter.event, separators=(",", ":"), ensure_ascii=False)
            target = (self.events_key if letter.destination == EVERY_DESTINATION
                      else self._dest_key(letter.destination))
            added = script(keys=[self.dead_key, target],
                           args=[entry, body, json.dumps([letter.message_id])])
            if added is None:
                continue
            with self._lock:
                self._last += 1
                self._requeued[self._last] = (target, str(added))
            moved += 1
        return moved

    def identity_store(self) -> IdentityStore:
        """A hash per Orangepill realm in this database, so a fleet agrees on each
        user's identity id."""
        return RedisIdentityStore(self._client, self.prefix)

    # -- lifecycle -------------------------------------------------------------------------

    def after_fork(self) -> None:
        # The parent keeps its buffer and its entries; the child gets a new connection
        # pool (never the parent's sockets) and a consumer name of its own.
        self._reset()

    def close(self) -> None:
        """Hand unfinished entries back to the group, move what is buffered, close."""
        self._taking = False
        if self._client_obj is None:
            return
        self._available_now()
        if self._settle_timer is not None:
            self._settle_timer.cancel()
            self._settle_timer = None
        self._settle_pending()
        held = [(self.events_key, entry) for entry in self._taken.values()]
        held += [(self._dest_key(dest), entry) for dest, entry in self._handed.values()]
        held += [(stream, entry) for stream, waiting in self._waiting.items()
                 for entry, _ in waiting]
        self._touch(held, RELEASED_IDLE_MS)
        self._taken.clear()
        self._handed.clear()
        self._waiting.clear()
        self._ahead.clear()
        while self._buffer and self._drain_buffer():
            pass
        with self._lock:
            lost = len(self._buffer)
            self._buffer.clear()
            if lost:
                self._drops["outbox_unavailable"] = (self._drops.get("outbox_unavailable", 0)
                                                     + lost)
        if lost:
            logger.warning("cdptrack: %d events lost: %s did not answer before exit",
                           lost, self.url)
        try:
            self._client_obj.close()
        except self._errors():
            pass
        self._client_obj = None

    def _available_now(self) -> None:
        """At close, try Redis once more regardless of the backoff."""
        self._retry_at = 0.0

    def __repr__(self) -> str:
        return f"RedisOutbox({self.url!r}, prefix={self.prefix!r}, role={self.role!r})"


def _read_answer(reply: Any) -> list[tuple[str, dict[str, str]]]:
    """``READ``'s answer (or ``ROUTE``'s per stream) as (entry id, fields) in stream
    order; an entry whose body did not come back (this process routed it) has {}."""
    ids = str(reply[0]).split(",") if reply and reply[0] else []
    fields = {str(reply[i]): _fields(reply[i + 1]) for i in range(1, len(reply) - 1, 2)}
    return [(entry, fields.get(entry, {})) for entry in ids]


def _fields(flat: Any) -> dict[str, str]:
    """An entry's fields from a script's answer (a flat name, value list)."""
    if not isinstance(flat, list):
        return {}
    return {str(flat[i]): str(flat[i + 1]) for i in range(0, len(flat) - 1, 2)}


def _entry_order(entry: str) -> tuple[int, int]:
    """A stream entry id (``<ms>-<seq>``) as something that sorts like the stream."""
    ms, _, seq = entry.partition("-")
    try:
        return int(ms), int(seq or 0)
    except ValueError:
        return (0, 0)


def _with_id(item: Payload) -> Payload:
    if isinstance(item, Event) or item.get("message_id"):
        return item
    return {**item, "message_id": str(uuid.uuid4())}


def _body(item: Payload) -> str:
    """An event as stored in the stream: compact canonical JSON."""
    data = item.to_dict() if isinstance(item, Event) else item
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str)


def _letter_dict(letter: DeadLetter) -> dict[str, Any]:
    return {"destination": letter.destination, "message_id": letter.message_id,
            "method": letter.method, "url": letter.url, "status": letter.status,
            "response": letter.response, "reason": letter.reason,
            "attempts": letter.attempts, "event": letter.event, "request": letter.request,
            "created": letter.created}


def _letter_from(entry: str, text: str) -> DeadLetter | None:
    try:
        data = json.loads(text)
        return DeadLetter(
            destination=str(data["destination"]), message_id=str(data["message_id"]),
            method=str(data["method"]), url=str(data["url"]), status=data.get("status"),
            response=str(data.get("response", "")), reason=str(data.get("reason", "")),
            attempts=int(data.get("attempts", 0)), event=dict(data["event"]),
            request=dict(data.get("request") or {}), created=float(data.get("created", 0)),
            id=int(entry.partition("-")[0]))
    except (ValueError, KeyError, TypeError):
        return None


__all__ = ["RedisOutbox", "redact_url"]
