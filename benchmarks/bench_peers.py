"""cdptrack's delivery against the Python SDKs a shop would otherwise use.

Peers (installed only for this benchmark, never project dependencies):

    .venv/bin/pip install customerio-cdp-analytics segment-analytics-python posthog

Every library sends ``Product Viewed``-like track calls to the same local collector on
127.0.0.1 (a separate process, keep-alive HTTP/1.1, answers every path with 200 and
counts the events in each body by their message id).  cdptrack runs a ``Tracker`` with
only the Customer.io destination (batches go to ``/v1/batch``, like the Customer.io and
Segment libraries; PostHog posts to ``/batch/``).  Each library and scenario runs in a
fresh Python process, so memory, threads and module-level HTTP sessions do not leak
from one into the next.

Scenarios:

* ``speed``: the caller's cost per call, in bursts of 10 with a 50 ms pause (a web
  app: the consumer drains in between) and in a tight loop of ``--events`` calls; then
  the time from the first call of the tight loop until ``flush()`` returned and the
  collector had every event (queues sized to hold them all).
* ``outage``: ``--outage-events`` calls at about 1,000 a second while the collector
  answers ``503`` (plain text, no ``Retry-After``) for the first ``--outage`` seconds;
  library defaults otherwise.  What arrived, what was lost, what the library reported.
* ``dead``: ``--dead-events`` calls in a tight loop with nothing listening on the
  port (connection refused), library defaults: memory growth, what was accepted,
  refused or dropped, and whether the library counted it.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_peers.py [--events 20000]
        [--only cdptrack,posthog] [--scenarios speed,outage,dead]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import logging
import multiprocessing
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ANONYMOUS_ID = "CDA68358-94FB-4D83-9655-3FEB3C4114A3"
PIP = ".venv/bin/pip install"

# -- the collector ---------------------------------------------------------------------

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
UNAVAILABLE = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
               b"Content-Length: 19\r\n\r\nService Unavailable")


def _collector(port_out: Any) -> None:
    """Keep-alive HTTP/1.1 server.  ``GET /__reset?outage=S`` clears the counts and
    answers 503 to everything else for the next S seconds; ``GET /__stats`` returns the
    counts as JSON.  Any other request is an upload: 503 during an outage, otherwise
    200 and each message in ``{"batch": [...]}`` (or the single message the body is)
    is counted once per id, a repeated id as a duplicate."""
    state: dict[str, Any] = {}

    def reset(outage: float) -> None:
        state.update(fail_until=time.monotonic() + outage, requests=0, refused=0,
                     events=0, duplicates=0, paths={}, seen=set(), last_ok=0.0,
                     first_ok=0.0)

    reset(0.0)

    def answer(path: str, body: bytes) -> bytes:
        if path.startswith("/__reset"):
            outage = float(path.partition("outage=")[2] or 0)
            reset(outage)
            return OK
        if path.startswith("/__stats"):
            data = json.dumps({k: v for k, v in state.items() if k != "seen"}).encode()
            return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data)
        state["requests"] += 1
        state["paths"][path] = state["paths"].get(path, 0) + 1
        now = time.monotonic()
        if now < state["fail_until"]:
            state["refused"] += 1
            return UNAVAILABLE
        try:
            payload = json.loads(body)
        except ValueError:
            return OK
        messages = payload.get("batch") if isinstance(payload, dict) else None
        if not isinstance(messages, list):
            messages = [payload]
        seen = state["seen"]
        for message in messages:
            if not isinstance(message, dict):
                continue
            key = message.get("messageId") or message.get("uuid")
            if key in seen:
                state["duplicates"] += 1
            else:
                seen.add(key)
                state["events"] += 1
        state["first_ok"] = state["first_ok"] or now
        state["last_ok"] = now
        return OK

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                lines = head.split(b"\r\n")
                for line in lines[1:]:
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                body = await reader.readexactly(length) if length else b""
                path = lines[0].split(b" ")[1].decode()
                writer.write(answer(path, body))
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port_out.send(server.sockets[0].getsockname()[1])
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def collector_get(port: int, path: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


# -- the libraries, behind one small interface ------------------------------------------


def properties(i: int) -> dict[str, Any]:
    return {"product_id": f"sku-{i}", "sku": f"sku-{i}", "name": "Blue shoe",
            "category": "shoes", "brand": "Acme", "price": 19.9, "currency": "USD",
            "url": f"https://shop.example/p/sku-{i}"}


class LogCounter(logging.Handler):
    """Counts a library's log records by level instead of printing them."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.counts: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[record.levelname] = self.counts.get(record.levelname, 0) + 1


