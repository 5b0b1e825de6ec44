"""Per-destination counters: what was enqueued, sent, retried, dropped (and why), dead.

Nothing is dropped silently: every event a destination did not get is counted here
under ``dropped`` and ``dropped:<reason>`` — except events the destination's API has no
form for at all (``no_mapping``: a Product Impressions for Customer.io), which are counted
as ``skipped`` / ``skipped:no_mapping``: by design, not a loss an operator should chase.

Updates come from the sender thread and, for drops at capture, from the caller's
thread, so a lock guards them.
"""

from __future__ import annotations

import threading
from collections import Counter

BASE_KEYS = ("enqueued", "sent", "retried", "dropped", "skipped", "dead")
# Reasons that mean "this API has no such event", not "this event was lost".
SKIP_REASONS = frozenset({"no_mapping"})


class Counters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_destination: dict[str, Counter[str]] = {}

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
