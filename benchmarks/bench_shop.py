"""What cdptrack costs a shop: web-process CPU per page view and throughput, as ratios to
the same shop without cdptrack, measured in the same run.

Two shops (``benchmarks/shop_apps.py``): Flask under gunicorn (1 worker, gthread, 4
threads, keep-alive) and FastAPI under uvicorn (1 process).  Each serves a product page
to a signed-in visitor, so every destination gets the page view.  A load process on
127.0.0.1 sends ``--requests`` keep-alive GETs from ``--concurrency`` connections.  A
collector process (127.0.0.1) answers 200 like the four APIs and counts what arrived.

Per configuration (none / memory outbox, all four APIs / memory, Customer.io only /
either with ``sender=process`` / Redis outbox + ``cdptrack worker`` / SQLite outbox,
all four / ``page_views=generic`` variants) the web process's CPU
(utime + stime from ``/proc/<pid>/stat``) is read before the load and after the
collector has every event of it, so the sender's work on those events is in the figure.
The worker's CPU is read the same way (with ``sender=process``, the sender process's),
and for Redis the commands it served per view (``INFO commandstats``).  A run fails
loudly when an event is missing.  With cdptrack on, the shop also times each request's
hand-over of its events (``Tracker.capture_deferred``: with the SQLite outbox the build
and the commit; with ``sender=process`` the build and the write to the pipe) while the
load runs (``BENCH_CAPTURE_TIMES``, see ``shop_apps.py``); its median and p99 are printed
under each table.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_shop.py [--requests 1500]
        [--concurrency 4] [--rounds 1] [--shops flask,fastapi] [--configs ...]

Needs gunicorn and uvicorn (the ``dev`` extra) and, for the Redis row, ``redis-server``
on the PATH (the row is skipped without it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import multiprocessing
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICK = os.sysconf("SC_CLK_TCK")
OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
PREFIXES = ("tracker", "yespo", "cio", "op")


# -- the collector -------------------------------------------------------------------------

def collector(port_out: Any) -> None:
    """Answers 200 ``{}`` to everything; counts messages per API (a Customer.io batch
    counts its messages).  ``GET /__counts`` returns the counts, ``POST /__reset``
    zeroes them."""
    counts = dict.fromkeys(PREFIXES, 0)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                body = await reader.readexactly(length) if length else b""
                path = head.split(b" ", 2)[1].decode()
                if path == "/__counts":
                    data = json.dumps(counts).encode()
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                                 % (len(data), data))
                    continue
                if path == "/__reset":
                    for name in counts:
                        counts[name] = 0
                else:
                    name = path.split("/", 2)[1]
                    if name == "cio":
                        counts[name] += body.count(b'"messageId"')
                    elif name in counts:
                        counts[name] += 1
                writer.write(OK)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port_out.send(server.sockets[0].getsockname()[1])
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def collector_call(port: int, method: str, path: str) -> dict[str, int]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path)
    data = conn.getresponse().read()
    conn.close()
    return json.loads(data) if data and data != b"{}" else {}


# -- the load ------------------------------------------------------------------------------

def load(port: int, cookie: str, requests: int, concurrency: int) -> float:
    """``requests`` GETs of product pages over ``concurrency`` keep-alive connections;
    returns the wall time in seconds.  Any answer but 200 raises."""
    paths = [f"/product/{pid}" for pid in ("101", "102", "201", "302")]
    per = [requests // concurrency + (1 if i < requests % concurrency else 0)
           for i in range(concurrency)]
    errors: list[str] = []

    def one(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Cookie": cookie, "User-Agent": "Mozilla/5.0 (bench) Firefox/120.0"}
        try:
            for i in range(n):
                conn.request("GET", paths[i % len(paths)], headers=headers)
                answer = conn.getresponse()
                answer.read()
                if answer.status != 200:
                    errors.append(f"status {answer.status}")
                    return
        except Exception as exc:
            errors.append(repr(exc))
        finally:
            conn.close()

    threads = [threading.Thread(target=one, args=(n,)) for n in per]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"load failed: {errors[:3]}")
    return elapsed


def _load_child(port: int, cookie: str, requests: int, concurrency: int, out: Any) -> None:
    out.send(load(port, cookie, requests, concurrency))


def login(port: int) -> str:
    """Sign a visitor in; returns the Cookie header (session, and cdptrack's ``sc``)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", "/login", body="email=bench%40example.com",
                 headers={"Content-Type": "application/x-www-form-urlencoded",
                          "User-Agent": "Mozilla/5.0 (bench) Firefox/120.0"})
    answer = conn.getresponse()
    answer.read()
    cookies = [value.split(";", 1)[0] for name, value in answer.getheaders()
               if name.lower() == "set-cookie"]
    conn.close()
    if answer.status != 200:
        raise RuntimeError(f"login answered {answer.status}")
    return "; ".join(cookies)


