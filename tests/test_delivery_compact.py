"""What waits for a failing API waits packed (one ``bytes`` object per event), and a
packed event is the same event: equal field by field, with the same value types, and
the same requests at every API, byte for byte, including through real local servers
that were down while the events waited."""

from __future__ import annotations

import enum
import json
import time
from collections import Counter
from dataclasses import fields
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from support.api_server import Reply
from support.delivery import API_KEYS, FAST, FourApis, apis_fixture  # noqa: F401
from support.delivery import product_viewed as _product_viewed

from cdptrack.config import Config
from cdptrack.delivery import outbox as outbox_module
from cdptrack.delivery.compact import pack, unpack
from cdptrack.delivery.ordering import VisitorGate, visitor_key
from cdptrack.delivery.outbox import Delivery, Routing
from cdptrack.delivery.outbox_memory import MemoryOutbox
from cdptrack.destinations import render_event
from cdptrack.events import Event, Visitor, identify, page, track
from cdptrack.tracker import Tracker

ALL_FOUR = ("yespo_tracker", "yespo_events", "customerio", "orangepill")


def _config() -> Config:
    return Config(yespo_site_id="site-1", **API_KEYS)


def _events() -> list[Event]:
    who = {"sc": "CDA68358-94FB-4D83-9655-3FEB3C4114A3", "email": "ana@example.com",
           "user_id": "42", "phone": "+380501234567", "name": "Ana Žukova",
           "orangepill_identity": "634b56217f6a7b0be52dffbd", "yespo_contact_id": "77"}
    context = {"ip": "203.0.113.9", "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
               "url": "https://shop.example/p/101?utm_source=news",
               "campaign": {"source": "news", "terms": ["a", "b"]}}
    return [
        track("Product Viewed", {"product_id": 101, "sku": "SKU-101", "name": "Trail Runner",
                                 "price": "1 299,90 грн", "currency": "UAH", "in_stock": True,
                                 "position": 3, "rating": -0.0, "tags": {"color": ["red"]},
                                 "extra": None, "big": 10**30, "when": datetime(2024, 5, 1)},
              visitor=who, context=context, timestamp="2024-05-01T10:11:12.345678Z"),
        track("Order Completed", {"order_id": "o-1", "total": 119.8, "revenue": 99,
                                  "products": [{"product_id": "1", "quantity": 2,
                                                "price": 59.9, "name": "Sock"},
                                               {"product_id": "2", "quantity": 1,
                                                "price": 0, "variant": "XL"}]},
              visitor=who, message_id="order-o-1"),
        track("Cart Updated", {"cart_id": "c-9", "products": []},
              visitor={"sc": "11111111-2222-3333-4444-555555555555"}),
        identify({"email": "ana@example.com", "first_name": "Ana", "vip": True},
                 visitor=who, context=context),
        page("https://shop.example/", name="Home", properties={"path": "/"}, visitor=who),
        track("Product Viewed", {"product_id": "7", "weird": object()},  # dropped
              visitor={"user_id": "9"}),
    ]