@dataclass
class Client:
    send: Callable[[int], bool]  # False when the library said it refused the event
    flush: Callable[[float], None]
    report: Callable[[], dict[str, Any]]  # what the library itself counted
    settings: str
    errors: list[int] = field(default_factory=list)  # events in batches given up on


def _flush_in_thread(flush: Callable[[], None]) -> Callable[[float], None]:
    """``flush()`` without a timeout (``queue.join()``), bounded from outside."""

    def bounded(timeout: float) -> None:
        worker = threading.Thread(target=flush, daemon=True)
        worker.start()
        worker.join(timeout)

    return bounded


def make_cdptrack(base: str, queue: int | None, flavour: str) -> Client:
    sys.path.insert(0, ROOT)
    from cdptrack.config import Config
    from cdptrack.events import track
    from cdptrack.tracker import Tracker

    options: dict[str, Any] = {} if queue is None else {"max_queue": queue}
    tracker = Tracker(Config(customerio_api_key="k", customerio_url=base + "/v1"), **options)
    capture = tracker.capture

    if flavour == "event":
        def send(i: int) -> bool:
            capture(track("Product Viewed", properties(i),
                          visitor={"sc": ANONYMOUS_ID, "user_id": f"u-{i % 500}"}))
            return True
    else:
        def send(i: int) -> bool:
            capture({"type": "track", "event": "Product Viewed", "properties": properties(i),
                     "visitor": {"sc": ANONYMOUS_ID, "user_id": f"u-{i % 500}"}})
            return True

    def report() -> dict[str, Any]:
        row = tracker.stats().get("customerio", {})
        return {k: v for k, v in row.items() if v}

    settings = (f"Tracker(max_queue={queue or 10_000}, concurrency=4, max_retry_time=600, "
                "backoff=0.5..30 s); batches of up to 200")
    return Client(send, lambda t: tracker.flush(t) and None, report, settings)


def make_segment_style(module: str, base: str, queue: int | None, upload_size: int
                       ) -> Client:
    client_class = __import__(module, fromlist=["Client"]).Client
    errors: list[int] = []
    options: dict[str, Any] = {} if queue is None else {"max_queue_size": queue}
    client = client_class("k", host=base, upload_size=upload_size,
                          on_error=lambda exc, batch: errors.append(len(batch)), **options)

    def send(i: int) -> bool:
        ok, _ = client.track(user_id=f"u-{i % 500}", event="Product Viewed",
                             properties=properties(i), anonymous_id=ANONYMOUS_ID)
        return bool(ok)

    def report() -> dict[str, Any]:
        return {"on_error events": sum(errors)} if errors else {}

    settings = (f"Client(max_queue_size={queue or 10_000}, upload_size={upload_size}, "
                "upload_interval=0.5, max_retries=10, thread=1)")
    return Client(send, _flush_in_thread(client.flush), report, settings, errors)


def make_posthog(base: str, queue: int | None, flush_at: int) -> Client:
    from posthog import Posthog

    errors: list[int] = []
    options: dict[str, Any] = {} if queue is None else {"max_queue_size": queue}
    client = Posthog("phc_k", host=base, flush_at=flush_at,
                     on_error=lambda exc, batch: errors.append(len(batch)), **options)

    def send(i: int) -> bool:
        return client.capture("Product Viewed", distinct_id=f"u-{i % 500}",
                              properties=properties(i)) is not None

    def report() -> dict[str, Any]:
        return {"on_error events": sum(errors)} if errors else {}

    settings = (f"Posthog(max_queue_size={queue or 10_000}, flush_at={flush_at}, "
                "flush_interval=5.0, max_retries=3, thread=1)")
    return Client(send, lambda t: client.flush(timeout_seconds=t), report, settings, errors)


@dataclass(frozen=True)
class Library:
    name: str  # row label
    module: str  # what must import
    package: str  # what pip installs
    build: Callable[[str, int | None], Client]


