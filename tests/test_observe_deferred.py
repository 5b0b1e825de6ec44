"""Events built on the tracker's sender thread (``capture_deferred``) are exactly the events
the middleware used to build on the request path; a deferred build that raises is counted
and never stops the events after it; durable outboxes and a closed tracker build at once;
what the view left that may not outlive the request keeps the direct path."""

from __future__ import annotations

import json
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from observe_support import ListTracker, recording_server
from test_example_shops import (
    FlaskShopper,
    api_config,
    by_api,
    check_api_traffic,
    fastapi_journey,
    flask_journey,
)

from cdptrack.asgi import CDPTrackMiddleware
from cdptrack.config import Config
from cdptrack.events import Event
from cdptrack.examples.fastapi_shop.app import create_app as create_fastapi_shop
from cdptrack.examples.flask_shop.app import create_app as create_flask_shop
from cdptrack.observe.declare import current, track
from cdptrack.tracker import Tracker

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

SC = "5C0FFEE0-0000-4000-8000-00000000CAFE"


class RecordingTracker(Tracker):
    """The real Tracker, remembering each event it was given or that a deferred build
    made (in the sender thread), in order."""

    def __init__(self, config: Config, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.events: list[Event] = []
        self.builds_in: set[str] = set()
        self.lock = threading.Lock()

    def capture(self, event: Any) -> None:
        with self.lock:
            self.events.append(event)
        super().capture(event)

    def capture_deferred(self, job: Any) -> None:
        def build() -> Sequence[Event]:
            events = job.build()
            with self.lock:
                self.builds_in.add(threading.current_thread().name)
                self.events.extend(events)
            return events

        super().capture_deferred(build)


def comparable(events: list[Event]) -> list[dict[str, Any]]:
    """The events as JSON, without what differs between any two runs (message ids,
    timestamps, the random order number)."""
    text = json.dumps([{k: v for k, v in e.to_dict().items()
                        if k not in ("message_id", "timestamp")} for e in events])
    for event in events:
        order_id = event.properties.get("order_id")
        if event.event == "Order Completed" and isinstance(order_id, str):
            text = text.replace(order_id, "ORD-X")
    result: list[dict[str, Any]] = json.loads(text)
    return result


def flask_run(defer: bool) -> tuple[RecordingTracker, dict[str, Any]]:
    with recording_server() as server:
        tracker = RecordingTracker(api_config(server.url))
        shop = FlaskShopper(create_flask_shop(tracker=tracker, defer_events=defer))
        shop.client.set_cookie("sc", SC)
        flask_journey(shop)
        assert tracker.flush(10)
        apis = by_api(server.snapshot())
        tracker.shutdown(5)
    return tracker, apis


def test_flask_shop_deferred_events_are_exactly_the_direct_events() -> None:
    deferred, deferred_apis = flask_run(defer=True)
    direct, direct_apis = flask_run(defer=False)
    assert deferred.builds_in == {"cdptrack-sender"}  # built off the request path
    assert direct.builds_in == set()
    assert len(deferred.events) > 20
    assert comparable(deferred.events) == comparable(direct.events)
    assert deferred_apis == direct_apis
    check_api_traffic(deferred_apis)


def fastapi_run(defer: bool) -> tuple[RecordingTracker, dict[str, Any]]:
    with recording_server() as server:
        tracker = RecordingTracker(api_config(server.url))
        with TestClient(create_fastapi_shop(tracker=tracker, defer_events=defer)) as client:
            client.cookies.set("sc", SC)
            fastapi_journey(client, None)
        assert tracker.flush(10)
        apis = by_api(server.snapshot())
        tracker.shutdown(5)
    return tracker, apis


def test_fastapi_shop_deferred_events_are_exactly_the_direct_events() -> None:
    deferred, deferred_apis = fastapi_run(defer=True)
    direct, direct_apis = fastapi_run(defer=False)
    assert deferred.builds_in == {"cdptrack-sender"}
    assert len(deferred.events) > 10
    assert comparable(deferred.events) == comparable(direct.events)
    assert deferred_apis == direct_apis
    check_api_traffic(deferred_apis)


# --- the Tracker's guarantees ---------------------------------------------------------------


def product_viewed(product_id: str) -> Event:
    return Event.from_dict({"type": "track", "event": "Product Viewed",
                            "visitor": {"sc": SC, "email": "jane@example.com"},
                            "properties": {"product_id": product_id, "price": 10}})


def cio_only(base: str) -> Config:
    return Config(customerio_api_key="cio-key", customerio_url=f"{base}/cio")


def sent_product_ids(server: Any) -> list[str]:
    ids: list[str] = []
    for request in server.snapshot():
        for message in request.body.get("batch", [request.body]):
            ids.append(message["properties"]["product_id"])
    return sorted(ids)


def test_a_build_that_raises_is_counted_and_later_events_still_go() -> None:
    def broken() -> list[Event]:
        raise RuntimeError("a bug in a build")

    with recording_server() as server:
        tracker = Tracker(cio_only(server.url))
        tracker.capture_deferred(lambda: [product_viewed("1"), product_viewed("2")])
        tracker.capture_deferred(broken)
        tracker.capture_deferred(lambda: [])  # a request with no events
        tracker.capture_deferred(lambda: [product_viewed("3")])
        tracker.capture(product_viewed("4"))
        tracker.capture_deferred(lambda: [{"type": "track"}])  # an invalid event
        assert tracker.flush(10)
        stats = tracker.stats()["customerio"]
        ids = sent_product_ids(server)
        tracker.shutdown(5)
    assert ids == ["1", "2", "3", "4"]
    assert stats["dropped:invalid"] == 2
    assert stats["sent"] == 4


def test_durable_outbox_builds_at_capture(tmp_path: Path) -> None:
    built_in: list[str] = []

    def build() -> list[Event]:
        built_in.append(threading.current_thread().name)
        return [product_viewed("7")]

    with recording_server() as server:
        tracker = Tracker(cio_only(server.url), outbox=f"sqlite:///{tmp_path / 'out.db'}")
        tracker.capture_deferred(build)
        assert built_in == [threading.current_thread().name]  # before capture returned
        assert tracker.pending() == 1  # stored as a plain event
        assert tracker.flush(10)
        ids = sent_product_ids(server)
        tracker.shutdown(5)
    assert ids == ["7"]


def test_after_shutdown_each_built_event_is_counted_as_dropped() -> None:
    tracker = Tracker(Config(customerio_api_key="cio-key", customerio_url="http://127.0.0.1:9"))
    tracker.shutdown(1)
    tracker.capture_deferred(lambda: [product_viewed("1"), product_viewed("2")])
    assert tracker.stats()["customerio"]["dropped:shutdown"] == 2


def test_something_without_build_is_refused_and_counted() -> None:
    tracker = Tracker(Config(customerio_api_key="cio-key", customerio_url="http://127.0.0.1:9"))
    tracker.capture_deferred(42)  # type: ignore[arg-type]
    assert tracker.stats()["customerio"]["dropped:error"] == 1
    tracker.shutdown(1)


# --- what the middleware defers ---------------------------------------------------------------


class DeferringListTracker(ListTracker):
    """Captures directly into the list; keeps deferred builds to run them later."""

    def __init__(self) -> None:
        super().__init__()
        self.jobs: list[Any] = []

    def capture_deferred(self, job: Any) -> None:
        self.jobs.append(job)

    def run_jobs(self) -> None:
        for job in self.jobs:
            self.events.extend(job.build())
        self.jobs.clear()


class OrmLikeProduct:
    """Not plain data: may not be readable after the request, or from another thread."""

    def __init__(self) -> None:
        self.id = "55"
        self.name = "Boot"
        self.price = 12.0


def asgi_shop(result: Any) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        state = current()
        assert state is not None
        state.view_result = result
        track.product(product_id="55")
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/html")]})
        await send({"type": "http.response.body", "body": b"<p>boot</p>"})
        track.event("Too Late", {"n": 1})  # after the response: ignored
    return app


def call(app: Any) -> None:
    import asyncio

    scope = {"type": "http", "method": "GET", "scheme": "https", "path": "/p/55",
             "query_string": b"", "root_path": "", "client": ("203.0.113.9", 1),
             "headers": [(b"host", b"shop.example"), (b"cookie", f"sc={SC}".encode())]}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        pass

    asyncio.run(app(scope, receive, send))


@pytest.mark.parametrize("result", [{"product": {"id": "55", "name": "Boot", "price": 12.0}},
                                    [1, 2], None])
def test_plain_view_results_are_deferred_and_give_the_same_events(result: Any) -> None:
    deferring, direct = DeferringListTracker(), ListTracker()
    call(CDPTrackMiddleware(asgi_shop(result), deferring))
    call(CDPTrackMiddleware(asgi_shop(result), direct))
    assert deferring.events == [] and len(deferring.jobs) == 1
    deferring.run_jobs()
    assert comparable(deferring.events) == comparable(direct.events)
    assert deferring.labels() == ["page", "Product Viewed"]


def test_objects_from_the_view_are_read_on_the_request_and_then_deferred() -> None:
    tracker = DeferringListTracker()
    product = OrmLikeProduct()
    call(CDPTrackMiddleware(asgi_shop({"product": product}), tracker))
    assert len(tracker.jobs) == 1 and tracker.events == []
    product.name = "changed after the request"  # the record holds plain data, not it
    del product.price
    tracker.run_jobs()
    assert tracker.labels() == ["page", "Product Viewed"]
    props = tracker.one("Product Viewed").properties
    assert (props["name"], props["price"]) == ("Boot", 12.0)


def test_defer_events_false_builds_on_the_request_path() -> None:
    tracker = DeferringListTracker()
    call(CDPTrackMiddleware(asgi_shop(None), tracker, defer_events=False))
    assert tracker.jobs == [] and tracker.labels() == ["page", "Product Viewed"]


def test_a_deferred_record_holds_no_request_objects() -> None:
    tracker = DeferringListTracker()
    call(CDPTrackMiddleware(asgi_shop(None), tracker))
    (job,) = tracker.jobs
    state = job._state
    assert state.raw is None and state.request is None and state.user is None


def test_a_cart_changed_in_place_is_compared_as_it_was_before_the_view() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope["session"]["cart"]["55"]["quantity"] += 2  # in place, as many shops do
        scope["session"]["cart"]["56"] = 1
        await send({"type": "http.response.start", "status": 303, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def run(tracker: Any) -> None:
        import asyncio

        scope = {"type": "http", "method": "POST", "scheme": "https", "path": "/cart/add",
                 "query_string": b"", "root_path": "", "client": ("203.0.113.9", 1),
                 "headers": [(b"cookie", f"sc={SC}".encode())],
                 "session": {"cart": {"55": {"product_id": "55", "quantity": 1}}}}

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b""}

        async def send(message: Any) -> None:
            pass

        asyncio.run(CDPTrackMiddleware(app, tracker)(scope, receive, send))

    deferring, direct = DeferringListTracker(), ListTracker()
    run(deferring)
    run(direct)
    assert len(deferring.jobs) == 1
    deferring.run_jobs()
    cart = deferring.one("Cart Updated").properties
    assert cart["added"] == [{"product_id": "55", "quantity": 2},
                             {"product_id": "56", "quantity": 1}]
    assert comparable(deferring.events) == comparable(direct.events)


def test_a_discarded_build_leaves_the_order_and_later_builds_run_without_it() -> None:
    from cdptrack.observe.deferred import BuildOrder, RequestEvents
    from cdptrack.observe.state import RequestState

    ran: list[str] = []

    def builder(state: RequestState, identity: Any) -> list[Event]:
        ran.append(state.path)
        return []

    def job(path: str) -> RequestEvents:
        state = RequestState("GET", "http", "shop.test", path, "", "", None, None, None,
                             {}, None)
        return RequestEvents(builder, state, None, order)

    order = BuildOrder()
    first, second, third = job("/a"), job("/b"), job("/c")
    assert len(order) == 3
    first.discard()  # the usual case: thrown away in hand-over order
    second.discard()
    assert len(order) == 1
    third.build()
    assert ran == ["/c"] and len(order) == 0
    fourth, fifth = job("/d"), job("/e")
    fifth.discard()  # out of order: removed from the middle
    fourth.build()
    assert ran == ["/c", "/d"] and len(order) == 0
    fifth.discard()  # twice: nothing more happens
    assert len(order) == 0


def test_a_session_the_view_left_alone_is_copied_once_and_a_changed_one_again() -> None:
    from cdptrack.observe.options import ObserveOptions
    from cdptrack.observe.session import resolve_snapshots, snapshot_after, snapshot_later

    options = ObserveOptions()
    session: dict[str, Any] = {"cart": {"p1": {"product_id": "p1", "quantity": 1}},
                               "user": {"id": "u1", "email": "a@example.com"}}
    before = snapshot_later(session, options)
    assert snapshot_after(session, before, options) is before  # untouched: no copy

    session["cart"]["p1"]["quantity"] = 3  # changed in place, as views do
    after = snapshot_after(session, before, options)
    assert after is not before
    resolve_snapshots(before, after, options)
    assert before.cart is not None and after.cart is not None
    assert before.cart["p1"]["quantity"] == 1 and after.cart["p1"]["quantity"] == 3