def _shape(value: Any) -> Any:
    """``value`` with every scalar replaced by its type: the types must survive too."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value), [_shape(v) for v in value]
    return type(value)


def test_a_packed_event_unpacks_equal_with_the_same_value_types() -> None:
    for event in _events():
        packed = pack(event)
        assert isinstance(packed, bytes), event.label
        back = unpack(packed)
        assert type(back) is Event and type(back.visitor) is Visitor
        for f in fields(Event):
            mine, theirs = getattr(event, f.name), getattr(back, f.name)
            assert mine == theirs, f.name
            assert _shape(mine) == _shape(theirs), f.name
        assert list(back.properties) == list(event.properties)  # key order kept
        assert back.timestamp.tzinfo is timezone.utc
        assert back.to_dict() == event.to_dict()
    assert unpack(pack(_events()[-1]) or b"").dropped == ("weird",)


def test_an_unpacked_event_renders_the_same_bytes_at_every_api() -> None:
    config = _config()
    for event in _events():
        want = render_event(event, config, ALL_FOUR)
        got = render_event(unpack(pack(event) or b""), config, ALL_FOUR)
        assert [(r.destination, r.method, r.url, r.headers, r.body_bytes(), r.batch_url)
                for r in got.requests] == \
            [(r.destination, r.method, r.url, r.headers, r.body_bytes(), r.batch_url)
             for r in want.requests], event.label
        assert got.skipped == want.skipped and got.deferred == want.deferred


class Colour(str, enum.Enum):
    RED = "red"


def test_what_marshal_cannot_hold_exactly_is_not_packed() -> None:
    base = track("Product Viewed", {"product_id": "1"}, visitor={"sc": "s"})
    kyiv = timezone(timedelta(hours=3))
    # A str enum (json.dumps writes its value, marshal would refuse or change it), a
    # timestamp with another offset, and subclasses keep the event as it is.
    assert pack(Event("track", "Product Viewed", properties={"colour": Colour.RED})) is None
    assert pack(Event("track", "X", timestamp=datetime(2024, 1, 1, tzinfo=kyiv))) is None

    class MyVisitor(Visitor):
        pass

    assert pack(Event("track", "X", visitor=MyVisitor(sc="s"))) is None
    assert pack(base) is not None


def _wait(predicate: Any, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def _canonical(message: Any) -> str:
    return json.dumps(message, sort_keys=True, ensure_ascii=False)


def test_events_that_waited_packed_reach_every_api_as_rendered_from_the_originals(
        apis: FourApis) -> None:
    for server in apis:
        server.stop()  # every API refuses connections
    config = apis.config()
    n = 40
    # One shopper each (no parking behind a busy visitor); every field type once more.
    events = [_product_viewed(i, sc=f"CDA68358-94FB-4D83-9655-{i:012d}") for i in range(n)]
    extra = _events()[:5]
    tracker = Tracker(config, max_retry_time=60, handle_signals=False, flush_at_exit=0.0,
                      **FAST)
    try:
        outbox = tracker.outbox
        assert isinstance(outbox, MemoryOutbox)
        tracker.capture(events[0])
        assert _wait(lambda: all(row["retried"] > 0 for row in tracker.stats().values()))
        for event in events[1:] + extra:
            tracker.capture(event)
        # Every lane is failing now: what waits in the three one-request-per-event
        # lanes waits packed (at most their four workers' deliveries are in flight).
        waiting = n - 1 + len(extra)
        assert _wait(lambda: outbox.packed_count() >= 3 * (waiting - 4)), \
            outbox.packed_count()
        for server in apis:
            server.start()
        assert tracker.flush(30)
        assert all(row["dead"] == 0 for row in tracker.stats().values())
    finally:
        tracker.shutdown(5)

    # What a lane sends for the original events, unpacked or never packed.
    for destination, server in apis.by_destination().items():
        want: Counter[str] = Counter()
        want_headers: dict[str, dict[str, str]] = {}
        for event in events + extra:
            for request in render_event(event, config, [destination]).requests:
                want[_canonical(request.json)] += 1
                want_headers[_canonical(request.json)] = request.headers
        got: Counter[str] = Counter()
        for request in server.accepted():
            body = request.json
            batch = isinstance(body, dict) and isinstance(body.get("batch"), list)
            for message in request.messages():
                got[_canonical(message)] += 1
                if not batch:  # a single request carries the message's own headers
                    headers = {k.lower(): v for k, v in request.headers.items()}
                    for name, value in want_headers[_canonical(message)].items():
                        assert headers.get(name.lower()) == value, (destination, name)
        assert got == want, destination


def test_only_lanes_whose_api_fails_keep_their_work_packed(apis: FourApis) -> None:
    """Packing costs CPU (about 5 µs to unpack per lane): a healthy lane, even a slow
    one with a queue, keeps its events as they are; a lane whose API fails packs what
    comes next, and stops once the API answers again."""
    outbox = MemoryOutbox()
    key_of = {}
    for i in range(3):
        assert outbox.put(_product_viewed(i))
    for key, item in outbox.take_new(10):
        assert isinstance(item, Event)
        key_of[key] = item
    outbox.set_failing("orangepill", True)
    outbox.route([Routing(k, e, dict.fromkeys(ALL_FOUR)) for k, e in key_of.items()])
    assert outbox.packed_count() == 3  # the failing lane only
    taken = outbox.next_for("orangepill", 10) + outbox.next_for("customerio", 10)
    assert [d.event for d in taken] == list(key_of.values()) * 2
    outbox.set_failing("orangepill", False)
    assert outbox.put(_product_viewed(9))
    outbox.route([Routing(k, e, dict.fromkeys(ALL_FOUR))
                  for k, e in outbox.take_new(10) if isinstance(e, Event)])
    assert outbox.packed_count() == 0

    # Through a lane: refused connections pack, a slow answering API does not.
    apis.tracker.stop()
    tracker = Tracker(apis.config(), max_retry_time=60, handle_signals=False,
                      flush_at_exit=0.0, **FAST)
    try:
        real = tracker.outbox
        assert isinstance(real, MemoryOutbox)
        tracker.capture(_product_viewed(0))
        assert _wait(lambda: tracker.stats()["yespo_tracker"]["retried"] > 0)
        for i in range(1, 20):  # one shopper each: none parks behind another
            tracker.capture(_product_viewed(i, sc=f"CDA68358-94FB-4D83-9655-{i:012d}"))
        assert _wait(lambda: real.packed_count() >= 10)
        apis.tracker.start()
        assert tracker.flush(30)
        apis.tracker.default = Reply(200, delay=0.05)
        for i in range(20, 60):
            tracker.capture(_product_viewed(i, sc=f"CDA68358-94FB-4D83-9655-{i:012d}"))
        assert _wait(lambda: real.queue_depths().get("yespo_tracker", 0) > 10)
        assert real.packed_count() == 0
        assert tracker.flush(30)
    finally:
        tracker.shutdown(5)


def test_a_delivery_parked_behind_its_visitor_stays_packed_until_sent(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The gate orders a packed delivery by the visitor key it came with: parking it
    costs no unpacking (during a recovery most deliveries park once)."""
    unpacked: list[bytes] = []

    def counting_unpack(packed: bytes) -> Event:
        unpacked.append(packed)
        return unpack(packed)

    monkeypatch.setattr(outbox_module, "unpack", counting_unpack)
    first, second = _product_viewed(1), _product_viewed(2)  # the same shopper
    held = Delivery(1, "yespo_tracker", packed=pack(first), visitor=visitor_key(first))
    parked = Delivery(2, "yespo_tracker", packed=pack(second), visitor=visitor_key(second))
    gate = VisitorGate()
    _, keys = gate.admit([held])
    assert gate.admit([parked]) == ([], [])
    assert unpacked == []
    assert gate.release(keys, 10)[0] == [parked]
    assert parked.event == second and len(unpacked) == 1
