"""Per-destination counters: what was enqueued, sent, retried, dropped (and why), dead.

Nothing is dropped silently: every event a destination did not get is counted here
under ``dropped`` and ``dropped:<reason>`` — except events a destination does not take by
design, which are counted as ``skipped`` / ``skipped:<reason>``: not a loss an operator
should chase.  Those reasons are ``no_mapping`` (the API has no form for the event: a
Product Impressions for Customer.io), ``no_contact_key`` (Yespo v1/event for a visitor
without e-mail, phone or external id), ``no_identity`` (Orangepill without
``orangepill_identity``, Customer.io without user id or ``sc``) and ``no_changed_lines``
(a Cart Updated that names no added or removed line, which Customer.io has no event for).

Updates come from the sender thread and, for drops at capture, from the caller's
thread, so a lock guards them.
"""

from __future__ import annotations

import bisect
import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

logger = logging.getLogger("cdptrack")

BASE_KEYS = ("enqueued", "sent", "retried", "dropped", "skipped", "dead")
# Reasons that mean "this API does not take this event", not "this event was lost".
SKIP_REASONS = frozenset({"no_mapping", "no_contact_key", "no_identity", "no_changed_lines"})
# The columns of the summary table, in order; ``dry_run`` only when it is not zero.
TABLE_KEYS = ("enqueued", "sent", "dry_run", "retried", "skipped", "dropped", "dead")


# Upper bounds (seconds) of the delivery-latency histogram's buckets; +Inf is implied.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                   60.0, 300.0, 600.0)

LatencyListener = Callable[[str, float], None]


@dataclass
class Latency:
    """A histogram of delivery latencies for one destination: per bucket of
    :data:`LATENCY_BUCKETS` the number of observations up to it (not cumulative), the
    observations above the last bound in the final slot, their sum and count."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    total: float = 0.0
    count: int = 0

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations up to it), ending with (+inf, count)."""
        out, running = [], 0
        for bound, n in zip((*LATENCY_BUCKETS, float("inf")), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out


class Counters:
    """Thread-safe per-destination counters (see the module docstring for the keys), and
    a delivery-latency histogram per destination for metrics exporters."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_destination: dict[str, Counter[str]] = {}
        self._latency: dict[str, Latency] = {}
        self._listeners: list[LatencyListener] = []

    def observe_latency(self, destination: str, seconds: float) -> None:
        """One request accepted by ``destination`` ``seconds`` after its first attempt."""
        with self._lock:
            found = self._latency.get(destination)
            if found is None:
                found = self._latency[destination] = Latency()
            found.counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
            found.total += seconds
            found.count += 1
            listeners = self._listeners
        for listener in listeners:
            try:
                listener(destination, seconds)
            except Exception:
                logger.exception("a latency listener failed")

    def add_latency_listener(self, listener: LatencyListener) -> None:
        """Call ``listener(destination, seconds)`` on each observed latency (on the sender
        thread: it must be quick and must not block)."""
        with self._lock:
            self._listeners = [*self._listeners, listener]

    def latencies(self) -> dict[str, Latency]:
        """A copy of the latency histograms, per destination."""
        with self._lock:
            return {name: Latency(list(h.counts), h.total, h.count)
                    for name, h in self._latency.items()}

    def add(self, destination: str, key: str, n: int = 1) -> None:
        self._bump(destination, (key,), n)

    def drop(self, destination: str, reason: str, n: int = 1) -> None:
        """Count ``n`` events or requests that will not reach ``destination``."""
        kind = "skipped" if reason in SKIP_REASONS else "dropped"
        self._bump(destination, (kind, f"{kind}:{reason}"), n)

    def _bump(self, destination: str, keys: tuple[str, ...], n: int) -> None:
        if n == 0:
            return
        with self._lock:
            counter = self._by_destination.get(destination)
            if counter is None:
                counter = self._by_destination[destination] = Counter()
            for key in keys:
                counter[key] += n

    def ensure(self, destination: str) -> None:
        with self._lock:
            self._by_destination.setdefault(destination, Counter())

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            out: dict[str, dict[str, int]] = {}
            for destination, counter in self._by_destination.items():
                row = dict.fromkeys(BASE_KEYS, 0)
                row.update(counter)
                out[destination] = row
            return out

    def reset(self) -> None:
        """Forget everything (the child after ``fork()`` starts from zero)."""
        self._lock = threading.Lock()
        self._by_destination = {}
        self._latency = {}  # listeners stay: the exporters were set up before the fork


def format_table(stats: dict[str, dict[str, int]]) -> str:
    """``stats`` as a fixed-width table: one row per destination, one column per counter,
    and the non-zero ``skipped:`` / ``dropped:`` reasons spelt out at the end of the row."""
    keys = [key for key in TABLE_KEYS
            if key != "dry_run" or any(row.get(key) for row in stats.values())]
    rows = [["destination", *keys, "reasons"]]
    for destination, counts in sorted(stats.items()):
        reasons = ", ".join(f"{key} {n}" for key, n in sorted(counts.items())
                            if n and key.startswith(("skipped:", "dropped:")))
        rows.append([destination, *(str(counts.get(key, 0)) for key in keys), reasons])
    if len(rows) == 1:
        rows.append(["(no destination)", *("0" for _ in keys), ""])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:-1], widths[1:], strict=True)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)
