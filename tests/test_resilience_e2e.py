"""The delivery promise end to end, through the real Flask storefront: shoppers walk the
shop over real HTTP while every API answers with refusals, 503s, 429s with Retry-After
and slow answers, and still every request the renderers produced reaches the API, with
the same Customer.io ``messageId`` / Orangepill ``idempotency-key`` on every attempt; and
a shop process killed with SIGKILL while an API is down delivers, after its restart,
every event it had accepted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from support.delivery import FAST
from support.redis_server import free_port
from support.servers import wait_for

from cdptrack.commands.demo import ShopServer
from cdptrack.commands.demo_shoppers import run_shoppers
from cdptrack.config import Config
from cdptrack.delivery.outbox import DeadLetter, Delivery
from cdptrack.delivery.outbox_memory import MemoryOutbox
from cdptrack.destinations import render_event
from cdptrack.destinations.base import WireRequest
from cdptrack.events import Event
from cdptrack.examples.flask_shop.app import create_app
from cdptrack.sink import FailurePlan, Sink
from cdptrack.tracker import Tracker

ROOT = Path(__file__).resolve().parent.parent
KEYS = {"yespo_site_id": "DEMO", "yespo_api_key": "yespo-SECRET-e2e",
        "customerio_api_key": "cio-SECRET-e2e", "orangepill_api_key": "op-SECRET-e2e"}
# Every page kind of a shopper's journey, as each API names it (the storefront's HTML
# pages are page views too).
PAGE_KINDS: dict[str, set[str]] = {
    "yespo_tracker": {"CategoryPage", "ProductPage", "StatusCart", "SearchRequest",
                      "AddToWishlist", "CustomerData", "PurchasedItems"},
    "yespo_events": {"pageViewed", "productCategoryViewed", "productViewed", "cartUpdated",
                     "orderCreated"},
    "customerio": {"page", "Product List Viewed", "Product Viewed", "Product Added",
                   "Product Removed", "Products Searched", "Product Added to Wishlist",
                   "identify", "Order Completed"},
    "orangepill": {"pageViewed", "categoryViewed", "productViewed", "cartUpdated",
                   "productsSearched", "addedToWishlist", "person update", "orderCompleted"},
}
FAULTS = {"refuse", "503", "429", "slow"}


class RecordingOutbox(MemoryOutbox):
    """The default memory outbox, keeping a copy of every wire request the renderers
    produced, to compare with what arrived.  The memory outbox's deliveries are rendered
    by their lane when sent; the lane leaves the requests on the delivery it settles."""

    def __init__(self) -> None:
        super().__init__()
        self.produced: list[WireRequest] = []

    def settle(self, done: Sequence[Delivery], letters: Sequence[DeadLetter] = ()) -> None:
        for delivery in done:
            self.produced.extend(delivery.requests or ())
        super().settle(done, letters)


def request_key(api: str, method: str, path: str, headers: dict[str, str], body: Any) -> Any:
    """What makes two HTTP requests "the same request" to an API: Customer.io's
    ``messageId``, Orangepill's idempotency key on its path; Yespo carries no id, so its
    whole body (a retry sends the very same bytes)."""
    if api == "customerio":
        return body["messageId"]
    if api == "orangepill":
        return (method, path, headers["idempotency-key"])
    return json.dumps(body, sort_keys=True)


def without_id(api: str, path: str, body: Any) -> str:
    """A request's content minus its id: attempts of one request look alike here.  (A
    Customer.io message says its own ``type`` and may travel alone or in a batch.)"""
    if api == "customerio":
        return json.dumps({k: v for k, v in body.items() if k != "messageId"}, sort_keys=True)
    return path + " " + json.dumps(body, sort_keys=True)


def the_id(api: str, headers: dict[str, str], body: Any) -> str:
    return str(body["messageId"] if api == "customerio" else headers["idempotency-key"])


def produced_key(request: WireRequest) -> Any:
    headers = {k.lower(): v for k, v in request.headers.items()}
    return request_key(request.destination, request.method, urlsplit(request.url).path,
                       headers, request.json)


def delivered(record: dict[str, Any]) -> bool:
    """The API took it: a 2xx answer that was not an injected failure."""
    return (record["fault"] in (None, "slow") and record["status"] is not None
            and 200 <= record["status"] < 300)


def record_key(record: dict[str, Any]) -> Any:
    return request_key(record["api"], record["method"], record["path"], record["headers"],
                       record["body"])


def missing(produced: Sequence[WireRequest], records: Sequence[dict[str, Any]]
            ) -> dict[str, list[str]]:
    """Per API, the produced requests with no successful copy at the sink (as many
    successful copies as requests are needed when two requests are the same bytes)."""
    wanted: Counter[tuple[str, Any]] = Counter(
        (r.destination, produced_key(r)) for r in produced)
    got: Counter[tuple[str, Any]] = Counter(
        (r["api"], record_key(r)) for r in records if delivered(r))
    out: dict[str, list[str]] = defaultdict(list)
    for (api, key), count in wanted.items():
        if got[(api, key)] < count:
            out[api].append(str(key)[:120])
    return dict(out)


def sink_config(sink: Sink, **overrides: str) -> Config:
    return Config(**KEYS, **{**sink.config_overrides(), **overrides})


@pytest.fixture
def flaky_sink() -> Iterator[Sink]:
    # About one API request in three fails: refused, 503 / 429 (with Retry-After: 1,
    # capped by the tracker to max_retry_after), or answered after the tracker's
    # timeout (the API did get it: the retry is a true duplicate).
    plan = FailurePlan({"refuse": 0.1, "503": 0.1, "429": 0.08, "slow": 0.05}, seed=11,
                       retry_after=1, slow_seconds=0.6)
    with Sink(fail=plan, limit=50_000) as sink:
        yield sink


def test_shoppers_through_a_flaky_sink_every_request_arrives_with_stable_ids(
        flaky_sink: Sink) -> None:
    outbox = RecordingOutbox()
    tracker = Tracker(sink_config(flaky_sink), outbox=outbox, timeout=0.3,
                      max_retry_time=30, **FAST)
    shop = ShopServer("flask", create_app(tracker=tracker), 0)
    shop.start()
    try:
        runs = run_shoppers(shop.url, 6, "flask", seed=5, concurrency=3)
    finally:
        shop.stop()
    try:
        assert [e for run in runs for e in run.errors] == []
        assert all(run.order_id for run in runs)
        assert tracker.flush(40), tracker.stats()
        stats = tracker.stats()
    finally:
        tracker.shutdown(2)
    records = flaky_sink.requests()

    # The schedule did bite, in every way, and the tracker retried.
    assert {r["fault"] for r in records} >= FAULTS
    assert all(row["retried"] > 0 for row in stats.values()), stats
    # Nothing was lost or given up: every produced request was sent, none is dead, and
    # no event was dropped for lack of room, at shutdown or by an error.
    for name, row in stats.items():
        assert row["sent"] == row["enqueued"] > 0, (name, row)
        assert row["dead"] == 0, (name, row)
        assert not {k for k, n in row.items() if n and k in (
            "dropped:queue_full", "dropped:shutdown", "dropped:error", "dropped:invalid",
            "dropped:render_error")}, (name, row)
    assert len(outbox.produced) == sum(row["enqueued"] for row in stats.values())
    # Each produced request reached its API (at least once).
    assert missing(outbox.produced, records) == {}
    # Every attempt of a request carried that request's own id (a retry never makes a
    # new one), so the API can drop the duplicates.
    for api in ("customerio", "orangepill"):
        made = {(without_id(api, urlsplit(r.url).path, r.json),
                 the_id(api, {k.lower(): v for k, v in r.headers.items()}, r.json))
                for r in outbox.produced if r.destination == api}
        seen = [(without_id(api, r["path"], r["body"]), the_id(api, r["headers"], r["body"]))
                for r in records if r["api"] == api and r["event"] != "create person"]
        assert [pair for pair in seen if pair not in made] == [], api
        attempts = Counter(the_id(api, r["headers"], r["body"])
                           for r in records if r["api"] == api)
        assert max(attempts.values()) > 1, f"no request to {api} was tried twice"
    # The shop keeps no Orangepill identities: each signed-in shopper's person was asked
    # for under one idempotency key, however often the create was retried.
    creates = [r for r in records if r["api"] == "orangepill" and r["event"] == "create person"]
    people = {json.dumps(r["body"]["person"]["contactInformation"], sort_keys=True)
              for r in creates}
    assert len({r["headers"]["idempotency-key"] for r in creates}) == len(people) > 0
    # And each API got every kind of page the shoppers saw, all valid.
    for api, kinds in PAGE_KINDS.items():
        got = {r["event"] for r in records if r["api"] == api and delivered(r)}
        assert kinds <= got, (api, kinds - got)
    assert [(r["api"], r["problems"]) for r in records if delivered(r) and not r["valid"]
            ] == []
    text = json.dumps(records)
    assert not any(secret in text for secret in KEYS.values() if "SECRET" in secret)


# -- a shop process killed while an API is down ----------------------------------------------


class ShopProcess:
    """``support/shop_child.py``: the storefront with a SQLite outbox in its own process."""

    def __init__(self, outbox: str, config: dict[str, str], accepted: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CDPTRACK_")}
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "support" / "shop_child.py"), outbox,
             json.dumps(config), str(accepted)],
            env={**env, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("port "), f"the shop did not start: {line!r}"
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def accepted_requests(accepted: Path, config: Config) -> list[WireRequest]:
    """What the renderers make of every event the shop accepted."""
    events = [Event.from_dict(json.loads(line)) for line in accepted.read_text().splitlines()]
    assert events, "the shop accepted nothing"
    return [r for e in events for r in render_event(e, config).requests]


def delivered_elsewhere(accepted: Path, config: Config, healthy: Sink) -> bool:
    """Every API but Customer.io has every request of the events accepted so far."""
    size = accepted.stat().st_size if accepted.exists() else 0
    if not size:
        return False
    wanted = [r for r in accepted_requests(accepted, config) if r.destination != "customerio"]
    return not missing(wanted, healthy.requests()) and accepted.stat().st_size == size



def test_a_shop_killed_while_an_api_is_down_delivers_everything_it_accepted_after_restart(
        tmp_path: Path) -> None:
    outbox = f"sqlite:///{tmp_path / 'outbox.db'}"
    accepted = tmp_path / "accepted.jsonl"
    down_port = free_port()  # Customer.io: nothing listens here until after the kill
    with Sink() as healthy:
        settings = {**KEYS, **healthy.config_overrides(),
                    "customerio_url": f"http://127.0.0.1:{down_port}/customerio/v1"}
        config = Config(**settings)
        shops: list[ShopProcess] = []
        try:
            first = ShopProcess(outbox, settings, accepted)
            shops.append(first)
            runs = run_shoppers(first.url, 3, "flask", seed=9, concurrency=3)
            assert [e for run in runs for e in run.errors] == []
            # The other APIs get everything; Customer.io refuses every connection.  (The
            # kill waits for them: the sink would answer a request cut off by the kill
            # with a 400 for its empty body and keep that answer under the Orangepill
            # idempotency key, which no real API does with half a request.)
            assert wait_for(lambda: delivered_elsewhere(accepted, config, healthy), 10)
            first.kill()
            produced = accepted_requests(accepted, config)
            assert healthy.requests("customerio") == []
            assert any(r.destination == "customerio" for r in produced)

            with Sink(port=down_port) as back:  # Customer.io answers again
                second = ShopProcess(outbox, settings, accepted)
                shops.append(second)

                def left() -> dict[str, list[str]]:
                    return missing(produced, healthy.requests() + back.requests())

                # One visitor comes by (the tracker starts its sender on first use).
                run_shoppers(second.url, 1, "flask", seed=10)
                assert wait_for(lambda: not left(), 15), left()
                assert {r["api"] for r in back.requests()} == {"customerio"}
        finally:
            for shop in shops:
                shop.kill()
