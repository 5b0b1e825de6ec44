"""The SQLite outbox: what ``capture`` accepted survives SIGKILL and is delivered after
a restart; rows belong to their process; dead letters are stored with the response."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from support.api_server import Reply
from support.delivery import (
    API_KEYS,
    FAST,
    FourApis,
    all_arrived,
    apis_fixture,  # noqa: F401 - the "apis" fixture
    marker,
    markers_received,
    product_viewed,
)

from cdptrack.events import Event
from cdptrack.tracker import Tracker

ROOT = Path(__file__).resolve().parent.parent


def _config_json(apis: FourApis) -> str:
    config = apis.config()
    values = {
        "yespo_site_id": config.yespo_site_id,
        **API_KEYS,
        "yespo_tracker_url": config.yespo_tracker_url,
        "yespo_api_url": config.yespo_api_url,
        "customerio_url": config.customerio_url,
        "orangepill_url": config.orangepill_url,
    }
    return json.dumps(values)


def _capture_then_kill(apis: FourApis, tmp_path: Path, delay: float,
                       wanted: int) -> tuple[str, list[int]]:
    """Run tests/support/capture_child.py (500 events into an outbox file) against
    ``apis`` answering after ``delay`` seconds, SIGKILL it once it reported ``wanted``
    events accepted; returns the outbox URL and the accepted event numbers."""
    outbox = f"sqlite:///{tmp_path / 'outbox.db'}"
    for server in apis:
        server.default = Reply(200, delay=delay)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    child = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "support" / "capture_child.py"), outbox, "500",
         _config_json(apis)],
        stdout=subprocess.PIPE, text=True, env=env)
    accepted: list[int] = []
    try:
        assert child.stdout is not None
        for line in child.stdout:
            if line.startswith("accepted "):
                accepted.append(int(line.split()[1]))
            if len(accepted) >= wanted:
                break
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        if child.stdout is not None:
            child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    return outbox, accepted


def test_accepted_events_survive_sigkill_and_are_delivered_after_restart(
        apis: FourApis, tmp_path: Path) -> None:
    # slow answers: the kill lands mid-delivery
    outbox, accepted = _capture_then_kill(apis, tmp_path, 0.1, 60)
    wanted = {marker(i) for i in accepted}
    before = {name: set(markers_received(s)) for name, s in apis.by_destination().items()}
    assert any(not wanted <= got for got in before.values()), "nothing was left to recover"

    for server in apis:
        server.default = Reply(200)
    restarted = Tracker(apis.config(), outbox=outbox, **FAST)
    restarted.start()  # no capture, no flush: start() alone sends what the crash left
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(
            wanted <= set(markers_received(s)) for s in apis.by_destination().values()):
        time.sleep(0.05)
    for name, server in apis.by_destination().items():
        assert wanted <= set(markers_received(server)), name
    assert restarted.flush(30)
    assert restarted.pending() == 0
    restarted.shutdown()


def test_capture_commits_before_returning(apis: FourApis, tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "outbox.db"
    apis.customerio.stop()  # nothing can be settled
    tracker = Tracker(apis.config(), outbox=f"sqlite:///{path}", max_retry_time=60, **FAST)
    for i in range(5):
        tracker.capture(product_viewed(i))
    # Another connection (another process would see the same) finds every row.
    rows = sqlite3.connect(path).execute("SELECT body FROM events").fetchall()
    assert {json.loads(body)["properties"]["product_id"] for (body,) in rows} >= {
        marker(i) for i in range(5)}
    tracker.shutdown(0.5)
    apis.customerio.start()


def test_two_trackers_on_one_file_do_not_send_each_others_events(
        apis: FourApis, tmp_path: Path) -> None:
    outbox = f"sqlite:///{tmp_path / 'shared.db'}"
    first = Tracker(apis.config(), outbox=outbox, **FAST)
    second = Tracker(apis.config(), outbox=outbox, **FAST)
    for i in range(20):
        (first if i % 2 else second).capture(product_viewed(i))
    assert first.flush(20) and second.flush(20)
    copies = markers_received(apis.orangepill)
    assert set(copies) == {marker(i) for i in range(20)}
    assert all(len(v) == 1 for v in copies.values())
    assert first.stats()["orangepill"]["sent"] == second.stats()["orangepill"]["sent"] == 10
    first.shutdown()
    second.shutdown()


def test_dead_letters_are_stored_durably_with_the_response(apis: FourApis, tmp_path: Path
                                                           ) -> None:
    outbox = f"sqlite:///{tmp_path / 'outbox.db'}"
    apis.events.default = Reply(400, '{"error": "keyValue is required"}')
    tracker = Tracker(apis.config(), outbox=outbox, **FAST)
    tracker.capture(product_viewed(3))
    assert tracker.flush(20)
    tracker.shutdown()
    reopened = Tracker(apis.config(), outbox=outbox, **FAST)
    [letter] = reopened.dead_letters()
    assert (letter.destination, letter.status, letter.reason) == ("yespo_events", 400,
                                                                  "rejected")
    assert "keyValue is required" in letter.response
    assert letter.request["headers"]["Authorization"] == "<redacted>"
    raw = (tmp_path / "outbox.db").read_bytes()
    for secret in API_KEYS.values():
        assert secret.encode() not in raw
    reopened.shutdown()


def test_a_requests_events_are_committed_in_one_transaction_before_capture_returns(
        apis: FourApis, tmp_path: Path) -> None:
    """The middleware's deferred record: its events are on disk when
    ``capture_deferred`` returns, written by one statement (one implicit transaction
    and one call into SQLite per request, not one per event and no BEGIN/COMMIT round
    trips); a record whose build raises is counted as invalid."""
    path = tmp_path / "outbox.db"
    tracker = Tracker(apis.config(), outbox=f"sqlite:///{path}", **FAST)
    tracker.capture(product_viewed(0))  # the connection exists from here on
    statements: list[str] = []
    here = threading.get_ident()

    def trace(statement: str) -> None:
        if threading.get_ident() == here:  # not the sender's
            statements.append(statement)

    tracker._outbox._writer.set_trace_callback(trace)
    tracker.capture_deferred(lambda: [product_viewed(1), product_viewed(2)])
    tracker._outbox._writer.set_trace_callback(None)
    assert len(statements) == 1 and statements[0].startswith("INSERT INTO events")
    with sqlite3.connect(path) as reader:  # another connection sees both: committed
        bodies = [json.loads(b) for (b,) in reader.execute("SELECT body FROM events")]
    assert {marker(1), marker(2)} <= {b["properties"]["product_id"] for b in bodies}

    def broken() -> list[Event]:
        raise RuntimeError("the view's record was bad")

    tracker.capture_deferred(broken)
    assert tracker.flush(10)
    assert all_arrived(apis, 3)
    assert tracker.stats()["customerio"]["dropped:invalid"] == 1
    tracker.shutdown()


def test_capture_does_not_wait_for_the_senders_bookkeeping(apis: FourApis, tmp_path: Path
                                                           ) -> None:
    """While the sender routes or settles (its bookkeeping lock held), a request's
    events are still committed: capture shares only the connection's lock with it."""
    path = tmp_path / "outbox.db"
    tracker = Tracker(apis.config(), outbox=f"sqlite:///{path}", **FAST)
    tracker.capture(product_viewed(0))
    committed = threading.Event()

    def request() -> None:
        tracker.capture_deferred(lambda: [product_viewed(1)])
        committed.set()

    with tracker._outbox._books:  # the sender, in the middle of its bookkeeping
        thread = threading.Thread(target=request)
        thread.start()
        assert committed.wait(10), "capture waited for the sender's bookkeeping"
        with sqlite3.connect(path) as reader:
            bodies = [b for (b,) in reader.execute("SELECT body FROM events")]
        assert any(marker(1) in body for body in bodies)
    thread.join(10)
    assert tracker.flush(20)
    assert all_arrived(apis, 2)
    tracker.shutdown()