LIBRARIES = [
    Library("cdptrack capture(track(...))", "cdptrack", "",
            lambda base, queue: make_cdptrack(base, queue, "event")),
    Library("cdptrack capture(dict)", "cdptrack", "",
            lambda base, queue: make_cdptrack(base, queue, "dict")),
    Library("customerio-cdp-analytics", "customerio.analytics", "customerio-cdp-analytics",
            lambda base, queue: make_segment_style("customerio.analytics", base, queue, 100)),
    Library("customerio-cdp-analytics upload_size=500", "customerio.analytics",
            "customerio-cdp-analytics",
            lambda base, queue: make_segment_style("customerio.analytics", base, queue, 500)),
    Library("segment-analytics-python", "segment.analytics", "segment-analytics-python",
            lambda base, queue: make_segment_style("segment.analytics", base, queue, 100)),
    Library("posthog", "posthog", "posthog", lambda base, queue: make_posthog(base, queue, 100)),
    Library("posthog flush_at=500", "posthog", "posthog",
            lambda base, queue: make_posthog(base, queue, 500)),
]

# Rows that only change a batching option are timed for speed only.
SPEED_ONLY = {"customerio-cdp-analytics upload_size=500", "posthog flush_at=500"}


# -- measurements (run in a child process) ----------------------------------------------


def memory_kib() -> dict[str, int]:
    values: dict[str, int] = {}
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                values[line.split(":")[0]] = int(line.split()[1])
    return values


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"median": statistics.median(ordered),
            "p95": ordered[max(0, int(len(ordered) * 0.95) - 1)],
            "mean": statistics.fmean(ordered)}


def timed_calls(send: Callable[[int], bool], start: int, count: int, burst: int,
                pause: float) -> tuple[list[float], int]:
    """µs per call, each call timed on its own; and how many the library refused."""
    clock = time.perf_counter
    samples: list[float] = []
    refused = 0
    i = start
    end = start + count
    while i < end:
        for _ in range(min(burst, end - i)):
            started = clock()
            ok = send(i)
            samples.append((clock() - started) * 1e6)
            refused += not ok
            i += 1
        if pause:
            time.sleep(pause)
    return samples, refused


