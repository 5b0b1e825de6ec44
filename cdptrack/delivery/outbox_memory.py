"""The default outbox: in this process's memory, bounded, gone with the process.

Bounds (so a dead API can never make the process grow without limit):

* at most ``max_queue`` new events wait to be rendered; when full, ``capture`` drops the
  *new* event and counts ``dropped:queue_full`` for every enabled destination;
* at most ``max_queue`` deliveries wait per destination; when one destination's lane is
  full (its API is down or slow), only that destination drops the new delivery
  (``dropped:queue_full``); the other destinations still get the event.  A lane may
  also hold up to ``min(max_queue, PARK_LIMIT)`` deliveries parked behind a busy visitor
  (:mod:`.ordering`), taken out of that queue.

Nothing spills to disk here: use the SQLite outbox when events must survive a crash or a
long outage.  Events still queued at shutdown are counted as ``dropped:shutdown``.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Iterable, Sequence

from ..events import Event
from .deferred import DeferredBuild
from .outbox import DeadLetter, Delivery, Outbox, Payload, Routing


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
        # about 90 bytes per waiting event instead of four Delivery objects); replayed
        # dead letters wait as a Delivery (they carry the message ids to re-send).
        self._lanes: dict[str, deque[Delivery | tuple[int, Event]]] = {}
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
                    shared = (routing.key, routing.event)
                    for destination, requests in routing.requests.items():
                        lane = self._lanes.get(destination)
                        if lane is None:
                            lane = self._lanes[destination] = deque()
                        if len(lane) >= self.max_queue:
                            refused.append((routing.key, destination))
                            continue
                        lane.append(shared if requests is None else Delivery(
                            routing.key, destination, routing.event, requests,
                            counted=True))
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
            out.append(item if isinstance(item, Delivery)
                       else Delivery(item[0], destination, item[1], counted=True))
        return out

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


def _with_id(letter: DeadLetter, ident: int) -> DeadLetter:
    from dataclasses import replace

    return replace(letter, id=ident)
