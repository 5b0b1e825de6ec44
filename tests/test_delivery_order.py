"""Per-visitor order: each shopper's requests reach every API in the order the shop
captured them, although each lane sends with several workers, APIs answer slowly and
out of order, and some requests fail with 503 before they succeed; while different
shoppers are still delivered concurrently (a slow shopper does not hold up another).

Real local APIs, the real Tracker, and the memory, SQLite and Redis outboxes."""

from __future__ import annotations

import json
import re
import socket
import threading
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import redis_server
from support.api_server import ApiServer, Reply
from support.delivery import FAST, FourApis, apis_fixture, product_viewed
from support.redis_server import RedisServer

from cdptrack.delivery.ordering import VisitorGate, visitor_key
from cdptrack.delivery.outbox import Delivery
from cdptrack.delivery.outbox_sqlite import SQLiteOutbox
from cdptrack.events import Event, track
from cdptrack.tracker import Tracker

apis = apis_fixture
MARK = re.compile(r"sku-(\d{5})")
VISITORS = 3
PER_VISITOR = 15


def sc_of(visitor: int) -> str:
    return f"CDA68358-94FB-4D83-9655-{visitor:012d}"


def shoppers_events() -> list[tuple[int, Event]]:
    """Events of ``VISITORS`` shoppers, interleaved as their page views come in: event
    ``i`` (marker ``sku-i``) belongs to shopper ``i % VISITORS``."""
    return [(i % VISITORS, product_viewed(i, sc=sc_of(i % VISITORS),
                                          email=f"shopper{i % VISITORS}@example.com"))
            for i in range(VISITORS * PER_VISITOR)]


class Shuffling:
    """Answers like a busy API: every answer waits a few milliseconds, a different
    time for each body (so concurrent requests finish out of order), and the first
    attempt of every third body (the first one included) is a 503 (its retry
    succeeds)."""

    def __init__(self) -> None:
        self._seen: set[int] = set()
        self._lock = threading.Lock()

    def __call__(self, path: str, body: bytes) -> Reply:
        digest = zlib.crc32(body)
        with self._lock:
            first = digest not in self._seen
            self._seen.add(digest)
            nth = len(self._seen)
        if first and nth % 3 == 1:
            return Reply(503, delay=(digest % 5) * 0.004)
        return Reply(200, delay=(digest % 7) * 0.004)


def arrival_order(server: ApiServer) -> list[int]:
    """The event numbers of the accepted messages, in the order they reached the API."""
    order: list[int] = []
    for _, message in server.accepted_messages():
        found = MARK.search(json.dumps(message))
        if found:
            order.append(int(found.group(1)))
    return order


def all_accepted(apis: FourApis, n: int) -> bool:
    return all(set(range(n)) <= set(arrival_order(server)) for server in apis)


def assert_in_capture_order(apis: FourApis, owner: dict[int, int]) -> None:
    """Each shopper's events reached each API in capture order, each of them."""
    for name, server in apis.by_destination().items():
        order = arrival_order(server)
        for visitor in set(owner.values()):
            seen = [i for i in order if owner[i] == visitor]
            assert seen == sorted(seen), (name, visitor, seen)
            assert set(seen) == {i for i, v in owner.items() if v == visitor}, name


def shuffle_all(apis: FourApis) -> None:
    for server in apis:
        server.responder = Shuffling()


@pytest.fixture(params=["memory", "sqlite", "redis"])
def outbox_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "memory":
        yield "memory"
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/outbox.db"
    else:
        if not redis_server.available():
            pytest.skip("redis-server is not installed")
        with RedisServer(tmp_path / "redis") as server:
            # This process is its own worker: it appends and sends.
            yield server.url(f"t{uuid.uuid4().hex[:8]}", role="worker")


def tracker_for(apis: FourApis, outbox: str, **options: Any) -> Tracker:
    return Tracker(apis.config(), outbox=outbox, handle_signals=False, **FAST, **options)


# -- the gate itself -------------------------------------------------------------------