def wait_delivered(port: int, expected: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        stats = collector_get(port, "/__stats")
        if stats["events"] >= expected or time.monotonic() > deadline:
            return stats
        time.sleep(0.05)


def scenario_speed(lib: Library, port: int, args: argparse.Namespace) -> dict[str, Any]:
    base = f"http://127.0.0.1:{port}"
    n = args.events
    client = lib.build(base, n + args.burst_events + 10)
    client.send(0)  # start the consumer and open the connection outside the measurement
    client.flush(30)
    collector_get(port, "/__reset?outage=0")
    bursts, refused_b = timed_calls(client.send, 1, args.burst_events, 10, 0.05)
    client.flush(60)
    collector_get(port, "/__reset?outage=0")
    started = time.perf_counter()
    tight, refused_t = timed_calls(client.send, 10_000_000, n, n, 0.0)
    loop_done = time.perf_counter()
    client.flush(args.flush_timeout)
    flushed = time.perf_counter()
    stats = wait_delivered(port, n, 5.0)
    delivered_at = time.perf_counter()
    return {"settings": client.settings, "bursts": percentiles(bursts),
            "tight": percentiles(tight), "refused": refused_b + refused_t,
            "loop_s": loop_done - started, "flush_s": flushed - started,
            "delivered_s": delivered_at - started, "delivered": stats["events"],
            "duplicates": stats["duplicates"], "requests": stats["requests"],
            "paths": stats["paths"], "library": client.report()}


def scenario_outage(lib: Library, port: int, args: argparse.Namespace) -> dict[str, Any]:
    base = f"http://127.0.0.1:{port}"
    client = lib.build(base, None)
    client.send(0)
    client.flush(30)
    collector_get(port, f"/__reset?outage={args.outage}")
    started = time.monotonic()
    _, refused = timed_calls(client.send, 1, args.outage_events, 10, 0.01)
    sent_s = time.monotonic() - started
    client.flush(args.flush_timeout)
    flushed_s = time.monotonic() - started
    stats = wait_delivered(port, args.outage_events, 2.0)
    return {"settings": client.settings, "refused": refused, "sent_s": sent_s,
            "flush_s": flushed_s, "delivered": stats["events"],
            "duplicates": stats["duplicates"], "requests": stats["requests"],
            "503s": stats["refused"], "library": client.report()}


def scenario_dead(lib: Library, args: argparse.Namespace) -> dict[str, Any]:
    hole = socket.socket()  # bound, never listening: every connect is refused at once
    hole.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{hole.getsockname()[1]}"
    client = lib.build(base, None)
    client.send(0)  # every library's sender thread and HTTP machinery are up
    time.sleep(0.5)
    before = memory_kib()
    started = time.perf_counter()
    samples, refused = timed_calls(client.send, 1, args.dead_events, args.dead_events, 0.0)
    loop_s = time.perf_counter() - started
    time.sleep(args.dead_wait)
    after = memory_kib()
    return {"settings": client.settings, "refused": refused, "loop_s": loop_s,
            "calls": percentiles(samples),
            "rss_growth_kib": after["VmRSS"] - before["VmRSS"],
            "peak_growth_kib": after["VmHWM"] - before["VmRSS"],
            "library": client.report()}


def child(args: argparse.Namespace) -> None:
    logging.getLogger("httpx").setLevel(logging.WARNING)
    counter = LogCounter()
    for name in ("cdptrack", "customerio", "segment", "posthog", "backoff"):
        logger = logging.getLogger(name)
        logger.addHandler(counter)
        logger.propagate = False
        logger.setLevel(logging.WARNING)
    lib = next(lib for lib in LIBRARIES if lib.name == args.child)
    if args.scenario == "speed":
        result = scenario_speed(lib, args.port, args)
    elif args.scenario == "outage":
        result = scenario_outage(lib, args.port, args)
    else:
        result = scenario_dead(lib, args)
    result["logs"] = counter.counts
    print(json.dumps(result), flush=True)
    sys.stdout.flush()
    # Peers retry a dead collector for minutes and join their threads at exit.
    os._exit(0)


# -- the parent: run each library in its own process, print tables ----------------------


def installed(lib: Library) -> str | None:
    """The library's version, or None when it does not import."""
    if lib.module == "cdptrack":
        return "working tree"
    try:
        __import__(lib.module)
    except ImportError:
        return None
    return importlib.metadata.version(lib.package)


def run_child(lib: Library, scenario: str, port: int, args: argparse.Namespace
              ) -> dict[str, Any] | str:
    command = [sys.executable, os.path.abspath(__file__), "--child", lib.name,
               "--scenario", scenario, "--port", str(port), "--events", str(args.events),
               "--burst-events", str(args.burst_events), "--outage", str(args.outage),
               "--outage-events", str(args.outage_events),
               "--dead-events", str(args.dead_events), "--dead-wait", str(args.dead_wait),
               "--flush-timeout", str(args.flush_timeout)]
    env = dict(os.environ, PYTHONPATH=ROOT)
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env,
                              timeout=args.flush_timeout + 300)
    except subprocess.TimeoutExpired:
        return "timed out"
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return "failed: " + (done.stderr.strip().splitlines() or ["?"])[-1]
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def table(title: str, header: list[str], rows: list[list[str]]) -> str:
    out = [f"\n{title}\n", "| " + " | ".join(header) + " |",
           "| " + " | ".join(["---"] + ["---:"] * (len(header) - 1)) + " |"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(out)


def counted(result: dict[str, Any]) -> str:
    parts = [f"{k} {v:,}" for k, v in sorted(result["library"].items())
             if k not in ("enqueued", "sent")]
    if result.get("refused"):
        parts.append(f"call returned refused {result['refused']:,}")
    logs = result.get("logs") or {}
    if logs:
        parts.append("logs " + ", ".join(f"{k} {v:,}" for k, v in sorted(logs.items())))
    return "; ".join(parts) or "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--burst-events", type=int, default=2_000)
    parser.add_argument("--outage", type=float, default=5.0, help="seconds of 503")
    parser.add_argument("--outage-events", type=int, default=10_000)
    parser.add_argument("--dead-events", type=int, default=100_000)
    parser.add_argument("--dead-wait", type=float, default=3.0)
    parser.add_argument("--flush-timeout", type=float, default=120.0)
    parser.add_argument("--only", default="", help="comma-separated row-name prefixes")
    parser.add_argument("--scenarios", default="speed,outage,dead")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--scenario", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    libraries = [lib for lib in LIBRARIES
                 if not wanted or any(lib.name.startswith(w) for w in wanted)]
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    receive, send = multiprocessing.Pipe(duplex=False)
    collector = multiprocessing.Process(target=_collector, args=(send,), daemon=True)
    collector.start()
    port = receive.recv()
    results: dict[tuple[str, str], dict[str, Any] | str] = {}
    versions: dict[str, str | None] = {}
    try:
        for lib in libraries:
            versions[lib.name] = installed(lib)
            if versions[lib.name] is None:
                print(f"skipped {lib.name}: not installed ({PIP} {lib.package})",
                      file=sys.stderr)
                continue
            for scenario in scenarios:
                if scenario != "speed" and lib.name in SPEED_ONLY:
                    continue
                print(f"{lib.name}: {scenario} ...", file=sys.stderr, flush=True)
                results[(lib.name, scenario)] = run_child(lib, scenario, port, args)
    finally:
        collector.terminate()
        collector.join()

    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs; collector on "
          "127.0.0.1 in its own process")
    for lib in libraries:
        version = versions.get(lib.name)
        print(f"- {lib.name}: " + (version or f"skipped, not installed ({PIP} {lib.package})"))

    def rows(scenario: str, render: Callable[[dict[str, Any]], list[str]]) -> list[list[str]]:
        out = []
        for lib in libraries:
            result = results.get((lib.name, scenario))
            if result is None:
                if versions.get(lib.name) is None:
                    out.append([lib.name, f"skipped ({PIP} {lib.package})"])
                continue
            if isinstance(result, str):
                out.append([lib.name, result])
                continue
            out.append([lib.name, *render(result)])
        return out

    if "speed" in scenarios:
        def speed(r: dict[str, Any]) -> list[str]:
            b, t = r["bursts"], r["tight"]
            return [f"{b['median']:.1f} / {b['p95']:.1f}",
                    f"{t['median']:.1f} / {t['p95']:.1f} / {t['mean']:.1f}",
                    f"{r['flush_s']:.2f} s",
                    f"{args.events / r['delivered_s']:,.0f}",
                    f"{r['delivered']:,} ({r['requests']:,} req)"]
        print(table(f"Caller cost (µs per call) and delivery of {args.events:,} events",
                    ["library", "bursts of 10: median / p95",
                     "tight loop: median / p95 / mean", "first call to flush()",
                     "events/s", "delivered"], rows("speed", speed)))
    if "outage" in scenarios:
        def outage(r: dict[str, Any]) -> list[str]:
            lost = args.outage_events - r["delivered"]
            return [f"{r['delivered']:,}", f"{lost:,}", f"{r['duplicates']:,}",
                    f"{r['flush_s']:.1f} s", f"{r['503s']:,}", counted(r)]
        print(table(f"Collector answers 503 for {args.outage:g} s; {args.outage_events:,} "
                    "events at ~1,000/s, library defaults",
                    ["library", "delivered", "lost", "duplicates", "start to flush()",
                     "503 answers", "what the library reported"], rows("outage", outage)))
    if "dead" in scenarios:
        def dead(r: dict[str, Any]) -> list[str]:
            return [f"{r['rss_growth_kib'] / 1024:.1f} MiB",
                    f"{r['peak_growth_kib'] / 1024:.1f} MiB",
                    f"{r['calls']['mean']:.1f} µs",
                    f"{args.dead_events - r['refused']:,}", counted(r)]
        print(table(f"Nothing listening (connection refused), {args.dead_events:,} events in "
                    "a tight loop, library defaults",
                    ["library", "RSS growth", "peak RSS growth", "mean per call",
                     "calls accepted", "what the library reported"], rows("dead", dead)))
    settings = {lib.name: r["settings"] for (name, _), r in results.items()
                for lib in libraries if lib.name == name and isinstance(r, dict)}
    print("\nSettings:")
    for name, text in settings.items():
        print(f"- {name}: {text}")


if __name__ == "__main__":
    main()
