"""The Redis Streams outbox and ``cdptrack worker``, against a real redis-server and real
local APIs: web processes append, worker processes send each event once per destination,
a killed worker's entries are taken over, dead letters live in Redis and are replayed,
capture survives Redis being down, and credentials never reach Redis or the logs."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.exceptions import ResponseError
from support import redis_server
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
from support.redis_server import RedisServer
from support.servers import wait_for as wait_until

from cdptrack import cli
from cdptrack.config import ConfigError
from cdptrack.delivery import outbox_redis
from cdptrack.delivery.outbox import Routing
from cdptrack.delivery.outbox_redis import GROUP, RedisOutbox
from cdptrack.destinations import render_event
from cdptrack.events import Event
from cdptrack.tracker import Tracker

pytestmark = pytest.mark.skipif(not redis_server.available(),
                                reason="redis-server is not installed (CI installs it)")

ROOT = Path(__file__).resolve().parent.parent
DESTINATIONS = ("yespo_tracker", "yespo_events", "customerio", "orangepill")


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}"  # each test its own keys in the shared server



def worker_env(apis: FourApis, url: str) -> dict[str, str]:
    config = apis.config()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDPTRACK_")}
    env.update({
        "PYTHONPATH": str(ROOT),
        "CDPTRACK_OUTBOX": url,
        "CDPTRACK_YESPO_SITE_ID": str(config.yespo_site_id),
        "CDPTRACK_YESPO_API_KEY": API_KEYS["yespo_api_key"],
        "CDPTRACK_CUSTOMERIO_API_KEY": API_KEYS["customerio_api_key"],
        "CDPTRACK_ORANGEPILL_API_KEY": API_KEYS["orangepill_api_key"],
        "CDPTRACK_YESPO_TRACKER_URL": config.yespo_tracker_url,
        "CDPTRACK_YESPO_API_URL": config.yespo_api_url,
        "CDPTRACK_CUSTOMERIO_URL": str(config.customerio_url),
        "CDPTRACK_ORANGEPILL_URL": config.orangepill_url,
    })
    return env


class Workers:
    """``cdptrack worker`` processes; whatever is still running at the end is killed."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, apis: FourApis, url: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.directory / f"worker{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "cdptrack.cli", "worker", "--concurrency", "4", *args],
            env=worker_env(apis, url), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        proc.log_path = self.directory / f"worker{len(self.procs)}.log"  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    def run_once(self, apis: FourApis, url: str) -> int:
        proc = self.start(apis, url, "--once", "--timeout", "30")
        return proc.wait(60)

    @staticmethod
    def output(proc: subprocess.Popen[bytes]) -> str:
        return Path(proc.log_path).read_text()  # type: ignore[attr-defined]

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    running = Workers(tmp_path)
    try:
        yield running
    finally:
        running.stop_all()


def sent_by(output: str, destination: str) -> int:
    for line in output.splitlines():
        if line.startswith(f"cdptrack worker: {destination}: "):
            for part in line.split(": ", 2)[2].split(", "):
                if part.startswith("sent "):
                    return int(part[5:])
    return 0


def pending_of(client: Any, prefix: str, pid: int) -> int:
    """Entries the worker with this pid holds (read, not yet acknowledged)."""
    held = 0
    for stream in [f"{{{prefix}}}:events", *(f"{{{prefix}}}:d:{d}" for d in DESTINATIONS)]:
        try:
            summary = client.xpending(stream, GROUP)
        except ResponseError:  # no stream or no group yet
            continue
        for consumer in summary.get("consumers") or []:
            if f":{pid}:" in consumer["name"]:
                held += int(consumer["pending"])
    return held


def redis_client(server: RedisServer) -> Any:
    import redis as redis_module

    return redis_module.Redis(host="127.0.0.1", port=server.port, password=server.password,
                              decode_responses=True)


def producer(apis: FourApis, url: str) -> Tracker:
    return Tracker(apis.config(), outbox=RedisOutbox.from_url(url), **FAST)


