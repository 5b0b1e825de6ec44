"""The Tracker facade against four real local APIs: delivery, counting, callbacks,
lifecycle, dry run, and keys kept out of logs."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from support.api_server import Reply
from support.delivery import (
    FAST,
    SECRETS,
    FourApis,
    all_arrived,
    apis_fixture,  # noqa: F401 - the "apis" fixture
    marker,
    markers_received,
    product_viewed,
)

from cdptrack.config import ConfigError
from cdptrack.events import track
from cdptrack.tracker import Tracker


def test_every_event_reaches_every_api(apis: FourApis) -> None:
    tracker = Tracker(apis.config(), **FAST)
    for i in range(30):
        tracker.capture(product_viewed(i))
    assert tracker.flush(20)
    assert all_arrived(apis, 30)
    stats = tracker.stats()
    for name in ("yespo_tracker", "yespo_events", "customerio", "orangepill"):
        assert stats[name]["enqueued"] == stats[name]["sent"] == 30
        assert stats[name]["dead"] == stats[name]["dropped"] == 0
    assert tracker.shutdown()


def test_customerio_messages_are_coalesced_into_batches(apis: FourApis) -> None:
    tracker = Tracker(apis.config(), **FAST)
    apis.customerio.script("/", Reply(200, delay=0.3))  # first request slow: a queue forms
    for i in range(60):
        tracker.capture(product_viewed(i))
    assert tracker.flush(20)
    batches = apis.customerio.accepted("/v1/batch")
    assert batches, "no /batch request was made"
    for request in batches:
        messages = request.json["batch"]
        assert all(m["type"] == "track" and m["messageId"] for m in messages)
    assert set(markers_received(apis.customerio)) == {marker(i) for i in range(60)}
    assert len(apis.customerio.accepted()) < 60  # fewer requests than messages
    tracker.shutdown()


def test_capture_never_raises_and_bad_events_are_counted(apis: FourApis) -> None:
    dropped: list[tuple[Any, str, str]] = []
    tracker = Tracker(apis.config(), on_drop=lambda e, d, r: dropped.append((e, d, r)),
                      **FAST)
    tracker.capture({"type": "track"})  # no event name: invalid
    tracker.capture({"type": "track", "event": "Product Viewed",
                     "properties": {"price": "not a number"}})
    tracker.capture(None)  # type: ignore[arg-type]
    tracker.capture("Product Viewed")  # type: ignore[arg-type]
    tracker.capture({"type": "track", "event": "Product Viewed",
                     "visitor": {"sc": "X", "email": "a@b.example"}, "when": object()})
    assert tracker.flush(20)
    stats = tracker.stats()
    assert stats["customerio"]["dropped:invalid"] == 4
    assert stats["customerio"]["sent"] == 1
    reasons = {(d, r) for _, d, r in dropped}
    assert ("yespo_events", "invalid") in reasons
    tracker.shutdown()


def test_events_skipped_by_design_are_counted_apart_from_drops(apis: FourApis) -> None:
    dropped: list[tuple[str, str]] = []
    tracker = Tracker(apis.config(), on_drop=lambda e, d, r: dropped.append((d, r)), **FAST)
    # No contact key (Yespo v1/event) and no Orangepill identity.
    tracker.capture(track("Product Viewed", {"product_id": "1"}, visitor={"sc": "ABC"}))
    assert tracker.flush(20)
    stats = tracker.stats()
    assert stats["yespo_events"]["skipped:no_contact_key"] == 1
    assert stats["yespo_events"]["skipped"] == 1
    assert stats["yespo_events"]["dropped"] == 0
    assert stats["orangepill"]["skipped:no_identity"] == 1
    assert stats["orangepill"]["dropped"] == 0
    assert ("yespo_events", "no_contact_key") in dropped
    assert stats["customerio"]["sent"] == 1
    tracker.shutdown()


def test_events_an_api_has_no_form_for_are_skipped_not_dropped(apis: FourApis) -> None:
    tracker = Tracker(apis.config(), **FAST)
    tracker.capture(track("Product Impressions",
                          {"products": [{"product_id": "1", "container_type": "7"}]},
                          visitor={"sc": "ABC", "email": "a@b.example",
                                   "orangepill_identity": "op-1"}))
    assert tracker.flush(20)
    stats = tracker.stats()
    assert stats["yespo_tracker"]["sent"] == 1
    for name in ("yespo_events", "customerio", "orangepill"):
        assert stats[name]["skipped:no_mapping"] == stats[name]["skipped"] == 1
        assert stats[name]["dropped"] == 0
    tracker.shutdown()


def test_a_raising_callback_does_not_kill_the_sender(apis: FourApis) -> None:
    def explode(*args: Any) -> None:
        raise RuntimeError("callback bug")

    apis.events.default = Reply(400, '{"error": "bad"}')
    tracker = Tracker(apis.config(), on_drop=explode, on_error=explode, **FAST)
    tracker.capture(track("Product Viewed", {"product_id": "1"}, visitor={"sc": "ABC"}))
    for i in range(5):
        tracker.capture(product_viewed(i))
    assert tracker.flush(20)
    assert set(markers_received(apis.customerio)) == {marker(i) for i in range(5)}
    assert tracker.stats()["yespo_events"]["dead"] == 5
    tracker.shutdown()


def test_dry_run_builds_and_logs_but_sends_nothing(apis: FourApis,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cdptrack")
    tracker = Tracker(apis.config(dry_run=True), **FAST)
    for i in range(3):
        tracker.capture(product_viewed(i))
    assert tracker.flush(20)
    assert all(not server.received() for server in apis)
    stats = tracker.stats()
    assert all(row["dry_run"] == 3 and row["sent"] == 0 for row in stats.values())
    assert "dry run" in caplog.text and "sku-00001" in caplog.text
    for secret in SECRETS:
        assert secret not in caplog.text
    tracker.shutdown()


def test_api_keys_never_reach_the_logs(apis: FourApis, caplog: pytest.LogCaptureFixture
                                       ) -> None:
    caplog.set_level(logging.DEBUG)
    for server in apis:
        # An API that echoes the credentials back in its error: scrubbed before storing.
        server.default = Reply(401, '{"error": "bad key cio-SECRET-key-5678 op-SECRET-key-9012'
                                    ' yespo-SECRET-key-1234"}')
    tracker = Tracker(apis.config(), **FAST)
    tracker.capture(product_viewed(1))
    assert tracker.flush(20)
    letters = tracker.dead_letters()
    assert len(letters) == 4
    text = caplog.text + repr(tracker) + repr(letters) + repr(tracker.config)
    for secret in SECRETS:
        assert secret not in text
    assert all(letter.status == 401 for letter in letters)
    tracker.shutdown()


def test_shutdown_stops_intake_and_is_idempotent(apis: FourApis) -> None:
    tracker = Tracker(apis.config(), **FAST)
    tracker.capture(product_viewed(0))
    assert tracker.shutdown(10)
    assert tracker.shutdown(10)
    tracker.capture(product_viewed(1))
    assert tracker.stats()["customerio"]["dropped:shutdown"] == 1
    assert set(markers_received(apis.customerio)) == {marker(0)}


def test_construction_is_cheap_and_starts_nothing(apis: FourApis) -> None:
    import threading

    before = {t.name for t in threading.enumerate()}
    tracker = Tracker(apis.config())
    assert "cdptrack-sender" not in {t.name for t in threading.enumerate()} - before
    assert tracker.flush(1)  # nothing accepted, nothing to wait for
    assert tracker.shutdown(1)


def test_memory_queue_is_bounded_per_destination(apis: FourApis) -> None:
    apis.orangepill.default = Reply(200, delay=2.0)  # one slow API holds its lane
    tracker = Tracker(apis.config(), max_queue=5, timeout=10, **FAST)
    for start in range(0, 40, 4):
        for i in range(start, start + 4):
            tracker.capture(product_viewed(i))
        # The other APIs keep getting everything while the slow one holds its lane...
        want = start + 4
        for api in (apis.customerio, apis.tracker, apis.events):
            assert api.wait_until(lambda s, n=want: len(markers_received(s)) == n), (
                tracker.stats())
    # ...which drops what does not fit instead of growing without bound.
    stats = tracker.stats()
    assert stats["orangepill"]["dropped:queue_full"] > 0
    assert stats["customerio"]["dropped"] == 0
    tracker.shutdown(0.5)


def test_outbox_urls_are_checked_when_the_tracker_is_built() -> None:
    assert Tracker(outbox="redis://127.0.0.1:1/0").outbox.durable  # nothing connects yet
    assert Tracker(outbox="sqlite:///never-opened.db").outbox.durable
    with pytest.raises(ConfigError, match="outbox"):
        Tracker(outbox="postgres://nope")


def test_config_defaults_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDPTRACK_CUSTOMERIO_API_KEY", "from-env")
    monkeypatch.setenv("CDPTRACK_OUTBOX", "memory")
    tracker = Tracker()
    assert tracker.config.enabled() == ("customerio",)


def test_async_lifecycle_from_an_event_loop(apis: FourApis) -> None:
    async def app() -> tuple[bool, bool]:
        tracker = Tracker(apis.config(), **FAST)
        await tracker.astart()
        for i in range(10):
            tracker.capture(product_viewed(i))
        # The app's loop keeps running while we wait.
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.001)
                ticks += 1

        task = asyncio.create_task(ticker())
        flushed = await tracker.aflush(20)
        task.cancel()
        assert ticks > 0
        return flushed, await tracker.ashutdown(5)

    assert asyncio.run(app()) == (True, True)
    assert all_arrived(apis, 10)


def test_shutdown_logs_the_counters_as_a_table(apis: FourApis,
                                               caplog: pytest.LogCaptureFixture) -> None:
    tracker = Tracker(apis.config(), **FAST)
    tracker.capture(track("Product Viewed", {"product_id": "1"}, visitor={"sc": "ABC"}))
    assert tracker.flush(20)
    with caplog.at_level(logging.INFO, logger="cdptrack.summary"):
        tracker.shutdown(5)
    [record] = [r for r in caplog.records if r.name == "cdptrack.summary"]
    lines = record.getMessage().splitlines()
    assert lines[0] == "shut down (drained):"
    assert lines[1].split() == ["destination", "enqueued", "sent", "retried", "skipped",
                                "dropped", "dead", "reasons"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    assert rows["customerio"][:6] == ["1", "1", "0", "0", "0", "0"]
    assert rows["yespo_events"][3:] == ["1", "0", "0", "skipped:no_contact_key", "1"]
    assert "{" not in record.getMessage()


def test_an_event_the_renderer_fails_on_costs_only_that_event(
        apis: FourApis, monkeypatch: pytest.MonkeyPatch) -> None:
    """Deliveries are rendered by their lane when sent; a renderer that raises for one
    event counts ``dropped:render_error`` for it and the lane's other deliveries (here
    in the same Customer.io batch) still go."""
    from cdptrack import destinations

    real = destinations.RENDERERS["customerio"]

    def flaky(event: Any, config: Any) -> Any:
        if event.properties.get("product_id") == marker(2):
            raise RuntimeError("renderer bug")
        return real(event, config)

    monkeypatch.setitem(destinations.RENDERERS, "customerio", flaky)
    tracker = Tracker(apis.config(), **FAST)
    for i in range(5):
        tracker.capture(product_viewed(i))
    assert tracker.flush(10)
    assert set(markers_received(apis.customerio)) == {marker(i) for i in (0, 1, 3, 4)}
    assert set(markers_received(apis.orangepill)) == {marker(i) for i in range(5)}
    stats = tracker.stats()["customerio"]
    assert stats["dropped:render_error"] == 1 and stats["sent"] == 4
    tracker.shutdown()
