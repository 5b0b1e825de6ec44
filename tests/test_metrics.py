"""The tracker's counters as metrics: scraped over real HTTP from prometheus_client's
exposition server, and collected by OpenTelemetry's in-memory reader, while the tracker
delivers to real local APIs."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from support.api_server import Reply
from support.delivery import (
    API_KEYS,
    FAST,
    FourApis,
    apis_fixture,  # noqa: F401 - the "apis" fixture
    product_viewed,
)
from support.servers import wait_for

from cdptrack import Tracker
from cdptrack.events import track
from cdptrack.metrics import PrometheusCollector, instrument_opentelemetry, register_prometheus

prometheus_client = pytest.importorskip("prometheus_client")
pytest.importorskip("opentelemetry.sdk.metrics")

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """A scrape's samples: (name, sorted labels) -> value."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


@pytest.fixture
def scrape() -> Iterator[Callable[[Tracker], str]]:
    """Register a tracker's collector in a fresh registry served over HTTP; return a
    function that scrapes it."""
    servers: list[Any] = []

    def serve(tracker: Tracker) -> Callable[[], str]:
        registry = prometheus_client.CollectorRegistry()
        register_prometheus(tracker, registry)
        server, _thread = prometheus_client.start_http_server(0, addr="127.0.0.1",
                                                              registry=registry)
        servers.append(server)
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        return lambda: httpx.get(url, timeout=10).text

    yield serve  # type: ignore[misc]
    for server in servers:
        server.shutdown()
        server.server_close()


def test_prometheus_scrape_counts_sent_skipped_dead_and_latency(apis: FourApis,
                                                                scrape: Any) -> None:
    apis.events.default = Reply(400, '{"error": "bad keyValue"}')
    tracker = Tracker(apis.config(), **FAST)
    get = scrape(tracker)
    for i in range(5):
        tracker.capture(product_viewed(i))
    # No contact key and no Orangepill identity: skipped by design there.
    tracker.capture(track("Product Viewed", {"product_id": "x", "price": 5},
                          visitor={"sc": "ABC"}))
    assert tracker.flush(20)
    text = get()
    got = samples(text)

    def value(name: str, **labels: str) -> float:
        return got.get((name, tuple(sorted(labels.items()))), 0.0)

    assert value("cdptrack_requests_total", destination="yespo_tracker", outcome="sent") == 6
    assert value("cdptrack_requests_total", destination="yespo_events", outcome="dead") == 5
    assert value("cdptrack_skipped_total", destination="yespo_events",
                 reason="no_contact_key") == 1
    assert value("cdptrack_skipped_total", destination="orangepill", reason="no_identity") == 1
    assert value("cdptrack_dropped_total", destination="orangepill", reason="no_identity") == 0
    assert value("cdptrack_queue_depth", destination="orangepill") == 0
    assert value("cdptrack_outbox_open_events") == 0
    # One latency observation per accepted HTTP request; none for refused ones.
    assert value("cdptrack_delivery_latency_seconds_count", destination="yespo_tracker") == 6
    assert value("cdptrack_delivery_latency_seconds_bucket", destination="yespo_tracker",
                 le="+Inf") == 6
    assert value("cdptrack_delivery_latency_seconds_count", destination="yespo_events") == 0
    assert value("cdptrack_delivery_latency_seconds_sum", destination="yespo_tracker") > 0
    for secret in API_KEYS.values():
        assert secret not in text
    tracker.shutdown(5)


def test_prometheus_queue_depth_shows_a_stalled_destination(apis: FourApis,
                                                            scrape: Any) -> None:
    release = threading.Event()

    def hold(path: str, body: bytes) -> Reply | None:
        release.wait(30)
        return None

    apis.orangepill.responder = hold
    # One request in flight per lane: the other four wait in Orangepill's queue.
    tracker = Tracker(apis.config(), concurrency=1, **FAST)
    get = scrape(tracker)
    for i in range(5):
        tracker.capture(product_viewed(i))

    def depth() -> float:
        return samples(get()).get(
            ("cdptrack_queue_depth", (("destination", "orangepill"),)), 0.0)

    try:
        assert wait_for(lambda: depth() >= 1)
        assert samples(get())[("cdptrack_outbox_open_events", ())] >= 1
    finally:
        release.set()
    assert tracker.flush(20)
    assert depth() == 0
    tracker.shutdown(5)


def test_collector_registers_without_reading_the_tracker() -> None:
    class Untouchable:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"read {name} at registration")

    registry = prometheus_client.CollectorRegistry()
    registry.register(PrometheusCollector(Untouchable()))  # type: ignore[arg-type]


def test_opentelemetry_in_memory_reader(apis: FourApis) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    tracker = Tracker(apis.config(), **FAST)
    instrument_opentelemetry(tracker, provider)
    for i in range(3):
        tracker.capture(product_viewed(i))
    tracker.capture(track("Product Viewed", {"product_id": "x", "price": 5},
                          visitor={"sc": "ABC"}))
    assert tracker.flush(20)

    points: dict[str, list[Any]] = {}
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points.setdefault(metric.name, []).extend(metric.data.data_points)

    def point(name: str, **labels: str) -> Any:
        [found] = [p for p in points[name] if dict(p.attributes) == labels]
        return found

    assert point("cdptrack.requests", destination="customerio", outcome="sent").value == 4
    assert point("cdptrack.skipped", destination="yespo_events",
                 reason="no_contact_key").value == 1
    assert point("cdptrack.queue_depth", destination="yespo_tracker").value == 0
    latency = point("cdptrack.delivery.latency", destination="yespo_tracker")
    assert latency.count == 4 and latency.sum > 0
    tracker.shutdown(5)
    provider.shutdown()