# -- a fleet: web processes append, workers send ----------------------------------------


def test_two_workers_deliver_each_event_once_per_destination(
        apis: FourApis, redis: RedisServer, prefix: str, workers: Workers) -> None:
    url = redis.url(prefix, claim_idle="5")
    first, second = workers.start(apis, url), workers.start(apis, url)
    web = producer(apis, url)
    for i in range(200):
        web.capture(product_viewed(i))
    assert web.flush(5)  # "flushed" for a web process: Redis has every event
    assert wait_until(lambda: all_arrived(apis, 200))
    time.sleep(0.3)  # let a stray duplicate (the bug this test is for) arrive too
    for name, server in apis.by_destination().items():
        copies = markers_received(server)
        assert set(copies) == {marker(i) for i in range(200)}, name
        assert all(len(found) == 1 for found in copies.values()), name
    assert web.stats()["orangepill"]["sent"] == 0  # the web process sent nothing itself
    web.shutdown()
    for proc in (first, second):
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    outputs = [workers.output(first), workers.output(second)]
    for name in DESTINATIONS:  # the workers' own counts agree: nothing sent twice
        assert sum(sent_by(out, name) for out in outputs) == 200, name
    # Which worker gets a burst is up to Redis: a web process appends a burst in one
    # round trip and one XREADGROUP may hand all of it to one worker, so how the 200
    # split is not asserted; that neither sent one twice is.
    for out in outputs:
        for secret in API_KEYS.values():
            assert secret not in out


def test_a_killed_worker_s_entries_are_taken_over_and_everything_arrives(
        apis: FourApis, redis: RedisServer, prefix: str, workers: Workers) -> None:
    url = redis.url(prefix, claim_idle="1.5")
    for server in apis:
        server.default = Reply(200, delay=0.15)  # slow: the kill lands mid-delivery
    doomed, survivor = workers.start(apis, url), workers.start(apis, url)
    web = producer(apis, url)
    for i in range(60):
        # Many shoppers: one shopper's deliveries wait behind each other in whichever
        # worker holds that shopper, so one shopper would leave the other worker idle.
        web.capture(product_viewed(i, sc=f"CDA68358-94FB-4D83-9655-{i:012d}"))
    assert web.flush(5)
    client = redis_client(redis)
    assert wait_until(lambda: pending_of(client, prefix, doomed.pid) > 0)
    doomed.send_signal(signal.SIGKILL)
    assert doomed.wait(10) == -signal.SIGKILL
    assert pending_of(client, prefix, doomed.pid) > 0, "the kill left nothing to take over"
    for server in apis:
        server.default = Reply(200)

    assert wait_until(lambda: all_arrived(apis, 60), 30)
    assert wait_until(lambda: pending_of(client, prefix, doomed.pid) == 0)
    # Copies sent twice (once by the dead worker, once after the takeover) are the same
    # message to the API: same messageId / idempotency-key.
    for _, found in markers_received(apis.customerio).items():
        assert len({message["messageId"] for _, message in found}) == 1
    for _, found in markers_received(apis.orangepill).items():
        assert len({request.headers["idempotency-key"] for request, _ in found}) == 1
    survivor.send_signal(signal.SIGTERM)
    assert survivor.wait(15) == 0
    web.shutdown()
    client.close()


def test_sigterm_finishes_in_flight_requests_and_hands_the_rest_back_at_once(
        apis: FourApis, redis: RedisServer, prefix: str, workers: Workers) -> None:
    # claim_idle=120: only an explicit hand-back lets the next worker have the rest soon.
    url = redis.url(prefix, claim_idle="120")
    for server in apis:
        server.default = Reply(200, delay=0.2)
    first = workers.start(apis, url)
    web = producer(apis, url)
    for i in range(40):
        web.capture(product_viewed(i))
    assert web.flush(5)
    client = redis_client(redis)
    assert wait_until(lambda: len(apis.orangepill.requests) >= 2
                      and pending_of(client, prefix, first.pid) > 0)
    first.send_signal(signal.SIGTERM)
    assert first.wait(20) == 0
    for server in apis:
        server.default = Reply(200)
    second = workers.start(apis, url)
    assert wait_until(lambda: all_arrived(apis, 40), 15)
    time.sleep(0.3)
    for name, server in apis.by_destination().items():
        copies = markers_received(server)
        assert all(len(found) == 1 for found in copies.values()), name  # none cut off
    second.send_signal(signal.SIGTERM)
    assert second.wait(15) == 0
    web.shutdown()
    client.close()