def test_the_sender_reads_back_nothing_it_accepted_and_settles_in_batched_writes(
        apis: FourApis, tmp_path: Path) -> None:
    """Events this process captured reach the sender in memory (no SELECT of their rows,
    no second decode) and their deliveries wait in memory: routing writes nothing, no
    ``deliveries`` row is written for work finished within its burst, and the finished
    events are deleted many to a statement; every event still arrives and the file
    ends empty."""
    path = tmp_path / "outbox.db"
    tracker = Tracker(apis.config(), outbox=f"sqlite:///{path}", **FAST)
    tracker.capture(product_viewed(0))
    assert tracker.flush(20)  # started: the leftovers of an earlier run were read
    statements: list[str] = []
    tracker._outbox._writer.set_trace_callback(statements.append)
    for i in range(1, 41):
        tracker.capture(product_viewed(i))
    assert tracker.flush(20)
    tracker._outbox._writer.set_trace_callback(None)
    assert all_arrived(apis, 41)
    reads = [s for s in statements if s.startswith("SELECT") and "body" in s]
    assert reads == []
    assert [s for s in statements if "INTO deliveries" in s or s.startswith("UPDATE")] == []
    deletes = [s for s in statements if s.startswith("DELETE FROM events")]
    deleted = {int(n) for s in deletes for n in s.partition("(")[2].rstrip(")").split(",")}
    assert deleted == set(range(2, 42))  # every event row, by id
    # 40 events: a handful of statements (one per burst), not one per event or per
    # delivery, and no transaction around them (a lone statement is its own).
    assert len(deletes) <= 20
    assert [s for s in statements if s.strip().upper() in ("BEGIN IMMEDIATE", "COMMIT")] == []
    with sqlite3.connect(path) as reader:
        assert reader.execute("SELECT count(*) FROM events").fetchone()[0] == 0
        assert reader.execute("SELECT count(*) FROM deliveries").fetchone()[0] == 0
    tracker.shutdown()


