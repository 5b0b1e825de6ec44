"""Orangepill identity provisioning: a signed-in user without ``orangepill_identity`` gets
a Person and Identity (``POST /v1/identities/person``, spec 000) before their person
events are sent, once per user across retries, restarts and a fleet; the events wait
for it (bounded), and go to dead letters with the reason when it cannot be had.

Everything runs against the real local sink (which answers that endpoint as the spec
shows and validates the body), with the real tracker, sender and outboxes (memory,
SQLite file, a real redis-server)."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import redis_server
from support.api_server import ApiServer, Reply
from support.redis_server import RedisServer
from support.servers import wait_for as wait_until

from cdptrack import Tracker
from cdptrack.config import Config
from cdptrack.destinations import orangepill, render_event
from cdptrack.events import Event
from cdptrack.sink import Sink
from cdptrack.sink.faults import Fault

KEY = "op-test-key-0123456789"


class FailFirst:
    """A sink failure plan: the first ``n`` API requests get ``mode``, the rest pass."""

    def __init__(self, n: int, mode: str) -> None:
        self.left = n
        self.mode = mode
        self._lock = threading.Lock()

    def next(self) -> Fault | None:
        with self._lock:
            if self.left <= 0:
                return None
            self.left -= 1
            return Fault(self.mode, retry_after=0)

    def describe(self) -> dict[str, Any]:
        return {"first": self.left, "mode": self.mode}


@pytest.fixture
def sink() -> Iterator[Sink]:
    with Sink() as running:
        yield running


def config_for(sink: Sink, **extra: Any) -> Config:
    return Config(orangepill_api_key=KEY, orangepill_url=sink.base_urls()["orangepill"],
                  **extra)


def signed_in(user_id: str = "u-17", email: str = "jane@example.com", **visitor: Any
              ) -> dict[str, Any]:
    return {"sc": "CDA68358-94FB-4D83-9655-3FEB3C4114A3", "user_id": user_id,
            "email": email, **visitor}


def journey(user_id: str = "u-17", email: str = "jane@example.com") -> list[dict[str, Any]]:
    who = signed_in(user_id, email, name="Jane Smith")
    return [
        {"type": "identify", "visitor": who, "traits": {"name": "Jane Smith"}},
        {"type": "track", "event": "Product Viewed", "visitor": who,
         "properties": {"product_id": "72354", "price": 754, "currency": "USD"}},
        {"type": "track", "event": "Order Completed", "visitor": who,
         "properties": {"order_id": "o-1", "total": 754, "currency": "USD",
                        "products": [{"product_id": "72354", "price": 754, "quantity": 1}]}},
    ]


def creates(sink: Sink) -> list[dict[str, Any]]:
    return [r for r in sink.requests("orangepill") if r["event"] == "create person"]


def person_calls(sink: Sink) -> list[dict[str, Any]]:
    return [r for r in sink.requests("orangepill") if r["event"] != "create person"]



def run(tracker: Tracker, events: list[dict[str, Any]], timeout: float = 20.0) -> None:
    for event in events:
        tracker.capture(event)
    assert tracker.flush(timeout)


def identity_in_path(record: dict[str, Any]) -> str:
    return str(record["path"]).split("/identities/")[1].split("/")[0]


# -- the pure parts ------------------------------------------------------------------------


def test_a_signed_in_user_without_identity_is_deferred_not_skipped() -> None:
    config = Config(orangepill_api_key=KEY)
    event = Event.from_dict(journey()[1])
    rendered = render_event(event, config, ["orangepill"])
    assert rendered.requests == [] and rendered.skipped == []
    assert rendered.deferred == [("orangepill", "no_identity")]
    anonymous = Event.from_dict({"type": "track", "event": "Product Viewed",
                                 "visitor": {"sc": "A1"}, "properties": {"product_id": "1"}})
    assert render_event(anonymous, config, ["orangepill"]).skipped == [
        ("orangepill", "no_identity")]


def test_the_create_request_follows_the_spec_and_its_key_depends_on_user_and_realm() -> None:
    config = Config(orangepill_api_key=KEY)
    event = Event.from_dict(journey()[0])
    request = orangepill.create_person(event, config)
    assert request.method == "POST"
    assert request.url == "https://api.orangepill.cloud/v1/identities/person"
    assert request.json == {"type": "person", "person": {
        "firstName": "Jane", "lastName": "Smith",
        "contactInformation": {"email": [{"address": "jane@example.com"}]}}}
    key = request.headers["idempotency-key"]
    assert KEY not in key and KEY not in repr(request)
    # The same user → the same key, whatever the event; another user or realm → another.
    again = orangepill.create_person(Event.from_dict(journey()[2]), config)
    assert again.headers["idempotency-key"] == key
    assert orangepill.create_person(Event.from_dict(journey("u-18")[0]), config
                                    ).headers["idempotency-key"] != key
    other_realm = Config(orangepill_api_key=KEY + "x")
    assert orangepill.create_person(event, other_realm).headers["idempotency-key"] != key


# -- delivery against the sink -------------------------------------------------------------


def test_person_events_wait_for_the_created_identity_and_carry_it(sink: Sink) -> None:
    seen: list[tuple[str, str]] = []
    tracker = Tracker(config_for(sink), on_identity=lambda u, i: seen.append((u, i)),
                      handle_signals=False)
    try:
        run(tracker, journey())
    finally:
        tracker.shutdown(5)
    made = creates(sink)
    assert len(made) == 1 and made[0]["valid"], made
    assert made[0]["status"] == 200
    identity = made[0]["response"]["id"]
    assert made[0]["body"]["person"]["contactInformation"] == {
        "email": [{"address": "jane@example.com"}]}
    calls = person_calls(sink)
    assert sorted(c["event"] for c in calls) == ["orderCompleted", "person update",
                                                 "productViewed"]
    assert {identity_in_path(c) for c in calls} == {identity}
    assert seen == [("u-17", identity)]
    assert all(c["valid"] for c in calls)
    assert tracker.stats()["orangepill"]["identity_created"] == 1


def test_a_restart_on_the_same_sqlite_file_creates_no_second_person(
        sink: Sink, tmp_path: Path) -> None:
    outbox = f"sqlite:///{tmp_path / 'outbox.db'}"
    seen: list[tuple[str, str]] = []
    first = Tracker(config_for(sink), outbox=outbox, on_identity=lambda u, i:
                    seen.append((u, i)), handle_signals=False)
    try:
        run(first, journey()[:2])
    finally:
        first.shutdown(5)
    second = Tracker(config_for(sink), outbox=outbox, on_identity=lambda u, i:
                     seen.append((u, i)), handle_signals=False)
    try:
        run(second, journey()[1:])
    finally:
        second.shutdown(5)
    assert len(creates(sink)) == 1
    calls = person_calls(sink)
    assert len(calls) == 4
    assert len({identity_in_path(c) for c in calls}) == 1
    assert len(seen) == 1  # told once: the second process already knew the id


def test_retried_creates_with_one_key_make_one_person(sink: Sink) -> None:
    sink.failures = FailFirst(2, "503")  # type: ignore[assignment]
    tracker = Tracker(config_for(sink), backoff=0.01, max_backoff=0.05,
                      handle_signals=False)
    try:
        run(tracker, journey())
    finally:
        tracker.shutdown(5)
    made = creates(sink)
    assert [r["status"] for r in made] == [503, 503, 200]
    keys = {r["headers"].get("idempotency-key") for r in made}
    assert len(keys) == 1
    calls = person_calls(sink)
    assert len(calls) == 3 and len({identity_in_path(c) for c in calls}) == 1
    assert tracker.stats()["orangepill"]["dead"] == 0


def test_a_refused_create_dead_letters_the_waiting_events_with_the_reason(
        sink: Sink) -> None:
    sink.failures = FailFirst(1, "422")  # type: ignore[assignment]
    letters: list[Any] = []
    tracker = Tracker(config_for(sink), on_error=letters.append, handle_signals=False)
    try:
        run(tracker, journey())
        dead = tracker.dead_letters(destination="orangepill")
    finally:
        tracker.shutdown(5)
    assert len(creates(sink)) == 1  # the refusal is remembered, not asked again
    assert person_calls(sink) == []
    assert len(dead) == 3 and len(letters) == 3
    assert {d.reason for d in dead} == {"identity_rejected"}
    assert {d.status for d in dead} == {422}
    assert all(d.url.endswith("/identities/person") for d in dead)
    assert {d.message_id for d in dead} == {d.event["message_id"] for d in dead}
    assert all(KEY not in repr(d) for d in dead)
    assert tracker.stats()["orangepill"]["dead"] == 3


def test_an_existing_person_is_found_and_its_identity_used(sink: Sink) -> None:
    # Another system (or an older key) created the person for this e-mail first.
    first = Tracker(config_for(sink), handle_signals=False)
    try:
        run(first, journey("legacy-1")[:1])
    finally:
        first.shutdown(5)
    (original,) = {identity_in_path(c) for c in person_calls(sink)}
    seen: list[tuple[str, str]] = []
    tracker = Tracker(config_for(sink), on_identity=lambda u, i: seen.append((u, i)),
                      handle_signals=False)
    try:
        run(tracker, journey("u-17")[1:])
        stats = tracker.stats()["orangepill"]
    finally:
        tracker.shutdown(5)
    assert [r["status"] for r in creates(sink)] == [200, 409]
    later = person_calls(sink)[1:]
    assert len(later) == 2 and {identity_in_path(c) for c in later} == {original}
    assert seen == [("u-17", original)]
    assert stats["identity_found"] == 1 and stats["dead"] == 0


def test_a_raising_on_identity_is_counted_and_delivery_goes_on(sink: Sink) -> None:
    def broken(user_id: str, identity: str) -> None:
        raise RuntimeError("shop database down")

    tracker = Tracker(config_for(sink), on_identity=broken, handle_signals=False)
    try:
        run(tracker, journey())
        stats = tracker.stats()["orangepill"]
    finally:
        tracker.shutdown(5)
    assert len(person_calls(sink)) == 3
    assert stats["on_identity_error"] == 1 and stats["sent"] == 3


def test_other_destinations_do_not_wait_for_the_identity(sink: Sink) -> None:
    # Orangepill's create is held until the test lets it go; Customer.io (at the sink)
    # gets the three events meanwhile.
    release = threading.Event()

    def orangepill_api(path: str, body: bytes) -> Reply | None:
        if path.endswith("/identities/person"):
            release.wait(30)
            return Reply(200, json.dumps({"id": "634b56217f6a7b0be52dffbd",
                                          "type": "person"}))
        return Reply(200, "{}")

    with ApiServer() as api:
        api.responder = orangepill_api
        config = Config(orangepill_api_key=KEY, orangepill_url=api.url + "/v1",
                        customerio_api_key="cio-key",
                        customerio_url=sink.base_urls()["customerio"])
        tracker = Tracker(config, handle_signals=False)
        try:
            for event in journey():
                tracker.capture(event)
            assert sink.wait_for(3, timeout=20, api="customerio")
            assert api.received() == []  # the create is still unanswered
            release.set()
            assert tracker.flush(20)
        finally:
            release.set()
            tracker.shutdown(5)
        paths = [r.path for r in api.received()]
    assert paths[0] == "/v1/identities/person"
    assert sorted(paths[1:]) == sorted([
        "/v1/identities/634b56217f6a7b0be52dffbd/person",
        "/v1/identities/634b56217f6a7b0be52dffbd/person/event/productViewed",
        "/v1/identities/634b56217f6a7b0be52dffbd/person/event/orderCompleted"])


def test_a_visitor_with_neither_email_nor_phone_is_skipped_with_no_identity(
        sink: Sink) -> None:
    tracker = Tracker(config_for(sink), handle_signals=False)
    try:
        run(tracker, [{"type": "track", "event": "Product Viewed",
                       "visitor": {"sc": "A1", "user_id": "u-9"},
                       "properties": {"product_id": "1", "price": 1}}])
        stats = tracker.stats()["orangepill"]
    finally:
        tracker.shutdown(5)
    assert sink.requests("orangepill") == []
    assert stats["skipped:no_identity"] == 1


@pytest.mark.skipif(not redis_server.available(), reason="redis-server is not installed")
def test_a_fleet_on_one_redis_creates_each_person_once(sink: Sink, tmp_path: Path) -> None:
    # Two web processes that are workers too (Redis flush() means "in Redis", so the
    # test waits for what the sink received).
    with RedisServer(tmp_path) as server:
        url = server.url(prefix=f"t{uuid.uuid4().hex[:8]}", role="worker")
        trackers = [Tracker(config_for(sink), outbox=url, handle_signals=False)
                    for _ in range(2)]
        try:
            for tracker, event in zip([*trackers, *trackers], journey(), strict=False):
                tracker.capture(event)
            # The person events themselves (one or two creates arrive as well).
            assert wait_until(lambda: len(person_calls(sink)) >= 3, 30)
        finally:
            for tracker in trackers:
                tracker.shutdown(5)
        # The fleet restarted: the id is still known there.
        again = Tracker(config_for(sink), outbox=url, handle_signals=False)
        try:
            again.capture(journey()[1])
            assert wait_until(lambda: len(person_calls(sink)) >= 4, 30)
        finally:
            again.shutdown(5)
    # Two processes may ask at the same moment: with one key, Orangepill runs it once.
    made = creates(sink)
    assert len([r for r in made if not r["duplicate"]]) == 1
    assert len({r["headers"]["idempotency-key"] for r in made}) == 1
    calls = person_calls(sink)
    assert len(calls) == 4 and len({identity_in_path(c) for c in calls}) == 1