def test_a_stop_that_cuts_retries_short_hands_the_entries_back_at_once(
        apis: FourApis, redis: RedisServer, prefix: str, workers: Workers) -> None:
    url = redis.url(prefix, claim_idle="120")  # far beyond this test's waits
    apis.orangepill.stop()  # refused: the worker keeps retrying what it holds
    first = workers.start(apis, url, "--grace", "0")
    web = producer(apis, url)
    for i in range(20):
        web.capture(product_viewed(i))
    assert web.flush(5)
    client = redis_client(redis)
    assert wait_until(lambda: all(set(markers_received(s)) == {marker(i) for i in range(20)}
                                  for s in (apis.tracker, apis.events, apis.customerio)))
    assert pending_of(client, prefix, first.pid) > 0
    first.send_signal(signal.SIGTERM)
    assert first.wait(20) == 0
    apis.orangepill.start()
    second = workers.start(apis, url)
    # Only an explicit hand-back makes them available before claim_idle (120 s).
    assert wait_until(lambda: all_arrived(apis, 20), 15)
    second.send_signal(signal.SIGTERM)
    assert second.wait(15) == 0
    web.shutdown()
    client.close()


# -- dead letters ------------------------------------------------------------------------


def test_dead_letters_are_kept_in_redis_and_replay_sends_them(
        apis: FourApis, redis: RedisServer, prefix: str, workers: Workers) -> None:
    url = redis.url(prefix)
    apis.events.default = Reply(400, '{"error": "keyValue is required"}')
    web = producer(apis, url)
    for i in range(5):
        web.capture(product_viewed(i))
    assert web.flush(5)
    assert workers.run_once(apis, url) == 0  # dead-lettered counts as drained

    letters = web.dead_letters()
    assert len(letters) == 5
    assert {(d.destination, d.status, d.reason) for d in letters} == {
        ("yespo_events", 400, "rejected")}
    assert all("keyValue is required" in d.response for d in letters)
    assert all(d.request["headers"]["Authorization"] == "<redacted>" for d in letters)
    client = redis_client(redis)
    for key in client.keys(f"{{{prefix}}}:*"):
        text = repr(client.xrange(key) if client.type(key) == "stream" else client.get(key))
        for secret in API_KEYS.values():
            assert secret not in text, key

    apis.events.default = Reply(200)
    before = len(apis.events.requests)
    assert web.replay_dead() == 5
    assert web.pending() == 5  # queued again, waiting for a worker
    assert workers.run_once(apis, url) == 0
    assert web.flush(5)
    again = [r.json for r in apis.events.requests[before:]]
    assert len(again) == 5 and all(r.status == 200 for r in apis.events.requests[before:])
    assert set(markers_received(apis.events)) == {marker(i) for i in range(5)}
    assert web.dead_letters() == []
    web.shutdown()
    client.close()


def command_calls(client: Any) -> dict[str, int]:
    """Calls per command since the last ``CONFIG RESETSTAT`` (a script's own calls of
    XADD, XACK, ... count under their names too)."""
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(row["calls"]) for name, row in stats.items()}