def test_deliveries_rows_are_written_for_events_left_unfinished_after_their_burst(
        apis: FourApis, tmp_path: Path) -> None:
    """An API that does not answer: once the burst that routed its events is over,
    their deliveries rows are in the file (for that destination only, once the others
    finished), so a restart sends them there and nowhere else again."""
    path = tmp_path / "outbox.db"
    apis.orangepill.stop()
    tracker = Tracker(apis.config(), outbox=f"sqlite:///{path}", max_retry_time=60, **FAST)
    with tracker._outbox._locked():  # the connection exists from here on
        pass
    statements: list[str] = []
    tracker._outbox._writer.set_trace_callback(statements.append)
    tracker.capture_deferred(lambda: [product_viewed(i) for i in range(5)])

    def open_rows() -> list[tuple[int, str]]:
        with sqlite3.connect(path) as reader:
            return reader.execute("SELECT event_id, destination FROM deliveries").fetchall()

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (
            all(set(map(marker, range(5))) <= set(markers_received(s))
                for s in (apis.tracker, apis.events, apis.customerio))
            and len(open_rows()) == 5):
        time.sleep(0.05)
    rows = open_rows()
    assert len(rows) == 5 and {name for _, name in rows} == {"orangepill"}
    # Written many to a statement (a burst's events together), not one per row.
    assert len([s for s in statements if "INTO deliveries" in s]) < 5
    # While the tracker runs: written by a burst, not by the shutdown.
    assert tracker.pending() == 5
    tracker.shutdown(0.5)

    with sqlite3.connect(path) as db:  # as found once its lease ran out (same pid here)
        db.execute("UPDATE owners SET seen = 0")
    apis.orangepill.start()
    restarted = Tracker(apis.config(), outbox=f"sqlite:///{path}", **FAST)
    restarted.start()
    assert restarted.flush(20)
    assert set(markers_received(apis.orangepill)) >= set(map(marker, range(5)))
    for server in (apis.tracker, apis.events, apis.customerio):  # nothing sent twice
        assert all(len(copies) == 1 for copies in markers_received(server).values())
    restarted.shutdown()