# -- processes -----------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds so far per thread name of ``pid`` (threads of one name summed): where
    in the web process the cost lands (the request threads or cdptrack's sender)."""
    out: dict[str, float] = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/stat") as stat:
                text = stat.read()
        except OSError:
            continue  # the thread ended
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / TICK
    return out


def switches(pid: int) -> int:
    """Context switches (voluntary + involuntary) of every thread of ``pid`` so far."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/status") as status:
                for line in status:
                    if line.endswith("ctxt_switches:\t" + line.split("\t")[-1]):
                        total += int(line.split()[-1])
        except OSError:
            pass  # the thread ended
    return total


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as found:
            return [int(x) for x in found.read().split()]
    except OSError:
        return []


def sender_process(web_pid: int) -> int:
    """The ``cdptrack-sender`` child of the web process (``sender="process"``), which
    any of its threads may have started."""
    kids = []
    for task in os.listdir(f"/proc/{web_pid}/task"):
        with contextlib.suppress(OSError), \
                open(f"/proc/{web_pid}/task/{task}/children") as found:
            kids.extend(int(x) for x in found.read().split())
    for kid in kids:
        with open(f"/proc/{kid}/comm") as comm:
            if comm.read().strip() == "cdptrack-sender":
                return kid
    raise RuntimeError("no sender process under the web process")


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the server did not start")


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# -- configurations ------------------------------------------------------------------------

@dataclass
class Setup:
    name: str
    destinations: tuple[str, ...]  # () = cdptrack off
    outbox: str = "memory"  # memory / sqlite / redis
    page_views: str = "all"  # CDPTRACK_PAGE_VIEWS
    discard: bool = False  # the middleware on, its work thrown away (no sender)
    sender: str = "thread"  # CDPTRACK_SENDER: "process" sends from a child process


CONFIGS = {
    "none": Setup("without cdptrack", ()),
    "discard": Setup("request path only (work discarded)", (), discard=True),
    "memory": Setup("memory outbox, all four APIs", PREFIXES),
    "customerio": Setup("memory outbox, Customer.io only", ("cio",)),
    "redis": Setup("Redis outbox + cdptrack worker", PREFIXES, "redis"),
    "sqlite": Setup("SQLite outbox, all four APIs", PREFIXES, "sqlite"),
    "memory-process": Setup("memory outbox, all four, sender=process", PREFIXES,
                            sender="process"),
    "customerio-process": Setup("memory outbox, Customer.io only, sender=process",
                                ("cio",), sender="process"),
    "memory-generic": Setup("memory outbox, all four, page_views=generic", PREFIXES,
                            page_views="generic"),
    "redis-generic": Setup("Redis outbox + worker, page_views=generic", PREFIXES, "redis",
                           page_views="generic"),
    "sqlite-generic": Setup("SQLite outbox, all four, page_views=generic", PREFIXES,
                            "sqlite", page_views="generic"),
}
# Messages one product page view gives each API.  Flask's HTML page is a page view and
# a product view: the Yespo tracker takes the product view (it has no page event), the
# others both.  FastAPI's JSON answer is not a page, so only the product view.
PER_VIEW = {"flask": {"tracker": 1, "yespo": 2, "cio": 2, "op": 2},
            "fastapi": {"tracker": 1, "yespo": 1, "cio": 1, "op": 1}}
# With page_views=generic the product page's page view reaches Customer.io only.
PER_VIEW_GENERIC = {"flask": {"tracker": 1, "yespo": 1, "cio": 2, "op": 1},
                    "fastapi": PER_VIEW["fastapi"]}


def environment(setup: Setup, collector_port: int, outbox_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDPTRACK_")}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["BENCH_CDPTRACK"] = ("discard" if setup.discard
                             else "1" if setup.destinations else "0")
    env["BENCH_CAPTURE_TIMES"] = "1"
    base = f"http://127.0.0.1:{collector_port}"
    env.update({
        "CDPTRACK_YESPO_TRACKER_URL": base + "/tracker/api/v2",
        "CDPTRACK_YESPO_API_URL": base + "/yespo/api/v1",
        "CDPTRACK_CUSTOMERIO_URL": base + "/cio/v1",
        "CDPTRACK_ORANGEPILL_URL": base + "/op/v1",
        "CDPTRACK_OUTBOX": outbox_url,
        "CDPTRACK_PAGE_VIEWS": setup.page_views,
        "CDPTRACK_SENDER": setup.sender,
    })
    keys = {"tracker": ("CDPTRACK_YESPO_SITE_ID", "bench-site"),
            "yespo": ("CDPTRACK_YESPO_API_KEY", "bench-yespo-key"),
            "cio": ("CDPTRACK_CUSTOMERIO_API_KEY", "bench-cio-key"),
            "op": ("CDPTRACK_ORANGEPILL_API_KEY", "bench-op-key")}
    for name in setup.destinations:
        env[keys[name][0]] = keys[name][1]
    return env


def server_command(shop: str, port: int) -> list[str]:
    if shop == "flask":
        return [sys.executable, "-m", "gunicorn", "-w", "1", "-k", "gthread",
                "--threads", "4", "--keep-alive", "30", "-b", f"127.0.0.1:{port}",
                "--log-level", "warning", "benchmarks.shop_apps:flask_app()"]
    return [sys.executable, "-m", "uvicorn", "--factory", "benchmarks.shop_apps:fastapi_app",
            "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
            "--log-level", "warning", "--timeout-keep-alive", "30"]


@dataclass
class Result:
    cpu_us: float  # web process CPU per page view
    rate: float  # page views per second during the load
    worker_us: float | None = None  # worker CPU per page view
    switches: float = 0.0  # the web process's context switches per page view
    threads: dict[str, float] = field(default_factory=dict)  # µs per view per thread name
    missing: dict[str, int] = field(default_factory=dict)
    # Redis commands per page view, by name (INFO commandstats; a script's own calls
    # count too), the web process's and the worker's together.
    redis_calls: dict[str, float] = field(default_factory=dict)
    # Per request, the time capture_deferred kept the request's thread (ns): wall, CPU.
    capture_wall: list[int] = field(default_factory=list)
    capture_cpu: list[int] = field(default_factory=list)
    build_cpu: list[int] = field(default_factory=list)  # of which building the events


def redis_calls(port: int | None, reset: bool = False) -> dict[str, int]:
    """Calls per command since the last reset (``CONFIG RESETSTAT``)."""
    if port is None:
        return {}
    import redis

    client = redis.Redis(port=port, decode_responses=True)
    try:
        if reset:
            client.config_resetstat()
            return {}
        stats = client.info("commandstats")
        return {name.removeprefix("cmdstat_"): int(row["calls"])
                for name, row in stats.items() if isinstance(row, dict)}
    finally:
        client.close()


def capture_times(port: int, timed: bool) -> dict[str, list[int]]:
    """The shop's capture timings since the last call (and forget them)."""
    if not timed:
        return {"wall": [], "cpu": [], "build_wall": [], "build_cpu": []}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/__capture_times")
    answer = conn.getresponse()
    data = answer.read()
    conn.close()
    if answer.status != 200:
        raise RuntimeError(f"/__capture_times answered {answer.status}")
    found: dict[str, list[int]] = json.loads(data)
    return found


def percentile(values: list[int], share: float) -> float:
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(share * len(ordered)))])


