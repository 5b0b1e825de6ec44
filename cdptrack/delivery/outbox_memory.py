"""The default outbox: in this process's memory, bounded, gone with the process.

Bounds (so a dead API can never make the process grow without limit):

* at most ``max_queue`` new events wait to be rendered; when full, ``capture`` drops the
  *new* event and counts ``dropped:queue_full`` for every enabled destination;
* at most ``max_queue`` deliveries wait per destination; when one destination's lane is
  full (its API is down or slow), only that destination drops the new delivery
  (``dropped:queue_full``); the other destinations still get the event.  A lane may
  also hold up to ``min(max_queue, PARK_LIMIT)`` deliveries parked behind a busy visitor
  (:mod:`.ordering`), taken out of that queue.

What waits for a lane whose API is failing waits packed (:mod:`.compact`): one
``bytes`` object per event instead of the ``Event`` with its dicts, about 0.4 instead of
1 KiB, and nothing the garbage collector tracks for long.

Nothing spills to disk here: use the SQLite outbox when events must survive a crash or a
long outage.  Events still queued at shutdown are counted as ``dropped:shutdown``.
"""

from __future__ import annotations

import itertools
import sys
import threading
from collections import deque
from collections.abc import Iterable, Sequence

from ..events import Event
from .compact import pack
from .deferred import DeferredBuild
from .outbox import DeadLetter, Delivery, Outbox, Payload, Routing, visitor_key

# A routed event waiting in lanes: (key, event), or packed (key, bytes, its visitor key).
_Waiting = tuple[int, Event] | tuple[int, bytes, str | None]


