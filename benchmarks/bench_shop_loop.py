"""The request path and the build of ``bench_shop.py``'s two shops, driven in a loop in
process: no server, no network, no sender.

Each shop (``benchmarks/shop_apps.py``) answers the same signed-in product page views,
called directly (WSGI ``app(environ, start_response)``, ASGI ``await app(scope, receive,
send)``), in three ways, each in a fresh process: without cdptrack; with the middleware
and a tracker that throws each request's work away (the request path); and with the
middleware and a tracker that builds each request's events at once, on the request
thread, then drops them (the request path plus the build: what the web process pays
per view with ``sender="process"`` before writing the events to the pipe).  The figure
is CPU time (``time.process_time``) per request; rounds are interleaved and the median
of each way is reported, with the difference to the shop without cdptrack.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_shop_loop.py [--requests 4000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import subprocess
import sys
import time
import warnings
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATHS = [f"/product/{pid}" for pid in ("101", "102", "201", "302")]
WAYS = {"none": "without cdptrack", "discard": "request path (work discarded)",
        "build": "request path + build on the request thread"}


def _shop(shop: str, way: str) -> Any:
    os.environ["BENCH_CDPTRACK"] = "0" if way == "none" else "discard"
    sys.path.insert(0, ROOT)
    from benchmarks import shop_apps

    if way == "build":
        def build_now(self: Any, job: Any) -> None:
            job.build()
        shop_apps._Discard.capture_deferred = build_now  # type: ignore[method-assign]
    return shop_apps.flask_app() if shop == "flask" else shop_apps.fastapi_app()


def run_flask(way: str, requests: int) -> float:
    app = _shop("flask", way)
    client = app.test_client()
    client.post("/login", data={"email": "bench@example.com"})
    session = client.get_cookie("session")
    assert session is not None
    cookie = f"session={session.value}; sc=CDA68358-94FB-4D83-9655-3FEB3C4114A3"

    def one(path: str) -> None:
        environ = {"REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": path,
                   "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000",
                   "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "127.0.0.1:8000",
                   "HTTP_USER_AGENT": "Mozilla/5.0 (bench) Firefox/120.0",
                   "HTTP_COOKIE": cookie, "HTTP_ACCEPT": "*/*", "REMOTE_ADDR": "127.0.0.1",
                   "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(b""),
                   "wsgi.errors": sys.stderr, "wsgi.multithread": True,
                   "wsgi.multiprocess": False, "wsgi.run_once": False,
                   "wsgi.version": (1, 0)}
        status: list[str] = []
        body = app(environ, lambda s, h, e=None: status.append(s))
        try:
            for _ in body:
                pass
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
        assert status[0].startswith("200"), status

    for i in range(300):  # warm-up
        one(PATHS[i % 4])
    start = time.process_time()
    for i in range(requests):
        one(PATHS[i % 4])
    return (time.process_time() - start) / requests * 1e6


def run_fastapi(way: str, requests: int) -> float:
    app = _shop("fastapi", way)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    client = TestClient(app)
    client.post("/login")
    cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    cookie += "; sc=CDA68358-94FB-4D83-9655-3FEB3C4114A3"
    headers = [(b"host", b"127.0.0.1:8000"),
               (b"user-agent", b"Mozilla/5.0 (bench) Firefox/120.0"),
               (b"cookie", cookie.encode()), (b"accept", b"*/*")]

    async def one(path: str) -> None:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "GET", "scheme": "http", "path": path,
                 "raw_path": path.encode(), "query_string": b"", "root_path": "",
                 "headers": headers, "client": ("127.0.0.1", 5555),
                 "server": ("127.0.0.1", 8000), "state": {}}
        sent: list[Any] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Any) -> None:
            sent.append(message)

        await app(scope, receive, send)
        assert sent[0]["status"] == 200, sent

    async def main() -> float:
        for i in range(300):
            await one(PATHS[i % 4])
        start = time.process_time()
        for i in range(requests):
            await one(PATHS[i % 4])
        return (time.process_time() - start) / requests * 1e6

    return asyncio.run(main())


def measure(shop: str, way: str, requests: int) -> float:
    """µs of CPU per request, in a fresh process."""
    done = subprocess.run(
        [sys.executable, __file__, "--child", shop, way, str(requests)],
        capture_output=True, text=True, cwd=ROOT, check=True,
        env={**os.environ, "PYTHONPATH": ROOT})
    return float(done.stdout.split()[-1])


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        shop, way, requests = sys.argv[2], sys.argv[3], int(sys.argv[4])
        run = run_flask if shop == "flask" else run_fastapi
        print(f"{run(way, requests):.2f}")
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    results: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for shop in ("flask", "fastapi"):
            for way in WAYS:
                results.setdefault((shop, way), []).append(
                    measure(shop, way, args.requests))
    print(f"{args.requests} product page views per run, median of {args.rounds} "
          f"interleaved rounds; Python {sys.version.split()[0]}")
    print()
    print("| µs of CPU per view, in process | Flask | added | FastAPI | added |")
    print("| --- | ---: | ---: | ---: | ---: |")
    base = {shop: statistics.median(results[(shop, "none")]) for shop in ("flask", "fastapi")}
    for way, label in WAYS.items():
        cells = []
        for shop in ("flask", "fastapi"):
            value = statistics.median(results[(shop, way)])
            cells += [f"{value:.0f}", "" if way == "none" else f"+{value - base[shop]:.0f}"]
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
