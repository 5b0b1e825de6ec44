"""Where accepted events wait until every destination has them.

The outbox holds two kinds of work, so that one slow or dead API never holds up the
others:

* **new events**: accepted by ``capture`` and not yet rendered.  ``put`` is the only
  thing ``capture`` does, so it must be cheap and must never block for long;
* **deliveries**: one per (event, destination) after the dispatcher rendered the event.
  Each destination's lane takes its own deliveries at its own pace.

An event is *open* from ``put`` until every one of its deliveries was settled (sent,
dead-lettered or dropped); ``flush`` waits until no event at or below the last accepted
key is open.  Keys grow monotonically, so "everything accepted so far" is a key.

This module defines the interface only.  Three implementations: :mod:`.outbox_memory`
(bounded, lost with the process), :mod:`.outbox_sqlite` (durable across crashes on one
host) and :mod:`.outbox_redis` (shared by a fleet); :func:`.outbox_url.open_outbox` picks
one from the ``CDPTRACK_OUTBOX`` URL.
"""

from __future__ import annotations

import abc
import base64
import functools
import json
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, quote_plus

from ..destinations.base import WireRequest
from ..events import Event
from .compact import unpack
from .deferred import DeferredBuild
from .identity_store import IdentityStore, MemoryIdentityStore

# What ``capture`` accepted: an Event, or a mapping validated later in the sender.
Payload = Event | Mapping[str, Any]

MAX_RESPONSE_CHARS = 2000
# Deliveries a lane may keep parked behind busy visitors (see :mod:`.ordering`) before
# its workers take no more from the outbox, so the outbox's own bound still holds.
PARK_LIMIT = 1000


def visitor_key(event: Event) -> str | None:
    """Whose order ``event`` belongs to (see :mod:`.ordering`); None: nobody's."""
    visitor = event.visitor
    return (visitor.sc or visitor.user_id or visitor.email or visitor.phone
            or visitor.external_customer_id)


class Delivery:
    """One event on its way to one destination.

    The event may come packed (:mod:`.compact`: the memory outbox keeps what waits for
    a failing API that way), with its :func:`visitor_key`; it is unpacked on first use
    of :attr:`event`, so one that waits behind a busy visitor (:mod:`.ordering`) stays
    packed until it is sent."""

    __slots__ = ("_event", "_packed", "_visitor", "counted", "destination", "key", "only",
                 "requests")

    def __init__(self, key: int, destination: str, event: Event | None = None,
                 requests: list[WireRequest] | None = None,
                 only: frozenset[str] | None = None, counted: bool = False, *,
                 packed: bytes | None = None, visitor: str | None = None) -> None:
        if event is None and packed is None:
            raise TypeError("a Delivery needs its event, or the event packed")
        self.key = key
        self.destination = destination
        # Rendered by the dispatcher (durable outboxes, cached); None: the lane renders
        # when it sends (the memory outbox keeps only the event while it waits; after a
        # restart, since credentials are never written to disk).
        self.requests = requests
        # Replay: only the wire requests with these message ids (the ones that died).
        self.only = only
        self.counted = counted  # "enqueued" already counted for these requests
        self._event = event
        self._packed = packed
        self._visitor = visitor  # the packed event's visitor_key

    @property
    def event(self) -> Event:
        event = self._event
        if event is None:
            assert self._packed is not None
            event = self._event = unpack(self._packed)
        return event

    @property
    def visitor(self) -> str | None:
        """:func:`visitor_key` of the event, without unpacking it."""
        event = self._event
        return self._visitor if event is None else visitor_key(event)

    def __repr__(self) -> str:
        what = self._event.label if self._event is not None else "packed event"
        return f"Delivery({self.key}, {self.destination!r}, {what})"


