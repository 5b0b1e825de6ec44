"""What the delivery engine costs the app, and how fast it empties its queue.

* ``capture`` cost: microseconds per call on the app's thread, with the sender thread
  running and delivering at the same time (the realistic case), for the memory outbox
  (an ``Event`` and a plain dict) and the SQLite outbox (which commits each event).
* delivery rate: events per second from ``capture`` until ``flush()`` returns, to a local
  collector (a minimal keep-alive HTTP server in a separate process, answering 200 to
  everything, so the collector is not the bottleneck).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_delivery.py [--events 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cdptrack.config import Config
from cdptrack.events import Event, track
from cdptrack.tracker import Tracker

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


def _collector(port_out: Any, port: int = 0) -> None:
    """A tiny HTTP/1.1 keep-alive server: reads each request, answers 200 ``{}``; on
    ``port`` (0: any free one), which it sends to ``port_out``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                if length:
                    await reader.readexactly(length)
                writer.write(RESPONSE)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port)
        port_out.send(server.sockets[0].getsockname()[1])
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def config_for(port: int, destinations: tuple[str, ...]) -> Config:
    base = f"http://127.0.0.1:{port}"
    values: dict[str, Any] = {
        "yespo_tracker_url": base + "/tracker/api/v2",
        "yespo_api_url": base + "/yespo/api/v1",
        "customerio_url": base + "/cio/v1",
        "orangepill_url": base + "/op/v1",
    }
    if "yespo_tracker" in destinations:
        values["yespo_site_id"] = "site-1"
    if "yespo_events" in destinations:
        values["yespo_api_key"] = "bench-key"
    if "customerio" in destinations:
        values["customerio_api_key"] = "bench-key"
    if "orangepill" in destinations:
        values["orangepill_api_key"] = "bench-key"
    return Config(**values)


VISITORS = 1000  # distinct shoppers (sc cookies) the events are spread over


def make_events(n: int, visitors: int = VISITORS) -> list[Event]:
    """``n`` product views, round-robin over ``visitors`` shoppers (each with its own
    ``sc`` and e-mail): the realistic case is many shoppers at once, each with a few
    events in flight.  ``visitors=1`` is the worst case for per-visitor ordering."""
    return [track("Product Viewed", {"product_id": f"sku-{i}", "price": 19.9, "currency": "USD",
                                     "name": "Blue shoe", "category": "shoes"},
                  visitor={"sc": f"CDA68358-94FB-4D83-9655-{i % visitors:012X}",
                           "email": f"buyer{i % visitors}@example.com",
                           "orangepill_identity": "634b56217f6a7b0be52dffbd"})
            for i in range(n)]


def capture_cost(config: Config, outbox: str, items: list[Any], *, burst: int,
                 pause: float = 0.0) -> tuple[float, float]:
    """Median and 95th percentile µs per ``capture``, timed per burst of ``burst`` calls.

    With a pause between bursts the sender drains in between, as in a web app where
    requests come and go; with no pause the sender is saturated the whole time and the
    figure includes the app thread waiting for the GIL while the sender works."""
    tracker = Tracker(config, outbox=outbox, max_queue=len(items) + 10)
    tracker.capture(items[0])  # start the sender outside the measurement
    tracker.flush(30)
    capture = tracker.capture
    per_call: list[float] = []
    for start in range(0, len(items), burst):
        chunk = items[start:start + burst]
        started = time.perf_counter()
        for item in chunk:
            capture(item)
        per_call.append((time.perf_counter() - started) / len(chunk) * 1e6)
        if pause:
            time.sleep(pause)
    tracker.flush(600)
    tracker.shutdown(5)
    per_call.sort()
    return statistics.median(per_call), per_call[int(len(per_call) * 0.95) - 1]