def test_appends_routing_reads_and_settles_are_batched_not_one_command_per_event(
        apis: FourApis, redis: RedisServer, prefix: str, workers: Workers) -> None:
    """A burst of captures is appended with one script call; a worker routes a round of
    events with one script call that also takes their deliveries for its own lanes
    (no read per lane), and settles what finished together: for 100 events and four
    destinations a few dozen script calls, not one per event or delivery (which was 100
    appends, 100 routings, 400 settles and about 80 reads)."""
    url = redis.url(prefix)
    client = redis_client(redis)
    web = producer(apis, url)
    web.start()
    assert web._sender is not None and web._sender.wait_ready(5)  # staging from now on
    client.config_resetstat()
    for i in range(100):
        web.capture(product_viewed(i, sc=f"CDA68358-94FB-4D83-9655-{i:012d}"))
    assert web.flush(10)
    appended = command_calls(client)
    assert appended.get("xadd") == 100
    assert appended.get("evalsha", 0) <= 5, appended

    client.config_resetstat()
    assert workers.run_once(apis, url) == 0
    assert all_arrived(apis, 100)
    worked = command_calls(client)
    assert worked.get("xack") == 500 and worked.get("xdel") == 500  # 100 events, 400 deliveries
    # Scripts: routing rounds, settling bursts and the lanes' few reads (XREADGROUP in a
    # script, counted under both names).
    assert worked.get("evalsha", 0) <= 40, worked
    assert worked.get("xreadgroup", 0) <= 50, worked
    web.shutdown()
    client.close()


def test_an_invalid_event_in_a_routing_round_is_settled_and_the_others_delivered(
        apis: FourApis, redis: RedisServer, prefix: str, workers: Workers) -> None:
    url = redis.url(prefix)
    web = RedisOutbox.from_url(url)
    assert web.put(product_viewed(0))
    assert web.put({"type": "not-an-event-type"})  # validated by the worker, dropped
    assert web.put(product_viewed(1))
    assert workers.run_once(apis, url) == 0
    assert all_arrived(apis, 2)
    client = redis_client(redis)
    assert client.xlen(f"{{{prefix}}}:events") == 0
    assert client.xpending(f"{{{prefix}}}:events", GROUP)["pending"] == 0
    web.close()
    client.close()