@dataclass(slots=True)
class Routing:
    """The dispatcher's decision for one new event."""

    key: int
    event: Event | None  # None: invalid, nothing to deliver
    # Per destination: its rendered requests, or None to render when sent (lazy_render).
    requests: dict[str, list[WireRequest] | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A wire request the API refused for good, or that ran out of retry time."""

    destination: str
    message_id: str
    method: str
    url: str
    status: int | None  # None: no HTTP answer (network error, timeout)
    response: str  # the API's answer (truncated, secrets scrubbed), or the error text
    reason: str  # "rejected" (a final 4xx) or "retry_time_exceeded"
    attempts: int
    event: dict[str, Any]  # the canonical event, to re-render on replay
    request: dict[str, Any]  # the public (redacted) request, for people reading it
    created: float = field(default_factory=time.time)
    id: int | None = None  # the store's id, for replay


class Outbox(abc.ABC):
    """The contract between ``capture``, the dispatcher, the lanes and ``flush``.

    ``put``, ``last_key``, ``min_open_key`` and ``open_count`` may be called from any
    thread; everything else only from the sender thread.
    """

    durable: bool = False
    url: str = "memory"
    # Whether ``put_deferred`` keeps a DeferredBuild as it is (to be built in the sender).
    # Durable outboxes store plain events only: the tracker builds before ``put``.
    accepts_deferred: bool = False
    # Whether deliveries wait as the bare event, rendered by the lane when it sends: the
    # dispatcher then routes every event to every enabled destination without rendering
    # (a destination that skips it counts its reason when the lane renders).
    lazy_render: bool = False
    # How many deliveries per lane may wait parked behind a busy visitor, taken out of
    # the outbox (so they count against its bound: the memory outbox lowers it).
    park_limit: int = PARK_LIMIT

    # -- capture side ----------------------------------------------------------------

    def put_deferred(self, job: DeferredBuild) -> bool:
        """Accept work that becomes zero or more events in the sender, under one key (the
        key stays open until all of them are settled).  Only when ``accepts_deferred``."""
        raise NotImplementedError(f"{type(self).__name__} stores plain events only")

    @abc.abstractmethod
    def put(self, item: Payload) -> bool:
        """Accept one event; False when there is no room (the caller counts the drop)."""

    def take_refusals(self) -> dict[str, int]:
        """Events ``put`` accepted that the outbox refused afterwards (a staged write that
        found no room, a deferred build that raised), by reason, since the last call.
        The sender counts them as drops for every destination."""
        return {}

    def took_staged(self) -> bool:
        """Whether ``take_new`` moved staged captures on since the last call (a Redis
        producer appends them there and returns no events): captures are coming, so the
        sender keeps polling on its own timer rather than waiting to be woken."""
        return False

    @abc.abstractmethod
    def last_key(self) -> int:
        """The key of the newest accepted event (0 when none)."""

    @abc.abstractmethod
    def min_open_key(self) -> int | None:
        """The smallest key that is still open, or None when everything is settled."""

    @abc.abstractmethod
    def open_count(self) -> int:
        """How many accepted events are not settled yet."""

    def queue_depths(self) -> dict[str, int]:
        """Per destination, deliveries routed to it and not yet settled (for metrics);
        empty when this outbox cannot tell cheaply."""
        return {}

    # -- sender side -----------------------------------------------------------------

    def start(self) -> None:  # noqa: B027 - optional hook
        """Called once in the sender thread before any other sender-side call."""

    def maintain(self) -> bool:
        """Periodic housekeeping (heartbeats, taking over a dead process's rows).
        True when new work may have appeared."""
        return False

    @abc.abstractmethod
    def take_new(self, limit: int) -> Sequence[tuple[int, Payload | str | DeferredBuild]]:
        """Up to ``limit`` accepted events not yet routed, oldest first (a durable
        outbox gives the JSON text it stored; the memory outbox may give deferred
        builds)."""

    @abc.abstractmethod
    def route(self, routings: Sequence[Routing]) -> list[tuple[int, str]]:
        """Record deliveries for rendered events; settle events with none.  Returns the
        (key, destination) pairs refused for lack of room (counted by the caller).  A key
        may come in several routings (the events of one deferred build)."""

    @abc.abstractmethod
    def next_for(self, destination: str, limit: int) -> list[Delivery]:
        """Up to ``limit`` deliveries for ``destination`` not already handed out."""

    @abc.abstractmethod
    def settle(self, done: Sequence[Delivery], letters: Sequence[DeadLetter] = ()) -> None:
        """These deliveries are finished (sent or dead); store the dead letters."""

    @abc.abstractmethod
    def release(self, deliveries: Iterable[Delivery]) -> None:
        """Handed-out deliveries that were not finished (shutdown).  A durable outbox
        keeps them for the next start; the memory outbox loses them."""

    def taking(self) -> bool:
        """False once a graceful stop began (a Redis worker's ``stop_taking``): lanes
        then start nothing new, and hand back what waited behind a busy visitor."""
        return True

    def set_failing(self, destination: str, failing: bool) -> None:  # noqa: B027
        """A hint from ``destination``'s lane: its API stopped answering (``failing``)
        or answered again.  What is routed to a failing lane waits seconds to minutes,
        so an outbox that keeps it in memory may keep it compact (:mod:`.compact`).
        Called on the sender thread, on changes only.  Default: nothing."""

    @abc.abstractmethod
    def backlog(self) -> dict[str, int]:
        """Deliveries waiting per destination (not counting ones handed out)."""

    # -- state kept with the outbox ----------------------------------------------------

    def identity_store(self) -> IdentityStore:
        """Where the Orangepill identity ids of the shop's users are remembered, as
        durable and as shared as this outbox (see :mod:`.identity_store`).  Called once
        per sender, on the sender thread.  Default: this process's memory."""
        return MemoryIdentityStore()

    # -- dead letters ------------------------------------------------------------------

    @abc.abstractmethod
    def dead_letters(self, limit: int = 1000, destination: str | None = None
                     ) -> list[DeadLetter]:
        """The stored dead letters, oldest first."""

    @abc.abstractmethod
    def requeue_dead(self, ids: Iterable[int]) -> int:
        """Move dead letters back into the outbox as new work (``cdptrack replay``)."""

    # -- lifecycle ---------------------------------------------------------------------

    @abc.abstractmethod
    def after_fork(self) -> None:
        """In a forked child: fresh locks and connections, no inherited work."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release files and connections."""


def truncate(text: str, secrets: Iterable[str] = (), limit: int = MAX_RESPONSE_CHARS) -> str:
    """An API's answer as stored: secrets scrubbed (:func:`scrub`), at most ``limit``
    characters."""
    text = scrub(text, secrets)
    return text if len(text) <= limit else text[:limit] + "...(truncated)"


REDACTED_TEXT = "<redacted>"
_B64_CHARS = "A-Za-z0-9+/_-"


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every form a key can take in an API's answer or an error message
    replaced by ``<redacted>``: the key itself, URL-encoded, JSON-escaped, and base64
    as in an echoed ``Authorization: Basic`` header, whatever user name or password
    stands next to it (``key:``, ``:key``, ``user:key``; standard and URL-safe
    alphabets): the whole base64 word that holds the key's bytes is replaced."""
    if not text:
        return text
    for secret in secrets:
        if not secret:
            continue
        plain, encoded = _secret_forms(secret)
        for form in plain:
            if form in text:
                text = text.replace(form, REDACTED_TEXT)
        if encoded is not None:
            text = encoded.sub(REDACTED_TEXT, text)
    return text


@functools.lru_cache(maxsize=64)
def _secret_forms(secret: str) -> tuple[tuple[str, ...], re.Pattern[str] | None]:
    raw = secret.encode("utf-8")
    plain = {secret, quote(secret, safe=""), quote_plus(secret),
             json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
    # Base64 of a text holding the key: at each of the three alignments the key's
    # complete 3-byte groups encode to the same characters whatever surrounds them.
    cores: set[str] = set()
    for whole in (raw + b":", b":" + raw):
        plain.add(base64.b64encode(whole).decode("ascii"))
    for skip in range(3):
        body = raw[skip:]
        body = body[:len(body) // 3 * 3]
        if len(body) >= 6:
            for encode in (base64.b64encode, base64.urlsafe_b64encode):
                cores.add(encode(body).decode("ascii"))
    pattern = None
    if cores:
        alternatives = "|".join(re.escape(c) for c in sorted(cores, key=len, reverse=True))
        pattern = re.compile(f"[{_B64_CHARS}]*(?:{alternatives})[{_B64_CHARS}]*=*")
    forms = tuple(sorted((f for f in plain if f), key=len, reverse=True))
    return forms, pattern
