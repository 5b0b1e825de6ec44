"""What committing a request's events before its last body chunk costs (SQLite outbox).

With a durable outbox the WSGI and ASGI middlewares build a request's events and commit
them in one transaction *before* the server gets the last chunk of the body, so a
worker killed once the client has the whole response cannot lose them
(``tests/test_hardening_crash.py``).  Committing after the body (in ``close()``) does
the same work a little later.  This times one tracked product page through the WSGI
middleware, called in a loop (no server, no network), in three ways:

* ``memory``: the memory outbox (the request only appends a record; nothing on disk);
* ``sqlite, commit at close``: the SQLite outbox, events built and committed when the
  server closes the body (after the client had it);
* ``sqlite, commit before the last chunk``: what cdptrack does.

For each: the time until the last chunk is handed to the server (what the client
waits for) and until ``close()`` returned (what the worker spends), median and p95 in
microseconds per request.  The tracker runs in dry-run mode: its sender reads, renders
and settles the events as it would in production, without a network.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_durable.py [--requests 3000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from cdptrack.config import Config
from cdptrack.tracker import Tracker
from cdptrack.wsgi import CDPTrackWSGIMiddleware

PAGE = [b"<html><body><h1>72354</h1>", b"<p>" + b"x" * 4000 + b"</p>", b"</body></html>"]


def shop(environ: dict[str, Any], start_response: Any) -> Any:
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
    return iter(PAGE)  # a generator-like body, as Flask's and Django's are


def run(outbox: str, commit_first: bool, n: int) -> tuple[list[float], list[float]]:
    config = Config(customerio_api_key="bench-key", dry_run=True)
    tracker = Tracker(config, outbox=outbox, handle_signals=False, flush_at_exit=0.0)
    app = CDPTrackWSGIMiddleware(shop, tracker)
    app.observer.commit_first = commit_first and tracker.outbox.durable
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/products/72354", "SCRIPT_NAME": "",
               "QUERY_STRING": "", "SERVER_NAME": "shop.test", "SERVER_PORT": "80",
               "HTTP_HOST": "shop.test", "wsgi.url_scheme": "http",
               "HTTP_COOKIE": "sc=CDA68358-94FB-4D83-9655-3FEB3C4114A3",
               "REMOTE_ADDR": "203.0.113.9", "HTTP_USER_AGENT": "Mozilla/5.0"}

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        return None

    to_last: list[float] = []
    to_close: list[float] = []
    clock = time.perf_counter
    try:
        for _ in range(n):
            began = clock()
            body = app(dict(environ), start_response)
            for _chunk in body:
                pass
            last = clock()
            body.close()  # type: ignore[attr-defined]
            done = clock()
            to_last.append((last - began) * 1e6)
            to_close.append((done - began) * 1e6)
    finally:
        tracker.shutdown(0.0)
    return to_last, to_close


def p95(values: list[float]) -> float:
    return sorted(values)[int(len(values) * 0.95)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("cdptrack").setLevel(logging.ERROR)
    ways = [("memory outbox", "memory", False),
            ("SQLite, commit at close()", "sqlite", False),
            ("SQLite, commit before the last chunk", "sqlite", True)]
    results: dict[str, list[tuple[list[float], list[float]]]] = {w[0]: [] for w in ways}
    with tempfile.TemporaryDirectory() as tmp:
        for round_no in range(args.rounds):  # rounds interleaved: the machine drifts
            for name, kind, first in ways:
                outbox = "memory" if kind == "memory" else \
                    f"sqlite:///{Path(tmp) / f'{round_no}-{first}.db'}"
                run(outbox, first, 200)  # warm up: the file, the caches
                results[name].append(run(outbox, first, args.requests))
    print("| way | to the last chunk: median (p95) | to close(): median (p95) |")
    print("| --- | ---: | ---: |")
    for name, _, _ in ways:
        rounds = results[name]
        best = min(rounds, key=lambda r: statistics.median(r[1]))
        last, close = best
        print(f"| {name} | {statistics.median(last):.1f} µs ({p95(last):.1f}) | "
              f"{statistics.median(close):.1f} µs ({p95(close):.1f}) |")


if __name__ == "__main__":
    main()
