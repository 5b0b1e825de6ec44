"""Why a ``capture`` could take 40-180 ms during an outage, kept from coming back: a
waiting event must cost the garbage collector only a few tracked objects.  A full
collection walks every tracked object while holding the GIL, so a queue that holds four
rendered requests per waiting event (about a hundred objects each) stalls whichever
thread captures next.  Counted, not timed: the objects the collector tracks per event
waiting for four APIs that do not answer.  And what a waiting event costs in memory:
at most 1 KiB (it waits packed, :mod:`cdptrack.delivery.compact`)."""

from __future__ import annotations

import gc
import time
import tracemalloc
from typing import Any

from support.delivery import API_KEYS, product_viewed
from support.redis_server import free_port

from cdptrack.config import Config
from cdptrack.tracker import Tracker

WAITING = 4000
# One visitor here: about 1 now, the deliveries parked behind that visitor's first one
# (1,000 per lane); the events themselves wait packed, untracked.
MAX_TRACKED_PER_EVENT = 12
MAX_BYTES_PER_EVENT = 1024


def _down_tracker(**options: Any) -> Tracker:
    base = f"http://127.0.0.1:{free_port()}"  # nothing listens: every API is down
    config = Config(yespo_site_id="site-1", yespo_tracker_url=base + "/api/v2",
                    yespo_api_url=base + "/api/v1", customerio_url=base + "/v1",
                    orangepill_url=base + "/op/v1", **API_KEYS)
    return Tracker(config, handle_signals=False, flush_at_exit=0.0, backoff=30.0,
                   max_backoff=30.0, **options)


def _wait_routed(tracker: Tracker, deadline: float) -> None:
    seen: dict[str, int] = {}
    while time.monotonic() < deadline:  # until every event is routed to its lanes
        time.sleep(0.2)
        depths = tracker.outbox.queue_depths()
        if depths == seen:
            break
        seen = depths


def test_a_waiting_event_costs_the_garbage_collector_a_few_objects() -> None:
    tracker = _down_tracker()
    try:
        tracker.capture(product_viewed(0))  # the sender, lanes and clients exist now
        deadline = time.monotonic() + 30
        while len(tracker.outbox.queue_depths()) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        gc.collect()
        before = len(gc.get_objects())
        for i in range(1, WAITING + 1):
            tracker.capture(product_viewed(i))
        _wait_routed(tracker, deadline)
        assert tracker.pending() == WAITING + 1  # all still waiting, none dropped
        gc.collect()
        per_event = (len(gc.get_objects()) - before) / WAITING
    finally:
        tracker.shutdown(0.0)
    assert per_event <= MAX_TRACKED_PER_EVENT, per_event


def test_a_waiting_event_costs_at_most_a_kibibyte_and_no_tracked_object_while_it_waits(
) -> None:
    """Counted with tracemalloc: every byte allocated while the events were captured and
    routed and still held once they all wait, per waiting event; many shoppers (one
    ``sc`` each), so nothing parks behind a busy visitor; one worker per lane, stuck
    retrying the first event, so nothing else is in flight (a Customer.io worker takes
    a batch of up to 200, rendered, which it keeps for its retries)."""
    tracker = _down_tracker(concurrency=1)
    try:
        tracker.capture(product_viewed(0))
        deadline = time.monotonic() + 30
        while len(tracker.outbox.queue_depths()) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # every lane has failed once: what comes now waits packed
        gc.collect()
        objects = len(gc.get_objects())
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for i in range(1, WAITING + 1):  # built here, so that they are counted
                tracker.capture(product_viewed(i, sc=f"CDA68358-94FB-4D83-9655-{i:012d}"))
            _wait_routed(tracker, deadline)
            assert tracker.pending() == WAITING + 1
            gc.collect()
            per_event = (tracemalloc.get_traced_memory()[0] - before) / WAITING
        finally:
            tracemalloc.stop()
        tracked = (len(gc.get_objects()) - objects) / WAITING
    finally:
        tracker.shutdown(0.0)
    assert per_event <= MAX_BYTES_PER_EVENT, per_event  # 1.3 KiB as an Event
    assert tracked <= 0.1, tracked  # what waits is untracked; 3.6 as Events
