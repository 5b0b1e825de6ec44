"""Why a ``capture`` could take 40-180 ms during an outage, kept from coming back: a
waiting event must cost the garbage collector only a few tracked objects.  A full
collection walks every tracked object while holding the GIL, so a queue that holds four
rendered requests per waiting event (about a hundred objects each) stalls whichever
thread captures next.  Counted, not timed: the objects the collector tracks per event
waiting for four APIs that do not answer."""

from __future__ import annotations

import gc
import time

from support.delivery import API_KEYS, product_viewed
from support.redis_server import free_port

from cdptrack.config import Config
from cdptrack.tracker import Tracker

WAITING = 4000
MAX_TRACKED_PER_EVENT = 12  # the event's own dicts and one shared queue entry: ~4 now


def test_a_waiting_event_costs_the_garbage_collector_a_few_objects() -> None:
    base = f"http://127.0.0.1:{free_port()}"  # nothing listens: every API is down
    config = Config(yespo_site_id="site-1", yespo_tracker_url=base + "/api/v2",
                    yespo_api_url=base + "/api/v1", customerio_url=base + "/v1",
                    orangepill_url=base + "/op/v1", **API_KEYS)
    tracker = Tracker(config, handle_signals=False, flush_at_exit=0.0, backoff=30.0,
                      max_backoff=30.0)
    try:
        tracker.capture(product_viewed(0))  # the sender, lanes and clients exist now
        deadline = time.monotonic() + 30
        while len(tracker.outbox.queue_depths()) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        gc.collect()
        before = len(gc.get_objects())
        for i in range(1, WAITING + 1):
            tracker.capture(product_viewed(i))
        seen: dict[str, int] = {}
        while time.monotonic() < deadline:  # until every event is routed to its lanes
            time.sleep(0.2)
            depths = tracker.outbox.queue_depths()
            if depths == seen:
                break
            seen = depths
        assert tracker.pending() == WAITING + 1  # all still waiting, none dropped
        gc.collect()
        per_event = (len(gc.get_objects()) - before) / WAITING
    finally:
        tracker.shutdown(0.0)
    assert per_event <= MAX_TRACKED_PER_EVENT, per_event