def delivery_rate(config: Config, events: list[Event], outbox: str = "memory"
                  ) -> tuple[float, float, dict[str, dict[str, int]]]:
    """Events per second from the first ``capture`` until ``flush()`` returned, and
    this process's CPU per event over the same span (the capturing thread and the
    sender together; the collector is another process)."""
    tracker = Tracker(config, outbox=outbox, max_queue=len(events) + 10)
    tracker.capture(events[0])
    tracker.flush(30)
    started = time.perf_counter()
    cpu = time.process_time()
    for event in events:
        tracker.capture(event)
    ok = tracker.flush(600)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu
    stats = tracker.stats()
    tracker.shutdown(5)
    if not ok:
        raise SystemExit("delivery did not finish")
    return len(events) / elapsed, cpu / len(events) * 1e6, stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)

    receive, send = multiprocessing.Pipe(duplex=False)
    collector = multiprocessing.Process(target=_collector, args=(send,), daemon=True)
    collector.start()
    port = receive.recv()
    all_four = ("yespo_tracker", "yespo_events", "customerio", "orangepill")
    try:
        rows: list[tuple[str, str]] = []
        events = make_events(args.events)
        dicts = [e.to_dict() for e in events]
        config = config_for(port, all_four)
        few = events[: min(len(events), 2000)]
        few_dicts = dicts[: len(few)]
        for label, items in [("Event", few), ("dict", few_dicts)]:
            for mode, burst, pause in [("bursts of 10, sender drains between", 10, 0.05),
                                       ("tight loop, sender saturated", 100, 0.0)]:
                median, p95 = capture_cost(config, "memory", items, burst=burst, pause=pause)
                rows.append((f"capture({label}), memory outbox, {mode}",
                             f"{median:.2f} µs (p95 {p95:.2f})"))
        for mode, burst, pause in [("bursts of 10, sender drains between", 10, 0.05),
                                   ("tight loop, sender saturated", 100, 0.0)]:
            with tempfile.TemporaryDirectory() as tmp:
                median, p95 = capture_cost(config, f"sqlite:///{tmp}/o.db", few,
                                           burst=burst, pause=pause)
            rows.append((f"capture(Event), SQLite outbox, {mode}",
                         f"{median:.2f} µs (p95 {p95:.2f})"))
        for label, destinations in [
            ("all four APIs (memory outbox)", all_four),
            ("Customer.io only (batched)", ("customerio",)),
            ("Yespo tracker only (one request per event)", ("yespo_tracker",)),
        ]:
            rate, cpu, stats = delivery_rate(config_for(port, destinations), events)
            requests = sum(row["sent"] for row in stats.values())
            rows.append((f"delivery, {label}",
                         f"{rate:,.0f} events/s, {cpu:.1f} µs CPU/event "
                         f"({requests:,} messages accepted)"))
        one = make_events(args.events, visitors=1)
        for label, destinations in [
            ("all four APIs, one visitor", all_four),
            ("Customer.io only, one visitor", ("customerio",)),
        ]:
            rate, cpu, _ = delivery_rate(config_for(port, destinations), one)
            rows.append((f"delivery, {label}",
                         f"{rate:,.0f} events/s, {cpu:.1f} µs CPU/event"))
        with tempfile.TemporaryDirectory() as tmp:
            small = events[: min(len(events), 5000)]
            rate, cpu, _ = delivery_rate(config_for(port, all_four), small,
                                         outbox=f"sqlite:///{tmp}/o.db")
            rows.append(("delivery, all four APIs (SQLite outbox)",
                         f"{rate:,.0f} events/s, {cpu:.1f} µs CPU/event"))
    finally:
        collector.terminate()
        collector.join()

    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"{args.events:,} events over {VISITORS:,} visitors\n")
    width = max(len(name) for name, _ in rows)
    print(f"| {'measure':<{width}} | result |")
    print(f"| {'-' * width} | --- |")
    for name, value in rows:
        print(f"| {name:<{width}} | {value} |")


if __name__ == "__main__":
    main()
