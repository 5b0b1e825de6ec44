"""A tracker's counters as metrics: a Prometheus collector and OpenTelemetry instruments.

Both read the same numbers as :meth:`cdptrack.Tracker.stats`, per destination:

- ``cdptrack_requests_total{destination, outcome}``: wire requests ``enqueued`` (taken by
  the destination's lane), ``sent``, ``retried`` (attempts that will be retried), ``dead``
  (in the dead-letter store) and ``dry_run``;
- ``cdptrack_dropped_total{destination, reason}``: events lost (``queue_full``,
  ``shutdown``, ...), what an operator alerts on, with ``dead``;
- ``cdptrack_skipped_total{destination, reason}``: events a destination does not take by
  design (``no_mapping``, ``no_contact_key``, ...), not a loss;
- ``cdptrack_queue_depth{destination}``: deliveries waiting for the destination (memory
  and SQLite outboxes), and ``cdptrack_outbox_open_events``: events accepted and not yet
  settled everywhere (every outbox);
- ``cdptrack_delivery_latency_seconds{destination}``: a histogram of the time from a
  request's first attempt to the API accepting it, retries and backoff included.

``prometheus_client`` (extra ``prometheus``) and ``opentelemetry-api`` (extra ``otel``)
are imported only by the function that needs them.  Reading happens at scrape or
collection time, from the scraping thread; nothing is added to the request path.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from .delivery.counters import Counters

if TYPE_CHECKING:
    from .tracker import Tracker

REQUEST_OUTCOMES = ("enqueued", "sent", "retried", "dead", "dry_run")


def _reasons(row: dict[str, int], kind: str) -> Iterator[tuple[str, int]]:
    prefix = kind + ":"
    for key, n in sorted(row.items()):
        if key.startswith(prefix):
            yield key[len(prefix):], n


class PrometheusCollector:
    """A ``prometheus_client`` collector of one tracker's metrics (see the module
    docstring).  Register it with :func:`register_prometheus`, or yourself:
    ``REGISTRY.register(PrometheusCollector(tracker))``."""

    def __init__(self, tracker: Tracker, namespace: str = "cdptrack") -> None:
        self._tracker = tracker
        self._ns = namespace

    def describe(self) -> list[Any]:
        """Nothing to describe ahead: the registry then does not call ``collect`` at
        registration (which would read the outbox before the app is ready)."""
        return []

    def collect(self) -> Iterator[Any]:
        """The metric families, read now from the tracker."""
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        ns = self._ns
        tracker = self._tracker
        stats = tracker.stats()
        requests = CounterMetricFamily(
            f"{ns}_requests", "Wire requests per destination and outcome.",
            labels=["destination", "outcome"])
        dropped = CounterMetricFamily(
            f"{ns}_dropped", "Events a destination lost, per reason.",
            labels=["destination", "reason"])
        skipped = CounterMetricFamily(
            f"{ns}_skipped", "Events a destination does not take by design, per reason.",
            labels=["destination", "reason"])
        for destination, row in sorted(stats.items()):
            for outcome in REQUEST_OUTCOMES:
                requests.add_metric([destination, outcome], row.get(outcome, 0))
            for reason, n in _reasons(row, "dropped"):
                dropped.add_metric([destination, reason], n)
            for reason, n in _reasons(row, "skipped"):
                skipped.add_metric([destination, reason], n)
        yield requests
        yield dropped
        yield skipped

        depth = GaugeMetricFamily(
            f"{ns}_queue_depth", "Deliveries waiting for a destination.",
            labels=["destination"])
        depths = tracker.outbox.queue_depths()
        for destination in sorted(set(stats) | set(depths)):
            depth.add_metric([destination], depths.get(destination, 0))
        yield depth
        yield GaugeMetricFamily(
            f"{ns}_outbox_open_events",
            "Events accepted and not yet settled for every destination.",
            value=tracker.pending())

        latency = HistogramMetricFamily(
            f"{ns}_delivery_latency_seconds",
            "Time from a request's first attempt to the API accepting it.",
            labels=["destination"])
        for destination, histogram in sorted(tracker.counters.latencies().items()):
            buckets = [("+Inf" if bound == float("inf") else repr(bound), n)
                       for bound, n in histogram.cumulative()]
            latency.add_metric([destination], buckets, histogram.total)
        yield latency


def register_prometheus(tracker: Tracker, registry: Any = None,
                        namespace: str = "cdptrack") -> PrometheusCollector:
    """Register a :class:`PrometheusCollector` for ``tracker`` with ``registry``
    (``prometheus_client.REGISTRY`` by default) and return it."""
    from prometheus_client import REGISTRY

    collector = PrometheusCollector(tracker, namespace)
    (REGISTRY if registry is None else registry).register(collector)
    return collector


def instrument_opentelemetry(tracker: Tracker, meter_provider: Any = None,
                             namespace: str = "cdptrack") -> None:
    """Publish ``tracker``'s metrics through OpenTelemetry: observable counters and
    gauges read at each collection, and a histogram recorded as requests are accepted.
    ``meter_provider`` defaults to the global one."""
    from opentelemetry import metrics as otel

    provider = meter_provider if meter_provider is not None else otel.get_meter_provider()
    meter = provider.get_meter("cdptrack")
    ns = namespace

    def requests(_options: Any) -> Iterable[Any]:
        for destination, row in sorted(tracker.stats().items()):
            for outcome in REQUEST_OUTCOMES:
                yield otel.Observation(row.get(outcome, 0),
                                       {"destination": destination, "outcome": outcome})

    def reasons(kind: str) -> Any:
        def callback(_options: Any) -> Iterable[Any]:
            for destination, row in sorted(tracker.stats().items()):
                for reason, n in _reasons(row, kind):
                    yield otel.Observation(n, {"destination": destination, "reason": reason})
        return callback

    def depths(_options: Any) -> Iterable[Any]:
        found = tracker.outbox.queue_depths()
        for destination in sorted(set(tracker.stats()) | set(found)):
            yield otel.Observation(found.get(destination, 0), {"destination": destination})

    def open_events(_options: Any) -> Iterable[Any]:
        yield otel.Observation(tracker.pending())

    meter.create_observable_counter(f"{ns}.requests", [requests], unit="{request}",
                                    description="Wire requests per destination and outcome.")
    meter.create_observable_counter(f"{ns}.dropped", [reasons("dropped")], unit="{event}",
                                    description="Events a destination lost, per reason.")
    meter.create_observable_counter(
        f"{ns}.skipped", [reasons("skipped")], unit="{event}",
        description="Events a destination does not take by design, per reason.")
    meter.create_observable_gauge(f"{ns}.queue_depth", [depths], unit="{delivery}",
                                  description="Deliveries waiting for a destination.")
    meter.create_observable_gauge(
        f"{ns}.outbox.open_events", [open_events], unit="{event}",
        description="Events accepted and not yet settled for every destination.")
    histogram = meter.create_histogram(
        f"{ns}.delivery.latency", unit="s",
        description="Time from a request's first attempt to the API accepting it.")

    def record(destination: str, seconds: float) -> None:
        histogram.record(seconds, {"destination": destination})

    counters: Counters = tracker.counters
    counters.add_latency_listener(record)


__all__ = ["PrometheusCollector", "instrument_opentelemetry", "register_prometheus"]
