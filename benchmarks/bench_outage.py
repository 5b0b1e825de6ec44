"""The slowest ``capture()`` while every API is down, and where that time goes.

A ``Tracker`` (memory outbox, all four APIs) points at a port where nothing listens, so
every request fails and is retried while events pile up to the queue bound.  The app
thread captures ``--events`` product views in bursts of 10 with a 5 ms pause, timing
each call; the garbage collector's passes are timed too (``gc.callbacks``), and the
process's memory per pending event is read from its RSS growth.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_outage.py [--events 30000]

Reports per capture: median, p99, p99.9, max; how late the app thread's pauses ended
(a collection holds the GIL whichever thread runs it, so the app waits for it as a
capture or elsewhere); the longest collection of each generation; which of them the
slowest captures overlapped; memory per pending event; and how long a full collection
takes while they wait.  With ``--recover``, the APIs then come back (a local collector
in another process, on the port that was dead) and it reports the process's CPU per
event while the sender empties the backlog.
"""

from __future__ import annotations

import argparse
import array
import gc
import multiprocessing
import os
import socket
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.bench_delivery import _collector
from cdptrack import Tracker
from cdptrack.config import Config
from cdptrack.events import track


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def dead_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--max-queue", type=int, default=10_000)
    parser.add_argument("--recover", action="store_true",
                        help="then bring the APIs back and time emptying the backlog")
    args = parser.parse_args()
    port = dead_port()
    base = f"http://127.0.0.1:{port}"
    config = Config(yespo_site_id="s", yespo_api_key="k", customerio_api_key="k",
                    orangepill_api_key="k", yespo_tracker_url=base + "/t",
                    yespo_api_url=base + "/y", customerio_url=base + "/c",
                    orangepill_url=base + "/o")
    tracker = Tracker(config, max_queue=args.max_queue, max_retry_time=600)
    who = {"sc": "CDA68358-94FB-4D83-9655-3FEB3C4114A3", "email": "b@example.com",
           "orangepill_identity": "634b56217f6a7b0be52dffbd", "user_id": "u-1"}
    props = {"product_id": "101", "sku": "SKU-101", "name": "Trail Runner", "price": 89.9,
             "currency": "USD", "category": "Shoes", "brand": "Northpeak",
             "in_stock": True, "url": "https://shop.example/product/101"}
    passes: list[tuple[int, float, float]] = []  # generation, start, end
    started: dict[str, float] = {}

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        now = time.perf_counter()
        if phase == "start":
            started["t"] = now
        else:
            passes.append((int(info["generation"]), started.get("t", now), now))

    tracker.capture(track("Product Viewed", props, visitor=who))  # sender up
    time.sleep(0.5)
    # The timings are written into arrays allocated before the first RSS reading: a
    # list of (start, end) tuples would grow by about 110 bytes per capture, which the
    # RSS growth would count as the outbox's (0.33 KiB per pending event at 30,000).
    starts = array.array("d", bytes(8 * args.events))
    ends = array.array("d", bytes(8 * args.events))
    # How late each 5 ms pause ended: the GIL held elsewhere.
    stalls = array.array("d", bytes(8 * (args.events // 10)))
    gc.collect()
    rss0 = rss_kib()
    gc.callbacks.append(on_gc)
    for i in range(args.events):
        event = track("Product Viewed", props, visitor=who)  # the caller's work, untimed
        t0 = time.perf_counter()
        tracker.capture(event)
        ends[i] = time.perf_counter()
        starts[i] = t0
        if i % 10 == 9:
            s0 = time.perf_counter()
            time.sleep(0.005)
            stalls[i // 10] = time.perf_counter() - s0 - 0.005
    gc.callbacks.remove(on_gc)
    time.sleep(1)
    pending = sum(tracker._outbox.backlog().values()) // 4 or 1
    rss1 = rss_kib()
    calls = list(zip(starts, ends, strict=True))
    durations = sorted((b - a) * 1e6 for a, b in calls)

    def pct(p: float) -> float:
        return durations[min(len(durations) - 1, int(p * len(durations)))]

    print(f"{args.events} captures, APIs down, max_queue {args.max_queue}; Python "
          f"{sys.version.split()[0]}")
    print(f"capture µs: median {statistics.median(durations):.1f}, p99 {pct(0.99):.1f}, "
          f"p99.9 {pct(0.999):.1f}, max {durations[-1]:.0f}")
    print(f"app thread: the latest of its 5 ms pauses ended {max(stalls) * 1e3:.1f} ms late "
          "(the GIL held by the sender, e.g. for a collection)")
    for gen in (0, 1, 2):
        mine = [(b - a) * 1e3 for g, a, b in passes if g == gen]
        if mine:
            print(f"gc generation {gen}: {len(mine)} passes, longest {max(mine):.1f} ms")
    slow = sorted(calls, key=lambda c: c[0] - c[1])[:20]
    overlapped = 0
    for a, b in slow:
        if any(g == 2 and s < b and e > a for g, s, e in passes):
            overlapped += 1
    print(f"of the 20 slowest captures, {overlapped} overlapped a full (gen 2) collection")
    for a, b in slow[:3]:
        during = [f"gen {g} {(e - s) * 1e3:.1f} ms" for g, s, e in passes if s < b and e > a]
        print(f"  a {(b - a) * 1e3:.1f} ms capture; collections during it: "
              f"{', '.join(during) or 'none'}")
    print(f"memory: {(rss1 - rss0) / max(1, pending):.2f} KiB RSS per pending event "
          f"({pending} events waiting per destination)")
    full = time.perf_counter()
    gc.collect()
    print(f"a full collection with them waiting: {(time.perf_counter() - full) * 1e3:.1f} ms "
          f"({len(gc.get_objects()):,} objects tracked in the process)")
    if args.recover:
        receive, send = multiprocessing.Pipe(duplex=False)
        collector = multiprocessing.Process(target=_collector, args=(send, port),
                                            daemon=True)
        collector.start()
        receive.recv()
        sent0 = sum(row["sent"] for row in tracker.stats().values())
        cpu = time.process_time()
        started = time.perf_counter()
        ok = tracker.flush(600)
        cpu = time.process_time() - cpu
        sent = sum(row["sent"] for row in tracker.stats().values()) - sent0
        print(f"recovery: {'' if ok else 'NOT '}emptied in "
              f"{time.perf_counter() - started:.1f} s (the lanes' backoff first), "
              f"{sent} messages; {cpu / max(1, sent // 4) * 1e6:.0f} µs CPU per event "
              "(this process, four APIs)")
        collector.terminate()
        collector.join()
    tracker.shutdown(0.5)


if __name__ == "__main__":
    main()
