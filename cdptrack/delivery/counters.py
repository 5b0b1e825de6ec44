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

import threading
from collections import Counter

BASE_KEYS = ("enqueued", "sent", "retried", "dropped", "skipped", "dead")
# Reasons that mean "this API does not take this event", not "this event was lost".
SKIP_REASONS = frozenset({"no_mapping", "no_contact_key", "no_identity", "no_changed_lines"})
# The columns of the summary table, in order; ``dry_run`` only when it is not zero.
TABLE_KEYS = ("enqueued", "sent", "dry_run", "retried", "skipped", "dropped", "dead")


class Counters:
    """Thread-safe per-destination counters (see the module docstring for the keys)."""

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
