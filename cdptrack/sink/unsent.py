"""What the shop's trackers did not send, and why: the ``skipped:<reason>``,
``dropped:<reason>`` and ``dropped_property:<name>`` counters of
:meth:`cdptrack.Tracker.stats`, for the inspector.

A sink learns them two ways:

* in one process (``cdptrack demo``, tests): :meth:`UnsentBoard.watch` a tracker's
  ``stats`` callable, read whenever the page asks;
* from a shop running elsewhere: the tracker's counts ``POST``-ed as JSON to the sink's
  ``/api/tracker-stats`` (``{"source": "shop-1", "stats": tracker.stats()}``), which
  :func:`report_stats` does; each source's latest report replaces its previous one.

Only reason counters are kept (never payloads, so never a secret); a reason is a short
machine-readable text (``missing_field:price``, ``invalid_field:filters.value``,
``dropped_property:<name>``) that the page escapes like every other value.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

# Bounds on what a report may hold (a sink is a local tool, but it answers anyone).
MAX_SOURCES = 64
MAX_REASONS = 500
MAX_REASON_LENGTH = 200

Stats = Mapping[str, Mapping[str, int]]


class UnsentBoard:
    """Per destination and reason, how many events the reporting trackers did not send
    there.  Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watched: list[Callable[[], Any]] = []
        self._reports: dict[str, dict[str, dict[str, int]]] = {}

    def watch(self, stats: Callable[[], Any]) -> None:
        """Read ``stats()`` (a tracker's :meth:`~cdptrack.Tracker.stats`) on every view."""
        with self._lock:
            self._watched.append(stats)

    def report(self, source: str, stats: Any) -> None:
        """Keep ``stats`` as ``source``'s latest counts; a :class:`ValueError` for data
        that is not ``{destination: {counter: int}}``."""
        reasons = _reasons(stats)
        with self._lock:
            if source not in self._reports and len(self._reports) >= MAX_SOURCES:
                raise ValueError(f"more than {MAX_SOURCES} reporting trackers")
            self._reports[source[:MAX_REASON_LENGTH]] = reasons

    def clear(self) -> None:
        """Forget the reports received (watched trackers are read afresh anyway)."""
        with self._lock:
            self._reports.clear()

    def view(self) -> dict[str, dict[str, dict[str, int]]]:
        """``{destination: {"skipped": {reason: n}, "dropped": {reason: n}}}``, summed
        over every reporting and watched tracker, zero counts left out."""
        with self._lock:
            watched = list(self._watched)
            found = [dict(r) for r in self._reports.values()]
        for stats in watched:
            try:
                found.append(_reasons(stats()))
            except Exception:  # a stopped tracker: nothing to add
                continue
        out: dict[str, dict[str, dict[str, int]]] = {}
        for reasons in found:
            for destination, counts in reasons.items():
                for key, n in counts.items():
                    kind, _, reason = key.partition(":")
                    if kind == "dropped_property":  # the event went, without it
                        kind, reason = "dropped", key
                    board = out.setdefault(destination, {"skipped": {}, "dropped": {}})
                    board[kind][reason] = board[kind].get(reason, 0) + n
        return out


def _reasons(stats: Any) -> dict[str, dict[str, int]]:
    if not isinstance(stats, Mapping):
        raise ValueError("stats must be an object of destinations")
    out: dict[str, dict[str, int]] = {}
    total = 0
    for destination, counts in stats.items():
        if not isinstance(destination, str) or not isinstance(counts, Mapping):
            raise ValueError("stats must be {destination: {counter: count}}")
        kept: dict[str, int] = {}
        for key, n in counts.items():
            if not isinstance(key, str) or not key.startswith(
                    ("skipped:", "dropped:", "dropped_property:")):
                continue
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise ValueError(f"{key}: a count must be a non-negative integer")
            if n and len(key) <= MAX_REASON_LENGTH:
                kept[key] = n
        total += len(kept)
        if total > MAX_REASONS:
            raise ValueError(f"more than {MAX_REASONS} reasons")
        if kept:
            out[destination[:MAX_REASON_LENGTH]] = kept
    return out


def report_stats(sink_url: str, stats: Stats, source: str = "shop",
                 timeout: float = 2.0) -> None:
    """``POST`` a tracker's counts (``tracker.stats()``) to the sink at ``sink_url``
    (``http://127.0.0.1:8765``), so its inspector shows what the shop did not send and
    why.  Raises ``OSError`` when the sink does not answer."""
    body = json.dumps({"source": source, "stats": stats}).encode("utf-8")
    request = urllib.request.Request(
        sink_url.rstrip("/") + "/api/tracker-stats", data=body, method="POST",
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        answer.read()


__all__ = ["UnsentBoard", "report_stats"]