def capture_summary(wall: list[int], cpu: list[int], build: list[int]) -> str:
    if not wall:
        return ""
    built = (f", of which the build {statistics.median(build) / 1000:.0f}"
             if any(build) else "")
    return (f"capture {statistics.median(wall) / 1000:.0f} µs median, "
            f"p99 {percentile(wall, 0.99) / 1000:.0f} µs "
            f"(thread CPU {statistics.median(cpu) / 1000:.0f} µs median{built}; "
            f"p99 {percentile(cpu, 0.99) / 1000:.0f}; {len(wall)} requests)")


def wait_counts(port: int, want: dict[str, int], timeout: float) -> dict[str, int]:
    """Wait until the collector has ``want``; returns what is missing (empty: all)."""
    deadline = time.monotonic() + timeout
    while True:
        got = collector_call(port, "GET", "/__counts")
        missing = {k: v - got.get(k, 0) for k, v in want.items() if got.get(k, 0) < v}
        if not missing or time.monotonic() > deadline:
            return missing
        time.sleep(0.05)


def settle(port: int) -> None:
    """Wait until the collector's counts stop moving (login events, warm-up)."""
    last: dict[str, int] | None = None
    stable_since = time.monotonic()
    while time.monotonic() - stable_since < 1.0:
        got = collector_call(port, "GET", "/__counts")
        if got != last:
            last, stable_since = got, time.monotonic()
        time.sleep(0.1)


def setup_name(setup: Setup) -> str:
    return next(name for name, known in CONFIGS.items() if known is setup)


