"""What the SQLite outbox itself costs, without HTTP, servers or other threads.

The outbox's two sides are driven directly, in one thread, so the figures hold still on
a busy machine: per simulated request, ``put_deferred`` with the product page's two
events (what a request thread does: encoding and the commit; the build is a prepared
list, so it is not in the figure), and, every ``--per-round`` requests, one round of
the sender's outbox calls (``take_new``, ``route`` to four destinations, ``next_for``
and ``settle`` per destination, as if every API answered at once).  Reported: thread
CPU per request of each side (median and p99 of the capture; the sender's total per
request; the capture's wall time too, which also holds what it waits for: an fsync
of a WAL checkpoint), and the SQL statements and transactions each side runs per request (counted
with sqlite3's trace callback).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_sqlite_outbox.py [--requests 5000]
        [--per-round 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cdptrack.delivery.deferred import as_deferred
from cdptrack.delivery.outbox import Routing
from cdptrack.delivery.outbox_sqlite import SQLiteOutbox
from cdptrack.events import Event, page, track

DESTINATIONS = ("yespo_tracker", "yespo_events", "customerio", "orangepill")
VISITOR = {"sc": "CDA68358-94FB-4D83-9655-3FEB3C4114A3", "user_id": "u-bench",
           "email": "bench@example.com", "orangepill_identity": "634b56217f6a7b0be52dffbd"}
CONTEXT = {"ip": "127.0.0.1", "user_agent": "Mozilla/5.0 (bench) Firefox/120.0",
           "url": "http://127.0.0.1/product/101"}


def request_events(i: int) -> list[Event]:
    """A product page's events: the page view and Product Viewed."""
    return [
        page(CONTEXT["url"], name="Product", visitor=VISITOR, context=CONTEXT),
        track("Product Viewed", {"product_id": f"{100 + i % 4}", "name": "Bench product",
                                 "price": 754, "currency": "USD", "in_stock": True},
              visitor=VISITOR, context=CONTEXT),
    ]


class Prepared:
    """A request's record whose build is already done (the build is not measured)."""

    def __init__(self, events: list[Event]) -> None:
        self.events = events

    def build(self) -> list[Event]:
        return self.events


def run(requests: int, per_round: int, count: bool) -> dict[str, float]:
    """One round; with ``count`` the statements are counted instead of timed (the
    trace callback expands every statement's SQL, which costs more than running it)."""
    with tempfile.TemporaryDirectory() as workdir:
        outbox = SQLiteOutbox(os.path.join(workdir, "outbox.db"))
        outbox.start()
        for name in DESTINATIONS:  # as the lanes do when the sender starts: the last
            outbox.next_for(name, 64)  # run's leftovers, read from the file
        statements = {"capture": 0, "sender": 0}
        commits = {"capture": 0, "sender": 0}
        side = ["capture"]

        def trace(sql: str) -> None:
            statements[side[0]] += 1
            # A lone statement outside BEGIN ... COMMIT is its own transaction.
            if sql.startswith(("INSERT", "UPDATE", "DELETE")) and not in_txn[0]:
                commits[side[0]] += 1
            elif sql.startswith("BEGIN"):
                in_txn[0] = True
            elif sql == "COMMIT":
                in_txn[0] = False
                commits[side[0]] += 1

        in_txn = [False]
        assert outbox._writer is not None
        if count:
            outbox._writer.set_trace_callback(trace)
        jobs = [as_deferred(Prepared(request_events(i))) for i in range(requests)]
        capture: list[int] = []
        capture_wall: list[int] = []
        sender = 0
        for start in range(0, requests, per_round):
            side[0] = "capture"
            for job in jobs[start:start + per_round]:
                began, wall = time.thread_time_ns(), time.perf_counter_ns()
                outbox.put_deferred(job)
                capture.append(time.thread_time_ns() - began)
                capture_wall.append(time.perf_counter_ns() - wall)
            side[0] = "sender"
            began = time.thread_time_ns()
            taken = outbox.take_new(256)
            routings = []
            for key, item in taken:
                assert isinstance(item, Event)
                routings.append(Routing(key, item, dict.fromkeys(DESTINATIONS)))
            outbox.route(routings)
            for name in DESTINATIONS:
                while deliveries := outbox.next_for(name, 64):
                    outbox.settle(deliveries)
            sender += time.thread_time_ns() - began
            time.sleep(0.004)  # the sender's pace: bursts end on time, as they would
        side[0] = "sender"
        began = time.thread_time_ns()
        while outbox.min_open_key() is not None:  # the last burst's write
            time.sleep(0.005)
        sender += time.thread_time_ns() - began
        outbox.close()
        ordered, ordered_wall = sorted(capture), sorted(capture_wall)
        return {
            "capture_median": statistics.median(capture) / 1000,
            "capture_p99": ordered[int(0.99 * len(ordered))] / 1000,
            "wall_median": statistics.median(capture_wall) / 1000,
            "wall_p99": ordered_wall[int(0.99 * len(ordered))] / 1000,
            "wall_max": ordered_wall[-1] / 1000,
            "sender": sender / requests / 1000,
            "capture_statements": statements["capture"] / requests,
            "capture_commits": commits["capture"] / requests,
            "sender_statements": statements["sender"] / requests,
            "sender_commits": commits["sender"] / requests,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--per-round", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results = [run(args.requests, args.per_round, False) for _ in range(args.rounds)]
    counted = run(min(args.requests, 1000), args.per_round, True)
    print(f"{args.requests} requests of 2 events, a sender round every {args.per_round}, "
          f"median of {args.rounds} rounds; Python {sys.version.split()[0]}, "
          f"thread {threading.current_thread().name}\n")
    print("| per request | capture | sender |")
    print("| --- | ---: | ---: |")
    med = {k: statistics.median(r[k] for r in results) for k in results[0]}
    print(f"| thread CPU | {med['capture_median']:.1f} µs (p99 {med['capture_p99']:.1f}) "
          f"| {med['sender']:.1f} µs |")
    print(f"| wall time | {med['wall_median']:.1f} µs (p99 {med['wall_p99']:.1f}, "
          f"max {med['wall_max']:.0f}) | |")
    print(f"| SQL statements | {counted['capture_statements']:.2f} "
          f"| {counted['sender_statements']:.2f} |")
    print(f"| transactions | {counted['capture_commits']:.2f} "
          f"| {counted['sender_commits']:.2f} |")


if __name__ == "__main__":
    main()