def test_a_worker_reads_its_own_deliveries_back_without_their_bodies(
        redis: RedisServer, prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Deliveries a worker routed but did not take at once come back to it as ids only
    (it has their events in memory); another worker reads them whole; and when the
    worker no longer has an event in memory, it reads that entry's body."""
    monkeypatch.setattr(outbox_redis, "TAKE_AHEAD", 0)  # routing takes nothing ahead
    url = redis.url(prefix)
    web = RedisOutbox.from_url(url)
    for i in range(4):
        assert web.put(product_viewed(i))
    router = RedisOutbox.from_url(url, role="worker")
    router.start()
    taken = router.take_new(10)
    assert len(taken) == 4
    events = {key: Event.from_dict(json.loads(str(body))) for key, body in taken}
    assert router.route([Routing(key, event, {"customerio": None, "orangepill": None})
                         for key, event in events.items()]) == []
    other = RedisOutbox.from_url(url, role="worker")
    other.start()
    stream = f"{{{prefix}}}:d:orangepill"
    mine = router._read(stream, 2)
    theirs = other._read(stream, 2)
    assert [fields for _, fields in mine] == [{}, {}]  # ids only
    assert all(json.loads(fields["e"])["message_id"] for _, fields in theirs)

    router._rendered.clear()  # as if its bounded cache had let them go
    got = router.next_for("customerio", 10)
    assert [d.event.message_id for d in got] == [e.message_id for e in events.values()]
    for worker in (router, other, web):
        worker.close()


def test_a_producer_s_sender_is_woken_once_while_captures_keep_coming(
        apis: FourApis, redis: RedisServer, prefix: str) -> None:
    """A web process's sender polls on its own timer while its staged bursts keep going
    to Redis, instead of going back to sleep after each burst and being woken by the
    next capture (a cross-thread wake-up costs the request thread a write and the
    sender a loop round: that was about one per three page views)."""
    web = producer(apis, redis.url(prefix))
    web.start()
    sender = web._sender
    assert sender is not None and sender.wait_ready(5)
    loop = sender._loop
    assert loop is not None
    wakes = 0
    real = loop.call_soon_threadsafe

    def counting(callback: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal wakes
        wakes += 1
        return real(callback, *args, **kwargs)

    loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
    for i in range(150):  # a page view every 2 ms for 0.3 s
        web.capture(product_viewed(i))
        time.sleep(0.002)
    assert web.flush(10)
    assert wakes <= 5, wakes
    client = redis_client(redis)
    assert client.xlen(f"{{{prefix}}}:events") == 150
    web.shutdown()
    client.close()


# -- poison entries: taken over at most max_deliveries times ------------------------------


def hand_out(url: str, destination: str | None = None) -> tuple[RedisOutbox, list[Any]]:
    """A fresh worker (a new consumer) starts and asks for work: new events, or the
    deliveries of ``destination``; what it got, taken over from stopped workers."""
    worker = RedisOutbox.from_url(url, role="worker")
    worker.start()
    got: list[Any] = []
    for _ in range(3):  # the first read makes the group; takeovers run on the next
        got = list(worker.take_new(10) if destination is None
                   else worker.next_for(destination, 10))
        if got:
            break
    return worker, got


def crash_repeatedly(url: str, destination: str | None, rounds: int
                     ) -> tuple[int, list[RedisOutbox]]:
    """Workers that take the entry and die with it (no hand-back, no heartbeat), one
    after another; returns how many got it."""
    handed, dead = 0, []
    for _ in range(rounds):
        time.sleep(0.12)  # idle past claim_idle (0.05 s): the next worker takes it over
        worker, got = hand_out(url, destination)
        dead.append(worker)
        handed += len(got)
    return handed, dead


def test_an_event_that_stops_every_worker_is_dead_lettered_after_max_deliveries(
        apis: FourApis, redis: RedisServer, prefix: str, workers: Workers) -> None:
    url = redis.url(prefix, claim_idle="0.05", max_deliveries="3")
    web = RedisOutbox.from_url(url)
    assert web.put(product_viewed(0))
    handed, crashed = crash_repeatedly(url, None, 6)
    assert handed == 3  # read once, taken over twice; the third takeover stops it
    assert [w.poisoned() for w in crashed].count({"*": 1}) == 1
    letters = web.dead_letters()
    assert [(d.destination, d.reason, d.attempts, d.status) for d in letters] == [
        ("*", "too_many_deliveries", 4, None)]
    assert letters[0].event["properties"]["product_id"] == marker(0)
    client = redis_client(redis)
    events = f"{{{prefix}}}:events"
    assert client.xlen(events) == 0
    assert client.xpending(events, GROUP)["pending"] == 0
    # Replayed, it is a new event again, and a healthy worker sends it everywhere.
    assert web.requeue_dead([letters[0].id or 0]) == 1
    assert web.open_count() == 1
    assert workers.run_once(apis, url) == 0
    assert all_arrived(apis, 1)
    assert wait_until(lambda: web.open_count() == 0, 5)
    assert web.dead_letters() == []
    for worker in [*crashed, web]:
        worker.close()
    client.close()


def test_a_delivery_that_stops_every_worker_is_dead_lettered_for_its_destination(
        apis: FourApis, redis: RedisServer, prefix: str, workers: Workers) -> None:
    url = redis.url(prefix, claim_idle="0.05", max_deliveries="2")
    web = RedisOutbox.from_url(url)
    assert web.put(product_viewed(0))
    router, taken = hand_out(url)
    [(key, body)] = taken
    event = Event.from_dict(json.loads(body))
    requests = render_event(event, apis.config(), ("orangepill",)).requests
    assert router.route([Routing(key, event, {"orangepill": requests})]) == []
    router.close()
    handed, crashed = crash_repeatedly(url, "orangepill", 5)
    assert handed == 2
    assert sum(w.poisoned().get("orangepill", 0) for w in crashed) == 1
    [letter] = web.dead_letters()
    assert (letter.destination, letter.reason, letter.message_id) == (
        "orangepill", "too_many_deliveries", event.message_id)
    client = redis_client(redis)
    assert client.xlen(f"{{{prefix}}}:d:orangepill") == 0
    assert workers.run_once(apis, url) == 0  # nothing left to take
    assert apis.orangepill.requests == []
    assert web.requeue_dead([letter.id or 0]) == 1
    assert workers.run_once(apis, url) == 0
    assert set(markers_received(apis.orangepill)) == {marker(0)}
    for worker in [*crashed, web]:
        worker.close()
    client.close()


def test_graceful_hand_backs_do_not_count_as_deliveries(
        redis: RedisServer, prefix: str) -> None:
    url = redis.url(prefix, claim_idle="60", max_deliveries="2")
    web = RedisOutbox.from_url(url)
    assert web.put(product_viewed(0))
    for _ in range(5):  # a rolling restart, five times over: each worker hands it back
        worker, got = hand_out(url)
        assert len(got) == 1
        worker.close()
    assert web.dead_letters() == []
    client = redis_client(redis)
    [pending] = client.xpending_range(f"{{{prefix}}}:events", GROUP, "-", "+", 10)
    assert pending["times_delivered"] == 0  # each hand-back took its takeover off again
    web.close()
    client.close()


# -- capture side: bounded, never raising ------------------------------------------------


def test_capture_with_redis_down_never_raises_buffers_briefly_and_delivers_later(
        apis: FourApis, tmp_path: Path, workers: Workers, caplog: pytest.LogCaptureFixture
        ) -> None:
    server = RedisServer(tmp_path / "redis", password="hunter2-redis-pw")  # not started
    url = server.url("down", buffer="5")
    outbox = RedisOutbox.from_url(url)
    web = Tracker(apis.config(), outbox=outbox, **FAST)
    with caplog.at_level(logging.INFO, logger="cdptrack"):
        for i in range(8):
            web.capture(product_viewed(i))  # must not raise
        assert outbox.drops() == {"outbox_unavailable": 3}
        assert web.stats()["orangepill"]["dropped"] == 3
        assert web.pending() == 5
        assert not web.flush(0.1)
        server.start()
        try:
            assert web.flush(15)  # the sender thread moved the buffer to Redis
            assert web.pending() == 0
            assert workers.run_once(apis, url) == 0
            assert all_arrived(apis, 5)
            assert not any(marker(i) in markers_received(apis.orangepill)
                           for i in range(5, 8))
        finally:
            web.shutdown()
            server.stop()
    assert "unavailable" in caplog.text
    assert "hunter2" not in caplog.text
    assert "hunter2" not in repr(web) and "hunter2" not in repr(outbox)


def test_deferred_builds_are_staged_built_in_the_sender_and_appended_in_order(
        apis: FourApis, redis: RedisServer, prefix: str) -> None:
    """With the sender running, a middleware's deferred record is not built on the
    request path: it is staged, built in the sender thread and its events appended to
    the stream in capture order; a build that raises is counted as invalid."""
    web = producer(apis, redis.url(prefix))
    web.start()
    assert web._sender is not None and web._sender.wait_ready(5)  # staging from now on
    outbox = web._outbox
    assert outbox.accepts_deferred
    threads: list[str] = []

    def build(first: int) -> list[Event]:
        threads.append(threading.current_thread().name)
        return [product_viewed(first), product_viewed(first + 1)]

    def broken() -> list[Event]:
        raise RuntimeError("the view's record was bad")

    web.capture_deferred(lambda: build(0))
    web.capture_deferred(broken)
    web.capture(product_viewed(2))
    web.capture_deferred(lambda: build(3))
    assert web.flush(10)
    assert threads == ["cdptrack-sender", "cdptrack-sender"]
    client = redis_client(redis)
    bodies = [json.loads(fields["e"]) for _, fields in
              client.xrange(f"{{{prefix}}}:events", "-", "+")]
    assert [b["properties"]["product_id"] for b in bodies] == [marker(i) for i in range(5)]
    assert web.stats()["orangepill"]["dropped:invalid"] == 1
    web.shutdown()
    client.close()


def test_a_redis_that_lost_its_scripts_still_takes_and_routes_events(
        apis: FourApis, redis: RedisServer, prefix: str, workers: Workers) -> None:
    """Scripts run by SHA in pipelines; after ``SCRIPT FLUSH`` (what a restart does to
    the script cache) the appends, routing and settling load them again, with no event
    lost or doubled."""
    url = redis.url(prefix)
    web = producer(apis, url)
    web.capture(product_viewed(0))
    assert web.flush(10)
    assert workers.run_once(apis, url) == 0
    client = redis_client(redis)
    client.script_flush()
    for i in range(1, 4):
        web.capture(product_viewed(i))
    assert web.flush(10)
    assert client.xlen(f"{{{prefix}}}:events") == 3  # appended once each
    client.script_flush()
    assert workers.run_once(apis, url) == 0
    assert all_arrived(apis, 4)
    assert all(len(found) == 1 for found in markers_received(apis.orangepill).values())
    web.shutdown()
    client.close()


def test_a_full_events_stream_refuses_and_the_drop_is_counted(
        apis: FourApis, redis: RedisServer, prefix: str) -> None:
    web = producer(apis, redis.url(prefix, maxlen="3"))
    for i in range(5):
        web.capture(product_viewed(i))
    # Appended with the sender's next burst: the refusal is counted once Redis answered.
    assert web.flush(10)
    assert web.stats()["customerio"]["dropped:queue_full"] == 2
    client = redis_client(redis)
    assert client.xlen(f"{{{prefix}}}:events") == 3
    web.shutdown()
    client.close()


# -- configuration -------------------------------------------------------------------------


def test_url_options_are_parsed_and_the_password_never_shown() -> None:
    outbox = RedisOutbox.from_url(
        "redis://:pw-SECRET@127.0.0.1:1/2?prefix=shop1&maxlen=50&claim_idle=7"
        "&role=worker&socket_timeout=2&max_deliveries=9")
    assert (outbox.prefix, outbox.maxlen, outbox.claim_idle, outbox.role,
            outbox.max_deliveries) == ("shop1", 50, 7.0, "worker", 9)
    assert RedisOutbox.from_url("redis://127.0.0.1:1/0").max_deliveries == 5
    assert outbox.events_key == "{shop1}:events"
    assert "pw-SECRET" not in outbox.url and "pw-SECRET" not in repr(outbox)
    with pytest.raises(ConfigError, match="role"):
        RedisOutbox.from_url("redis://127.0.0.1:1/0?role=boss")
    with pytest.raises(ConfigError, match="prefix"):
        RedisOutbox.from_url("redis://127.0.0.1:1/0?prefix=a b")
    with pytest.raises(ConfigError, match="max_deliveries"):
        RedisOutbox.from_url("redis://127.0.0.1:1/0?max_deliveries=0")


def test_a_missing_redis_client_is_a_clear_config_error(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # as if the extra was not installed
    with pytest.raises(ConfigError, match=r"pip install 'cdptrack\[redis\]'"):
        RedisOutbox.from_url("redis://127.0.0.1:1/0")


@pytest.mark.parametrize("outbox", [None, "memory", "sqlite:///somewhere.db"])
def test_worker_without_a_redis_url_says_so_and_exits_2(
        outbox: str | None, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    for name in list(os.environ):
        if name.startswith("CDPTRACK_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CDPTRACK_ORANGEPILL_API_KEY", "op-SECRET-key-9012")
    argv = ["worker", "--once"] + (["--outbox", outbox] if outbox else [])
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "needs a Redis outbox" in err and "redis://" in err
    assert "op-SECRET" not in err


def test_worker_with_an_unreachable_redis_exits_1_without_the_password(
        apis: FourApis, workers: Workers) -> None:
    url = f"redis://:pw-SECRET-2@127.0.0.1:{redis_server.free_port()}/0"
    proc = workers.start(apis, url, "--once")
    assert proc.wait(20) == 1
    out = workers.output(proc)
    assert "cannot use redis://:***@127.0.0.1" in out
    assert "pw-SECRET-2" not in out
