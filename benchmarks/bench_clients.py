"""CPU per HTTP request for candidate clients and for cdptrack's sender, against the raw limit.

Each client sends N sequential 1 KB JSON POSTs over one keep-alive connection to a
minimal HTTP/1.1 server in another process on 127.0.0.1 (it answers ``200 {}``).  The
figure is this process's CPU time (user + system) per request, so the server's work is
not in it.  "raw protocol" is an asyncio protocol writing pre-encoded request bytes and
finding the end of each fixed-size answer: the practical floor for Python on asyncio.
"cdptrack sender" is a whole ``Tracker`` (Yespo tracker destination, one wire request
per event): capture, render, lane, HTTP, divided by wire requests.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_clients.py [--requests 3000] [--rounds 3]

Clients that are not installed (aiohttp) are skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.bench_delivery import _collector

BODY = b'{"x":"' + b"a" * 1000 + b'"}'
HEADERS = {"Content-Type": "application/json", "Authorization": "Basic Ym9iOnNlY3JldA=="}


def cpu() -> float:
    return time.process_time()  # user + system CPU of every thread of this process


def bench_raw(port: int, n: int) -> float:
    head = (f"POST /api/v2 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n\r\n")
    request = head.encode() + BODY
    answer_len = len(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 2\r\n\r\n{}")

    class Proto(asyncio.Protocol):
        def __init__(self) -> None:
            self.got = 0
            self.waiter: asyncio.Future[None] | None = None

        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.got += len(data)
            if self.got >= answer_len and self.waiter is not None:
                self.got -= answer_len
                self.waiter.set_result(None)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(Proto, "127.0.0.1", port)
        start = cpu()
        for _ in range(n):
            proto.waiter = loop.create_future()
            proto.transport.write(request)
            await proto.waiter
        spent = cpu() - start
        proto.transport.close()
        return spent

    return asyncio.run(main())


def bench_cdptrack_client(port: int, n: int) -> float:
    from cdptrack.delivery.http import HTTPClient

    async def main() -> float:
        client = HTTPClient(timeout=10)
        url = f"http://127.0.0.1:{port}/api/v2"
        await client.request("POST", url, headers=HEADERS, content=BODY)
        start = cpu()
        for _ in range(n):
            await client.request("POST", url, headers=HEADERS, content=BODY)
        spent = cpu() - start
        await client.aclose()
        return spent

    return asyncio.run(main())


def bench_httpx(port: int, n: int) -> float:
    import httpx

    async def main() -> float:
        async with httpx.AsyncClient() as client:
            url = f"http://127.0.0.1:{port}/api/v2"
            await client.post(url, headers=HEADERS, content=BODY)
            start = cpu()
            for _ in range(n):
                await client.post(url, headers=HEADERS, content=BODY)
            return cpu() - start

    return asyncio.run(main())


def bench_aiohttp(port: int, n: int) -> float:
    import aiohttp

    async def main() -> float:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{port}/api/v2"
            async with session.post(url, headers=HEADERS, data=BODY) as answer:
                await answer.read()
            start = cpu()
            for _ in range(n):
                async with session.post(url, headers=HEADERS, data=BODY) as answer:
                    await answer.read()
            return cpu() - start

    return asyncio.run(main())


def bench_http_client(port: int, n: int) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.request("POST", "/api/v2", body=BODY, headers=HEADERS)
    conn.getresponse().read()
    start = cpu()
    for _ in range(n):
        conn.request("POST", "/api/v2", body=BODY, headers=HEADERS)
        conn.getresponse().read()
    spent = cpu() - start
    conn.close()
    return spent


def bench_sender(port: int, n: int) -> float:
    """A Tracker with the Yespo tracker only: one wire request per event."""
    from cdptrack import Tracker
    from cdptrack.config import Config
    from cdptrack.events import track

    config = Config(yespo_site_id="site-1",
                    yespo_tracker_url=f"http://127.0.0.1:{port}/tracker/api/v2")
    tracker = Tracker(config, max_queue=n + 10, concurrency=1)
    props = {"product_id": "72354", "price": 754, "currency": "USD", "in_stock": True,
             "name": "Tea " + "a" * 600, "category": "tea"}
    events = [track("Product Viewed", props,
                    visitor={"sc": "CDA68358-94FB-4D83-9655-3FEB3C4114A3"})
              for _ in range(n)]
    tracker.capture(events[0])
    tracker.flush(30)
    start = cpu()
    for event in events:
        tracker.capture(event)
    tracker.flush(120)
    spent = cpu() - start
    tracker.shutdown(5)
    return spent


def _child(name: str, port: int, n: int, out: Any) -> None:
    out.send(CLIENTS[name](port, n))


CLIENTS: dict[str, Callable[[int, int], float]] = {
    "raw asyncio protocol (the limit)": bench_raw,
    "cdptrack HTTPClient (httptools)": bench_cdptrack_client,
    "http.client (blocking)": bench_http_client,
    "aiohttp ClientSession": bench_aiohttp,
    "httpx.AsyncClient": bench_httpx,
    "cdptrack sender (Tracker, 1 request per event)": bench_sender,
}


def measure(name: str, port: int, n: int) -> float | None:
    """µs of CPU per request, run in a fresh process; None when the client is missing."""
    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.Process(target=_child, args=(name, port, n, child))
    proc.start()
    proc.join(300)
    if proc.exitcode != 0 or not parent.poll():
        return None
    return float(parent.recv()) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    parent, child = multiprocessing.Pipe()
    server = multiprocessing.Process(target=_collector, args=(child,), daemon=True)
    server.start()
    port = parent.recv()
    results: dict[str, list[float]] = {name: [] for name in CLIENTS}
    try:
        for _ in range(args.rounds):  # interleaved rounds: shared-CPU noise hits all
            for name in CLIENTS:
                value = measure(name, port, args.requests)
                if value is not None:
                    results[name].append(value)
    finally:
        server.terminate()
    raw = statistics.median(results["raw asyncio protocol (the limit)"])
    print(f"{args.requests} sequential 1 KB POSTs, keep-alive, loopback; median of "
          f"{args.rounds} rounds; Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    print()
    print("| client | CPU µs per request | vs. the raw limit |")
    print("| --- | ---: | ---: |")
    for name, values in results.items():
        if not values:
            print(f"| {name} | skipped (not installed) | |")
            continue
        value = statistics.median(values)
        print(f"| {name} | {value:.0f} | {value / raw:.2f}x |")


if __name__ == "__main__":
    main()