class MemoryOutbox(Outbox):
    durable = False
    url = "memory"
    accepts_deferred = True
    lazy_render = True  # a waiting event costs its Event, not four rendered requests

    def __init__(self, *, max_queue: int = 10_000, max_dead_letters: int = 1000) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        self.max_queue = max_queue
        # Parked deliveries are taken out of a lane's queue: at most another max_queue.
        self.park_limit = min(self.park_limit, max_queue)
        self.max_dead_letters = max_dead_letters
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._new: deque[tuple[int, Payload | DeferredBuild]] = deque()
        # key -> unsettled parts (deliveries, plus 1 while not yet routed).  Keys are
        # inserted in increasing order, so the first key is the smallest open one.
        self._open: dict[int, int] = {}
        self._last = 0
        # Per destination, what waits: one (key, event) tuple per routed event, the same
        # tuple in every destination's lane (a Delivery is made when a lane takes it:
        # about 90 bytes per waiting event instead of four Delivery objects); for lanes
        # whose API is failing, one (key, packed event, visitor key) tuple shared the same
        # way (the visitor key, interned, orders it without unpacking).  Replayed dead
        # letters wait as a Delivery (they carry the message ids to re-send).
        self._lanes: dict[str, deque[Delivery | _Waiting]] = {}
        self._failing: set[str] = set()
        self._dead: deque[DeadLetter] = deque(maxlen=self.max_dead_letters)
        self._dead_ids = itertools.count(1)

    # -- capture side ------------------------------------------------------------------

    def put(self, item: Payload) -> bool:
        return self._append(item)

    def put_deferred(self, job: DeferredBuild) -> bool:
        return self._append(job)

    def _append(self, item: Payload | DeferredBuild) -> bool:
        with self._lock:
            if len(self._new) >= self.max_queue:
                return False
            self._last += 1
            key = self._last
            self._open[key] = 1
            self._new.append((key, item))
            return True

    def last_key(self) -> int:
        return self._last

    def min_open_key(self) -> int | None:
        with self._lock:
            return next(iter(self._open), None)

    def open_count(self) -> int:
        return len(self._open)

    def queue_depths(self) -> dict[str, int]:
        with self._lock:
            return {name: len(lane) for name, lane in self._lanes.items()}

    # -- sender side -------------------------------------------------------------------

    def take_new(self, limit: int) -> list[tuple[int, Payload | str | DeferredBuild]]:
        out: list[tuple[int, Payload | str | DeferredBuild]] = []
        new = self._new
        while new and len(out) < limit:
            out.append(new.popleft())
        return out

    def route(self, routings: Sequence[Routing]) -> list[tuple[int, str]]:
        refused: list[tuple[int, str]] = []
        parts_of: dict[int, int] = {}  # a deferred build's events share one key
        with self._lock:
            for routing in routings:
                parts = parts_of.get(routing.key, 0)
                if routing.event is not None:
                    shared: _Waiting = (routing.key, routing.event)
                    packed: _Waiting | None = None
                    for destination, requests in routing.requests.items():
                        lane = self._lanes.get(destination)
                        if lane is None:
                            lane = self._lanes[destination] = deque()
                        if len(lane) >= self.max_queue:
                            refused.append((routing.key, destination))
                            continue
                        if requests is not None:
                            lane.append(Delivery(routing.key, destination, routing.event,
                                                 requests, counted=True))
                        elif destination in self._failing:
                            if packed is None:  # once per event, shared by failing lanes
                                packed = _packed(routing.key, routing.event) or shared
                            lane.append(packed)
                        else:
                            lane.append(shared)
                        parts += 1
                parts_of[routing.key] = parts
            for key, parts in parts_of.items():
                self._unref(key, 1 - parts)
        return refused

    def _unref(self, key: int, n: int) -> None:
        left = self._open.get(key, 0) - n
        if left > 0:
            self._open[key] = left
        else:
            self._open.pop(key, None)

    def next_for(self, destination: str, limit: int) -> list[Delivery]:
        lane = self._lanes.get(destination)
        out: list[Delivery] = []
        while lane and len(out) < limit:
            item = lane.popleft()
            if isinstance(item, Delivery):
                out.append(item)
                continue
            if len(item) == 3:
                out.append(Delivery(item[0], destination, packed=item[1], visitor=item[2],
                                    counted=True))
            else:
                out.append(Delivery(item[0], destination, item[1], counted=True))
        return out

    def set_failing(self, destination: str, failing: bool) -> None:
        if failing:
            self._failing.add(destination)
        else:
            self._failing.discard(destination)

    def packed_count(self) -> int:
        """Deliveries waiting packed, over every lane (for tests and inspection)."""
        with self._lock:
            return sum(1 for lane in self._lanes.values() for item in lane
                       if isinstance(item, tuple) and len(item) == 3)

    def settle(self, done: Sequence[Delivery], letters: Sequence[DeadLetter] = ()) -> None:
        with self._lock:
            for letter in letters:
                self._dead.append(_with_id(letter, next(self._dead_ids)))
            for delivery in done:
                self._unref(delivery.key, 1)

    def release(self, deliveries: Iterable[Delivery]) -> None:
        self.settle(list(deliveries))

    def backlog(self) -> dict[str, int]:
        return {name: len(lane) for name, lane in self._lanes.items() if lane}

    def drain_backlog(self) -> dict[str, int]:
        """Shutdown: settle everything still waiting (the caller counts it as lost)."""
        lost: dict[str, int] = {}
        for name in list(self._lanes):
            pending = self.next_for(name, 1 << 62)
            if pending:
                lost[name] = len(pending)
                self.settle(pending)
        return lost

    def pending_new(self) -> list[tuple[int, Payload | str | DeferredBuild]]:
        return self.take_new(1 << 62)

    # -- dead letters ------------------------------------------------------------------

    def dead_letters(self, limit: int = 1000, destination: str | None = None
                     ) -> list[DeadLetter]:
        with self._lock:
            letters = [d for d in self._dead if destination in (None, d.destination)]
        return letters[:limit]

    def requeue_dead(self, ids: Iterable[int]) -> int:
        wanted = set(ids)
        moved = 0
        with self._lock:
            keep: deque[DeadLetter] = deque(maxlen=self.max_dead_letters)
            for letter in self._dead:
                if letter.id not in wanted:
                    keep.append(letter)
                    continue
                self._last += 1
                key = self._last
                self._open[key] = 1
                lane = self._lanes.setdefault(letter.destination, deque())
                lane.append(Delivery(key, letter.destination, Event.from_dict(letter.event),
                                     only=frozenset({letter.message_id})))
                moved += 1
            self._dead = keep
        return moved

    # -- lifecycle ---------------------------------------------------------------------

    def after_fork(self) -> None:
        # The parent still owns (and sends) what it had queued; the child starts empty.
        self._reset()


def _packed(key: int, event: Event) -> _Waiting | None:
    """``event`` waiting packed, or None when it cannot be (:func:`.compact.pack`)."""
    blob = pack(event)
    if blob is None:
        return None
    who = visitor_key(event)
    # Interned: a visitor's waiting events share one string, not one copy each.
    return key, blob, None if who is None else sys.intern(who)


def _with_id(letter: DeadLetter, ident: int) -> DeadLetter:
    from dataclasses import replace

    return replace(letter, id=ident)
