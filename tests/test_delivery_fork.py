"""fork() after the tracker was used (gunicorn --preload, uWSGI): the child gets a
fresh queue, thread, locks and HTTP clients, and its events are delivered."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from support.delivery import (
    FAST,
    FourApis,
    apis_fixture,  # noqa: F401 - the "apis" fixture
    marker,
    markers_received,
    product_viewed,
)

from cdptrack.tracker import Tracker

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")


def _fork_and_capture(tracker: Tracker, first: int, count: int) -> int:
    """Fork; the child captures ``count`` events, flushes and exits with 0 on success."""
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            for i in range(first, first + count):
                tracker.capture(product_viewed(i))
            ok = tracker.flush(20)
            stats = tracker.stats()
            # The child counts only its own events (the parent's were not inherited).
            code = 0 if ok and stats["customerio"]["sent"] == count else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.parametrize("outbox", ["memory", "sqlite"])
def test_events_captured_in_a_forked_child_are_delivered(
        apis: FourApis, tmp_path: Path, outbox: str) -> None:
    url = "memory" if outbox == "memory" else f"sqlite:///{tmp_path / 'outbox.db'}"
    tracker = Tracker(apis.config(), outbox=url, **FAST)
    tracker.capture(product_viewed(0))  # the sender thread now runs in the parent
    assert tracker.flush(20)
    sys.stdout.flush()
    sys.stderr.flush()
    assert _fork_and_capture(tracker, 100, 5) == 0
    wanted = {marker(i) for i in range(100, 105)}
    for name, server in apis.by_destination().items():
        assert wanted <= set(markers_received(server)), name
    # The parent keeps working after the fork.
    tracker.capture(product_viewed(1))
    assert tracker.flush(20)
    assert marker(1) in markers_received(apis.customerio)
    copies = markers_received(apis.customerio)
    assert len(copies[marker(0)]) == 1  # the child did not re-send the parent's event
    tracker.shutdown()


def test_child_forked_before_first_use_starts_its_own_sender(apis: FourApis) -> None:
    tracker = Tracker(apis.config(), **FAST)  # nothing started: like gunicorn --preload
    assert _fork_and_capture(tracker, 200, 3) == 0
    assert {marker(i) for i in range(200, 203)} <= set(markers_received(apis.orangepill))