def test_a_kill_mid_burst_resends_with_the_same_message_ids(apis: FourApis, tmp_path: Path
                                                            ) -> None:
    """SIGKILL while events are routed in memory (no deliveries rows yet) or finished
    but not yet deleted: after the restart each accepted event reaches every API at
    least once, and every copy of it carries the same message id."""
    outbox, accepted = _capture_then_kill(apis, tmp_path, 0.01, 80)
    with sqlite3.connect(tmp_path / "outbox.db") as reader:
        left = reader.execute("SELECT count(*) FROM events").fetchone()[0]
    assert left > 0, "the kill found nothing in flight"

    for server in apis:
        server.default = Reply(200)
    restarted = Tracker(apis.config(), outbox=outbox, **FAST)
    restarted.start()
    assert restarted.flush(30)
    wanted = {marker(i) for i in accepted}
    for name, server in apis.by_destination().items():
        received = markers_received(server)
        assert wanted <= set(received), name
    # Copies of one event (sent before the kill and again after it) share their id:
    # Customer.io's messageId, Orangepill's idempotency-key.
    message_ids: dict[str, set[str]] = {}
    for copies in markers_received(apis.customerio).values():
        for _, message in copies:
            key = json.dumps(message["properties"]["product_id"])
            message_ids.setdefault(key, set()).add(message["messageId"])
    idempotency: dict[str, set[str]] = {}
    for request in apis.orangepill.accepted("/"):
        key = request.body.decode().partition("sku-")[2][:5]
        headers = {k.lower(): v for k, v in request.headers.items()}
        idempotency.setdefault(key, set()).add(headers["idempotency-key"])
    assert len(message_ids) >= len(wanted) and len(idempotency) >= len(wanted)
    assert all(len(found) == 1 for found in message_ids.values())
    assert all(len(found) == 1 for found in idempotency.values())
    restarted.shutdown()


def test_what_does_not_fit_in_memory_goes_through_the_file_once(apis: FourApis,
                                                                 tmp_path: Path) -> None:
    """With room in memory for 4 events and 4 deliveries per destination, most events
    are read back from the file and routed with their deliveries rows written at once;
    the rest stay in memory without rows.  Every event reaches every API exactly once
    and the file ends empty."""
    path = tmp_path / "outbox.db"
    for server in apis:
        server.default = Reply(200, delay=0.005)  # the captures outrun the sender
    tracker = Tracker(apis.config(), outbox=f"sqlite:///{path}", max_queue=4, **FAST)
    statements: list[str] = []
    tracker.capture(product_viewed(0))
    tracker._outbox._writer.set_trace_callback(statements.append)
    for i in range(1, 60):
        tracker.capture(product_viewed(i))
    assert tracker.flush(30)
    tracker._outbox._writer.set_trace_callback(None)
    assert any(s.startswith("SELECT id, body FROM events") for s in statements)
    assert any("INTO deliveries" in s for s in statements)
    for name, server in apis.by_destination().items():
        copies = markers_received(server)
        assert set(copies) == {marker(i) for i in range(60)}, name
        assert all(len(found) == 1 for found in copies.values()), name
    with sqlite3.connect(path) as reader:
        assert reader.execute("SELECT count(*) FROM events").fetchone()[0] == 0
        assert reader.execute("SELECT count(*) FROM deliveries").fetchone()[0] == 0
    tracker.shutdown()


def test_a_request_with_hundreds_of_events_is_committed_whole(apis: FourApis,
                                                              tmp_path: Path) -> None:
    """More events than one statement binds (old SQLite allows 999 values): several
    INSERTs in one transaction, each event under its own key, every one delivered."""
    path = tmp_path / "outbox.db"
    tracker = Tracker(apis.config(), outbox=f"sqlite:///{path}", **FAST)
    with tracker._outbox._locked():  # the connection exists from here on
        pass
    statements: list[str] = []
    tracker._outbox._writer.set_trace_callback(statements.append)
    tracker.capture_deferred(lambda: [product_viewed(i) for i in range(600)])
    tracker._outbox._writer.set_trace_callback(None)
    inserts = [s for s in statements if s.startswith("INSERT INTO events")]
    assert len(inserts) == 3 and "BEGIN IMMEDIATE" in statements and "COMMIT" in statements
    with sqlite3.connect(path) as reader:
        assert reader.execute("SELECT count(*) FROM events").fetchone()[0] == 600
    assert tracker.flush(60)
    for name, server in apis.by_destination().items():
        copies = markers_received(server)
        assert set(copies) == {marker(i) for i in range(600)}, name
        assert all(len(found) == 1 for found in copies.values()), name
    tracker.shutdown()