def start_profiles(directory: str | None, label: str, web_pid: int,
                   worker_pid: int | None) -> list[subprocess.Popen[bytes]]:
    """With ``--profile DIR``: sample the web process (and the worker) with py-spy while
    the load runs, every thread, as collapsed stacks (``DIR/<label>-web.txt``).  py-spy
    slows the sampled process a little, so a profiled run's CPU figures are not quoted."""
    if not directory:
        return []
    spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    os.makedirs(directory, exist_ok=True)
    procs = []
    for pid, part in ((web_pid, "web"), (worker_pid, "worker")):
        if pid is not None:
            procs.append(subprocess.Popen(
                [spy, "record", "--pid", str(pid), "--rate", "200", "--format", "raw",
                 "--threads", "--output", os.path.join(directory, f"{label}-{part}.txt")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    time.sleep(1.0)  # py-spy attaches
    return procs


def run_one(shop: str, setup: Setup, args: argparse.Namespace, collector_port: int,
            redis_port: int | None, workdir: str, round_no: int) -> Result:
    if setup.outbox == "redis":
        outbox = f"redis://127.0.0.1:{redis_port}/0?prefix=bench-{shop}-{setup_name(setup)}-{round_no}"
    elif setup.outbox == "sqlite":
        outbox = "sqlite:///" + os.path.join(workdir, f"{shop}-{setup_name(setup)}-{round_no}.db")
    else:
        outbox = "memory"
    env = environment(setup, collector_port, outbox)
    port = free_port()
    server = subprocess.Popen(server_command(shop, port), cwd=ROOT, env=env)
    worker: subprocess.Popen[bytes] | None = None
    worker_pid: int | None = None  # the cdptrack worker, or the sender process
    try:
        wait_port(port, server)
        web_pid = server.pid
        if shop == "flask":
            kids = children(server.pid)
            while not kids:
                time.sleep(0.05)
                kids = children(server.pid)
            web_pid = kids[0]
        if setup.outbox == "redis":
            worker = subprocess.Popen([sys.executable, "-m", "cdptrack.cli", "worker"],
                                      cwd=ROOT, env=env)
        cookie = login(port)
        load(port, cookie, 50, 1)  # warm-up: imports, first connections
        timed = bool(setup.destinations)
        capture_times(port, timed)  # forget the warm-up's
        settle(collector_port)
        if setup.sender == "process":  # its CPU is counted like a worker's
            worker_pid = sender_process(web_pid)
        collector_call(collector_port, "POST", "/__reset")
        spies = start_profiles(args.profile, f"{shop}-{setup_name(setup)}-{round_no}",
                               web_pid, worker.pid if worker else worker_pid)
        web0 = cpu_seconds(web_pid)
        threads0 = thread_cpu(web_pid)
        switches0 = switches(web_pid)
        if worker is not None:
            worker_pid = worker.pid
        worker0 = cpu_seconds(worker_pid) if worker_pid else 0.0
        redis_calls(redis_port if worker else None, reset=True)
        parent, child = multiprocessing.Pipe()
        loader = multiprocessing.Process(target=_load_child, args=(
            port, cookie, args.requests, args.concurrency, child))
        loader.start()
        loader.join()
        if loader.exitcode != 0 or not parent.poll():
            raise RuntimeError("the load process failed")
        elapsed = float(parent.recv())
        per_view = (PER_VIEW_GENERIC if setup.page_views == "generic" else PER_VIEW)[shop]
        want = {name: per_view[name] * args.requests for name in setup.destinations}
        missing = wait_counts(collector_port, want, 120) if want else {}
        web1 = cpu_seconds(web_pid)
        threads1 = thread_cpu(web_pid)
        switches1 = switches(web_pid)
        worker1 = cpu_seconds(worker_pid) if worker_pid else 0.0
        calls = redis_calls(redis_port if worker else None)
        for spy in spies:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            spy.wait(30)
        times = capture_times(port, timed)
        n = args.requests
        return Result((web1 - web0) / n * 1e6, n / elapsed,
                      (worker1 - worker0) / n * 1e6 if worker_pid else None,
                      switches=(switches1 - switches0) / n, missing=missing,
                      capture_wall=times["wall"], capture_cpu=times["cpu"],
                      build_cpu=times["build_cpu"],
                      threads={name: (spent - threads0.get(name, 0.0)) / n * 1e6
                               for name, spent in threads1.items()},
                      redis_calls={name: count / n for name, count in calls.items()
                                   if name not in ("info", "config|resetstat")})
    finally:
        stop(worker)
        stop(server)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--shops", default="flask,fastapi")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--profile", metavar="DIR",
                        help="sample the web process and worker with py-spy into DIR")
    args = parser.parse_args()
    configs = [c for c in args.configs.split(",") if c]
    if "none" not in configs:
        configs.insert(0, "none")
    redis_bin = shutil.which("redis-server")
    redis: subprocess.Popen[bytes] | None = None
    redis_port: int | None = None
    if any(CONFIGS[c].outbox == "redis" for c in configs):
        if redis_bin is None:
            print("redis-server not found: the Redis rows are skipped", file=sys.stderr)
            configs = [c for c in configs if CONFIGS[c].outbox != "redis"]
        else:
            redis_port = free_port()
            redis = subprocess.Popen([redis_bin, "--port", str(redis_port), "--bind",
                                      "127.0.0.1", "--save", "", "--appendonly", "no"],
                                     stdout=subprocess.DEVNULL)
    parent, child = multiprocessing.Pipe()
    coll = multiprocessing.Process(target=collector, args=(child,), daemon=True)
    coll.start()
    collector_port = parent.recv()
    results: dict[tuple[str, str], list[Result]] = {}
    failed = False
    try:
        with tempfile.TemporaryDirectory() as workdir:
            for round_no in range(args.rounds):
                for shop in args.shops.split(","):
                    for name in configs:
                        result = run_one(shop, CONFIGS[name], args, collector_port,
                                         redis_port, workdir, round_no)
                        results.setdefault((shop, name), []).append(result)
                        if result.missing:
                            failed = True
                            print(f"{shop}/{name}: MISSING {result.missing}",
                                  file=sys.stderr)
                        print(f"  {shop:8} {name:14} {result.cpu_us:8.0f} µs CPU/view "
                              f"{result.rate:7.0f} views/s {result.switches:5.1f} switches/view"
                              + (f"  worker {result.worker_us:.0f} µs/view"
                                 if result.worker_us is not None else "")
                              + "  [" + ", ".join(
                                  f"{name} {spent:.0f}" for name, spent in sorted(
                                      result.threads.items(), key=lambda kv: -kv[1])
                                  if spent >= 1) + "]"
                              + ("  " + capture_summary(result.capture_wall,
                                                        result.capture_cpu, result.build_cpu)
                                 if result.capture_wall else ""),
                              file=sys.stderr)
                        if result.redis_calls:
                            calls = ", ".join(
                                f"{name} {per:.2f}" for name, per in sorted(
                                    result.redis_calls.items(), key=lambda kv: -kv[1])
                                if per >= 0.01)
                            total = sum(result.redis_calls.values())
                            print(f"           Redis calls per view: {total:.1f} ({calls})",
                                  file=sys.stderr)
    finally:
        coll.terminate()
        stop(redis)
    print(f"\n{args.requests} product page views per run, {args.concurrency} keep-alive "
          f"connections, median of {args.rounds} round(s); Python "
          f"{sys.version.split()[0]}, {os.cpu_count()} CPUs\n")
    for shop in args.shops.split(","):
        base = results[(shop, "none")]
        base_cpu = statistics.median(r.cpu_us for r in base)
        base_rate = statistics.median(r.rate for r in base)
        server = "gunicorn gthread, 1 worker" if shop == "flask" else "uvicorn, 1 process"
        print(f"{shop} ({server}); without cdptrack: {base_cpu:.0f} µs CPU per view, "
              f"{base_rate:.0f} views/s\n")
        print("| configuration | web CPU per view | vs. without | throughput vs. without "
              "| worker (or sender process) CPU per view | every event arrived |")
        print("| --- | ---: | ---: | ---: | ---: | --- |")
        for name in configs:
            runs = results[(shop, name)]
            cpu = statistics.median(r.cpu_us for r in runs)
            rate = statistics.median(r.rate for r in runs)
            workers = [r.worker_us for r in runs if r.worker_us is not None]
            worker = f"{statistics.median(workers) / 1000:.2f} ms" if workers else ""
            arrived = "yes" if not any(r.missing for r in runs) else "NO"
            if name == "none":
                arrived = ""
            print(f"| {CONFIGS[name].name} | {cpu:.0f} µs | {cpu / base_cpu:.2f}x "
                  f"| {rate / base_rate:.2f}x | {worker} | {arrived} |")
        print()
        for name in configs:
            runs = results[(shop, name)]
            summary = capture_summary([w for r in runs for w in r.capture_wall],
                                      [c for r in runs for c in r.capture_cpu],
                                      [b for r in runs for b in r.build_cpu])
            if summary:
                print(f"- {CONFIGS[name].name}: {summary}")
        print()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