def delivery(key: int, sc: str | None) -> Delivery:
    event = track("Product Viewed", {"product_id": str(key)},
                  visitor={"sc": sc} if sc else {})
    return Delivery(key, "yespo_tracker", event)


def test_the_gate_parks_a_busy_visitor_behind_its_holder_and_lets_others_through() -> None:
    gate = VisitorGate()
    ready, held = gate.admit([delivery(1, "A"), delivery(2, "B")])
    assert [d.key for d in ready] == [1, 2] and held == ["A", "B"]
    # Another worker takes A's next two, B's next, C's first and an event with nobody.
    ready2, held2 = gate.admit([delivery(3, "A"), delivery(4, "C"), delivery(5, "A"),
                                delivery(6, "B"), delivery(7, None)])
    assert [d.key for d in ready2] == [4, 7] and held2 == ["C"]
    assert gate.parked == 3
    # The holder of A and B, done, sends what waited behind them, in order.
    after, still = gate.release(held, limit=10)
    assert [d.key for d in after] == [3, 5, 6] and still == ["A", "B"]
    assert gate.release(still, limit=10) == ([], [])
    assert gate.parked == 0 and len(gate) == 1  # C is still held by the other worker


def test_the_visitor_is_the_sc_cookie_then_the_user() -> None:
    both = track("Product Viewed", {}, visitor={"sc": "S1", "user_id": "u-1"})
    user = track("Product Viewed", {}, visitor={"user_id": "u-1", "email": "a@b.c"})
    catalogue = track("Product Updated", {"products": []})
    assert (visitor_key(both), visitor_key(user), visitor_key(catalogue)) == (
        "S1", "u-1", None)


# -- end to end --------------------------------------------------------------------------


def test_each_visitor_s_requests_arrive_in_capture_order_at_every_api(
        apis: FourApis, outbox_url: str) -> None:
    shuffle_all(apis)
    events = shoppers_events()
    tracker = tracker_for(apis, outbox_url)
    try:
        for _, event in events:
            tracker.capture(event)
        assert apis.tracker.wait_until(lambda _: all_accepted(apis, len(events)), 60)
    finally:
        tracker.shutdown(5)
    assert_in_capture_order(apis, {i: v for i, (v, _) in enumerate(events)})
    # The 503s really happened, so order held across retries too.
    assert all(any(r.status == 503 for r in server.requests) for server in apis)


