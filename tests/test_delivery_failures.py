"""APIs that refuse connections, answer 503 or 429, answer slowly, or refuse a message:
every accepted event still arrives at every API (at least once, with the same ids on
every attempt), or ends in the dead-letter store with the API's answer."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from email.utils import formatdate

from support.api_server import ApiServer, Reply
from support.delivery import (
    FAST,
    FourApis,
    all_arrived,
    apis_fixture,  # noqa: F401 - the "apis" fixture
    marker,
    markers_received,
    product_viewed,
)

from cdptrack.tracker import Tracker


def _wait(predicate: object, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


def _ids_per_marker(server: ApiServer) -> dict[str, set[str]]:
    """marker -> the ids every attempt carried (Customer.io messageId, Orangepill
    idempotency-key), over all requests, failed ones included."""
    ids: dict[str, set[str]] = defaultdict(set)
    for request, message in server.received_messages():
        text = json.dumps(message)
        start = text.find("sku-")
        if start == -1:
            continue
        key = text[start:start + 9]
        if isinstance(message, dict) and "messageId" in message:
            ids[key].add(message["messageId"])
        elif "idempotency-key" in {h.lower() for h in request.headers}:
            ids[key].add({k.lower(): v for k, v in request.headers.items()}["idempotency-key"])
    return ids


def test_refused_connections_then_recovery(apis: FourApis) -> None:
    for server in apis:
        server.stop()
    tracker = Tracker(apis.config(), max_retry_time=60, **FAST)
    for i in range(20):
        tracker.capture(product_viewed(i))
    assert _wait(lambda: all(row["retried"] > 0 for row in tracker.stats().values()))
    assert not tracker.flush(0.2)  # nothing can be delivered yet
    for server in apis:
        server.start()
    assert tracker.flush(30)
    assert all_arrived(apis, 20)
    assert all(row["dead"] == 0 for row in tracker.stats().values())
    tracker.shutdown()


def test_503s_are_retried_with_the_same_ids(apis: FourApis) -> None:
    for server in apis:
        server.fail_next(3, Reply(503, '{"error": "busy"}'))
    tracker = Tracker(apis.config(), **FAST)
    for i in range(10):
        tracker.capture(product_viewed(i))
    assert tracker.flush(30)
    assert all_arrived(apis, 10)
    for server in (apis.customerio, apis.orangepill):
        assert any(r.status == 503 for r in server.received())
        ids = _ids_per_marker(server)
        assert set(ids) == {marker(i) for i in range(10)}
        assert all(len(v) == 1 for v in ids.values()), ids
    assert all(row["retried"] >= 3 for row in tracker.stats().values())
    tracker.shutdown()


def test_429_retry_after_is_honoured(apis: FourApis) -> None:
    # Backoff alone would wait 15-30 s; Retry-After says 0 s (and an HTTP date in the
    # past), so delivery well within the flush timeout shows the header won.
    apis.customerio.fail_next(2, Reply(429, headers={"Retry-After": "0"}))
    apis.orangepill.fail_next(2, Reply(429, headers={"Retry-After": formatdate(0, usegmt=True)}))
    tracker = Tracker(apis.config(), backoff=30, max_backoff=30, max_retry_time=120)
    tracker.capture(product_viewed(1))
    assert tracker.flush(10)
    assert marker(1) in markers_received(apis.customerio)
    assert marker(1) in markers_received(apis.orangepill)
    assert tracker.stats()["customerio"]["retried"] == 2
    tracker.shutdown()


def test_huge_retry_after_is_clamped(apis: FourApis) -> None:
    apis.customerio.fail_next(1, Reply(429, headers={"Retry-After": "86400"}))
    tracker = Tracker(apis.config(), **FAST)  # max_retry_after=0.2
    tracker.capture(product_viewed(1))
    assert tracker.flush(10)
    assert marker(1) in markers_received(apis.customerio)
    tracker.shutdown()


def test_slow_api_times_out_and_the_duplicate_carries_the_same_id(apis: FourApis) -> None:
    for server in (apis.customerio, apis.orangepill):
        server.fail_next(2, Reply(200, delay=1.0))  # answers after the client gave up
    tracker = Tracker(apis.config(), timeout=0.2, **FAST)
    for i in range(3):
        tracker.capture(product_viewed(i))
    assert tracker.flush(30)
    assert all_arrived(apis, 3)
    for server in (apis.customerio, apis.orangepill):
        ids = _ids_per_marker(server)
        assert all(len(v) == 1 for v in ids.values()), ids
        seen = markers_received(server)  # the slow answers were 200s: real duplicates
        assert any(len(copies) > 1 for copies in seen.values()), "no duplicate arrived"
    assert tracker.stats()["orangepill"]["retried"] >= 2
    tracker.shutdown()


def test_a_dead_api_does_not_delay_the_others(apis: FourApis) -> None:
    apis.orangepill.stop()
    tracker = Tracker(apis.config(), max_retry_time=300, **FAST)
    for i in range(15):
        tracker.capture(product_viewed(i))
    wanted = {marker(i) for i in range(15)}
    for server in (apis.tracker, apis.events, apis.customerio):
        assert server.wait_until(lambda s: set(markers_received(s)) >= wanted)
    assert tracker.stats()["orangepill"]["sent"] == 0  # still retrying meanwhile
    apis.orangepill.start()
    assert tracker.flush(30)
    assert set(markers_received(apis.orangepill)) == wanted
    tracker.shutdown()


def test_retries_stop_at_the_deadline_and_dead_letter(apis: FourApis) -> None:
    apis.events.default = Reply(503, '{"error": "down for maintenance"}')
    errors: list[object] = []
    tracker = Tracker(apis.config(), max_retry_time=0.3, on_error=errors.append, **FAST)
    tracker.capture(product_viewed(1))
    assert tracker.flush(10)  # dead-lettered counts as settled
    [letter] = tracker.dead_letters()
    assert letter.destination == "yespo_events"
    assert letter.status == 503 and letter.reason == "retry_time_exceeded"
    assert letter.attempts > 1 and "maintenance" in letter.response
    assert [e.message_id for e in errors] == [letter.message_id]  # type: ignore[attr-defined]
    assert tracker.stats()["customerio"]["sent"] == 1
    tracker.shutdown()


def test_a_400_is_dead_lettered_with_the_response_and_not_retried(apis: FourApis) -> None:
    apis.orangepill.default = Reply(400, '{"message": "unknown event definition"}')
    tracker = Tracker(apis.config(), **FAST)
    tracker.capture(product_viewed(7))
    assert tracker.flush(10)
    [letter] = tracker.dead_letters()
    assert (letter.destination, letter.status, letter.attempts) == ("orangepill", 400, 1)
    assert "unknown event definition" in letter.response
    assert letter.event["properties"]["product_id"] == marker(7)
    assert letter.request["headers"]["x-api-key"] == "<redacted>"
    assert len(apis.orangepill.received()) == 1
    stats = tracker.stats()["orangepill"]
    assert (stats["dead"], stats["retried"]) == (1, 0)
    tracker.shutdown()


def test_a_refused_batch_is_split_and_only_the_bad_message_dies(apis: FourApis) -> None:
    def reject_poison(path: str, body: bytes) -> Reply | None:
        return Reply(400, '{"error": "invalid message"}') if b"sku-00003" in body else None

    apis.customerio.responder = reject_poison
    apis.customerio.script("/", Reply(200, delay=0.3))  # let a queue (a batch) form
    tracker = Tracker(apis.config(), **FAST)
    for i in range(8):
        tracker.capture(product_viewed(i))
    assert tracker.flush(20)
    assert any(r.path.endswith("/batch") and r.status == 400
               for r in apis.customerio.received()), "no batch was refused"
    assert set(markers_received(apis.customerio)) == {marker(i) for i in range(8)} - {
        marker(3)}
    [letter] = tracker.dead_letters()
    assert letter.url.endswith("/track") and letter.status == 400
    tracker.shutdown()