def test_after_a_restart_a_durable_outbox_sends_in_the_order_it_accepted(
        apis: FourApis, tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    events = shoppers_events()
    accepted = SQLiteOutbox(str(path))  # a process that accepted events, then died
    accepted._owner = f"{socket.gethostname()}:999999999:gone"  # a pid that runs nowhere
    for _, event in events:
        assert accepted.put(event)
    accepted._writer = None  # gone without closing, as after a SIGKILL
    shuffle_all(apis)
    tracker = tracker_for(apis, f"sqlite:///{path}")
    try:
        tracker.start()
        assert apis.tracker.wait_until(lambda _: all_accepted(apis, len(events)), 60)
    finally:
        tracker.shutdown(5)
    assert_in_capture_order(apis, {i: v for i, (v, _) in enumerate(events)})


def test_a_redis_worker_sends_in_the_order_the_fleet_accepted(
        apis: FourApis, tmp_path: Path) -> None:
    if not redis_server.available():
        pytest.skip("redis-server is not installed")
    events = shoppers_events()
    with RedisServer(tmp_path / "redis") as server:
        prefix = f"t{uuid.uuid4().hex[:8]}"
        web = tracker_for(apis, server.url(prefix))  # a web process: appends only
        for _, event in events:
            web.capture(event)
        assert web.flush(10)
        shuffle_all(apis)
        worker = tracker_for(apis, server.url(prefix, role="worker"))
        try:
            worker.start()
            assert apis.tracker.wait_until(lambda _: all_accepted(apis, len(events)), 60)
        finally:
            worker.shutdown(5)
            web.shutdown(5)
    assert_in_capture_order(apis, {i: v for i, (v, _) in enumerate(events)})


class Holding:
    """Holds every request that mentions ``marker`` until ``released`` is set
    (bounded), and answers the rest at once; ``arrived`` is set when one is held (the
    server records a request once it is answered)."""

    def __init__(self, marker: bytes, released: threading.Event) -> None:
        self.marker = marker
        self.released = released
        self.arrived = threading.Event()

    def __call__(self, path: str, body: bytes) -> Reply | None:
        if self.marker in body:
            self.arrived.set()
            self.released.wait(30)
        return None


def test_a_slow_visitor_does_not_hold_up_another(apis: FourApis, outbox_url: str) -> None:
    released = threading.Event()
    holdings = [Holding(b"sku-00000", released) for _ in apis]
    for server, holding in zip(apis, holdings, strict=True):
        server.responder = holding
    slow = sc_of(7)
    tracker = tracker_for(apis, outbox_url, timeout=60.0)
    try:
        tracker.capture(product_viewed(0, sc=slow, email="slow@example.com"))
        # Its first request is at every API, unanswered, before anything else is taken.
        assert all(holding.arrived.wait(30) for holding in holdings)
        tracker.capture(product_viewed(1, sc=slow, email="slow@example.com"))
        for i in range(2, 12):
            tracker.capture(product_viewed(i, sc=sc_of(8), email="fast@example.com"))
        # The other shopper is delivered everywhere while the slow one waits...
        assert apis.tracker.wait_until(
            lambda _: all(set(range(2, 12)) <= set(arrival_order(s)) for s in apis), 30)
        # ...and the slow shopper's next event waits behind its first.
        for name, server in apis.by_destination().items():
            assert not any(b"sku-00001" in r.body for r in server.received()), name
        released.set()
        assert apis.tracker.wait_until(lambda _: all_accepted(apis, 12), 30)
    finally:
        released.set()
        tracker.shutdown(5)
    owner = {0: 7, 1: 7, **{i: 8 for i in range(2, 12)}}
    assert_in_capture_order(apis, owner)


def test_a_user_s_events_wait_in_order_for_their_orangepill_identity(
        apis: FourApis) -> None:
    creating = threading.Event()
    answer = threading.Event()

    def orangepill(path: str, body: bytes) -> Reply | None:
        if path.endswith("/identities/person"):
            creating.set()
            answer.wait(30)
            return Reply(200, body=json.dumps({"id": "634b56217f6a7b0be52dffaa",
                                               "type": "person"}))
        return None

    apis.orangepill.responder = orangepill
    who = {"sc": sc_of(1), "user_id": "u-1", "email": "jane@example.com"}
    tracker = Tracker(apis.config(), outbox="memory", handle_signals=False, **FAST)
    try:
        # The first needs the identity made; the second already names it (the shop
        # stored it from on_identity): it must not overtake the first.
        tracker.capture(track("Cart Updated", {"cart_id": "c1", "products": [
            {"product_id": "sku-00000", "price": 1, "quantity": 1}]}, visitor=who))
        assert creating.wait(30)
        tracker.capture(track("Cart Updated", {"cart_id": "c1", "products": []},
                              visitor={**who, "orangepill_identity":
                                       "634b56217f6a7b0be52dffaa"}))
        tracker.capture(product_viewed(5, sc=sc_of(2), email="other@example.com"))
        assert apis.orangepill.wait_until(
            lambda s: any(b"sku-00005" in r.body for r in s.accepted()), 30)
        carts = [r for r in apis.orangepill.received() if "cartUpdated" in r.path]
        assert carts == []  # the second waits behind the first's identity
        answer.set()
        assert tracker.flush(30)
    finally:
        answer.set()
        tracker.shutdown(5)
    carts = [r for r in apis.orangepill.accepted() if "cartUpdated" in r.path]
    assert len(carts) == 2
    assert b"sku-00000" in carts[0].body and b"sku-00000" not in carts[1].body
