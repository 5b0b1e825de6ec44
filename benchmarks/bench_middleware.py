"""Time cdptrack's middleware adds per request, against the same app without it.

The apps are called directly in a loop (no network, no server): an ASGI app that
records its route in the scope the way Starlette's router does (alone, and with a request
to a plain Starlette app before each of its requests), a real Starlette application with
the middleware inside it, and a WSGI app.  Two do-nothing trackers isolate the observe
layer's own cost on the request path:

* ``deferred`` has ``capture_deferred`` like the real ``Tracker``: the request path only
  records (visitor, route, status, declarations) and hands over one deferred build;
* ``direct`` has only ``capture``: the events are decided and built on the request path
  (what every tracker got before ``capture_deferred``).

The last lines time the deferred builds themselves (what the sender thread now does per
request).  Each figure is the best of several rounds, in microseconds per request.

    python benchmarks/bench_middleware.py [--requests 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from typing import Any

from cdptrack.asgi import CDPTrackMiddleware
from cdptrack.events import Event
from cdptrack.wsgi import CDPTrackWSGIMiddleware

SC = b"sc=CDA68358-94FB-4D83-9655-3FEB3C4114A3"


class NullTracker:
    """Direct: the middleware builds the events and captures them one by one."""

    def capture(self, event: Event) -> None:
        pass


class DeferringTracker(NullTracker):
    """Deferred: the middleware hands over one build per request; ``keep`` keeps them
    (to time the builds afterwards), else they are dropped."""

    def __init__(self, keep: int = 0) -> None:
        self.jobs: list[Any] = []
        self.keep = keep

    def capture_deferred(self, job: Any) -> None:
        if len(self.jobs) < self.keep:
            self.jobs.append(job)


class FakeRoute:
    path_format = "/products/{product_id}"
    name = "product_detail"


async def raw_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    scope["route"] = FakeRoute
    scope["path_params"] = {"product_id": "72354"}
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/html; charset=utf-8"),
                            (b"content-length", b"11")]})
    await send({"type": "http.response.body", "body": b"<h1>hi</h1>"})


def starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    async def product(request: Any) -> HTMLResponse:
        return HTMLResponse("<h1>hi</h1>")

    return Starlette(routes=[Route("/products/{product_id}", product)])


def scope_for(path: str, cookie: bytes | None) -> dict[str, Any]:
    headers = [(b"host", b"shop.example"), (b"user-agent", b"Mozilla/5.0 Firefox/120"),
               (b"accept", b"text/html"), (b"accept-language", b"en"),
               (b"accept-encoding", b"gzip"), (b"connection", b"keep-alive")]
    if cookie:
        headers.append((b"cookie", cookie))
    return {"type": "http", "http_version": "1.1", "method": "GET", "scheme": "https",
            "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
            "headers": headers, "client": ("203.0.113.9", 5000),
            "server": ("shop.example", 443)}


def time_asgi(app: Any, path: str, cookie: bytes | None, n: int, rounds: int,
              between: Any = None) -> float:
    """Best time per request; with ``between``, an app called before each request (its
    time is part of the figure, the same in the tracked and untracked runs)."""
    template = scope_for(path, cookie)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    async def loop() -> float:
        best = float("inf")
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(n):
                if between is not None:
                    await between(dict(template), receive, send)
                await app(dict(template), receive, send)
            best = min(best, (time.perf_counter() - start) / n)
        return best

    return asyncio.run(loop()) * 1e6


def raw_wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                              ("Content-Length", "11")])
    return [b"<h1>hi</h1>"]


def time_wsgi(app: Callable[..., Any], path: str, cookie: bytes | None, n: int,
              rounds: int) -> float:
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "SCRIPT_NAME": "",
               "QUERY_STRING": "", "SERVER_NAME": "shop.example", "SERVER_PORT": "443",
               "HTTP_HOST": "shop.example", "HTTP_USER_AGENT": "Mozilla/5.0 Firefox/120",
               "REMOTE_ADDR": "203.0.113.9", "wsgi.url_scheme": "https"}
    if cookie:
        environ["HTTP_COOKIE"] = cookie.decode()

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        return None

    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(n):
            body = app(dict(environ), start_response)
            for _chunk in body:
                pass
            close = getattr(body, "close", None)
            if close is not None:
                close()
        best = min(best, (time.perf_counter() - start) / n)
    return best * 1e6


def time_builds(app_for: Callable[[Any], Any], kind: str, path: str, n: int,
                rounds: int) -> float:
    """Sender-side cost: build the deferred events of ``n`` recorded requests."""
    best = float("inf")
    for _ in range(rounds):
        keeper = DeferringTracker(keep=n)
        app = app_for(keeper)
        if kind == "asgi":
            time_asgi(app, path, SC, n, 1)
        else:
            time_wsgi(app, path, SC, n, 1)
        jobs = keeper.jobs
        start = time.perf_counter()
        for job in jobs:
            job.build()
        best = min(best, (time.perf_counter() - start) / max(1, len(jobs)))
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    n, rounds = args.requests, args.rounds
    deferring, direct = DeferringTracker(), NullTracker()
    product = "/products/72354"
    rows: list[tuple[str, float, float, float]] = []

    def asgi_row(name: str, plain: Any, tracked: Callable[[Any], Any], path: str,
                 cookie: bytes | None) -> None:
        rows.append((name, time_asgi(plain, path, cookie, n, rounds),
                     time_asgi(tracked(direct), path, cookie, n, rounds),
                     time_asgi(tracked(deferring), path, cookie, n, rounds)))

    def raw_tracked(tracker: Any) -> Any:
        return CDPTrackMiddleware(raw_asgi, tracker)

    def star_tracked(tracker: Any) -> Any:
        app = starlette_app()
        app.add_middleware(CDPTrackMiddleware, tracker=tracker)
        return app

    def wsgi_tracked(tracker: Any) -> Any:
        return CDPTrackWSGIMiddleware(raw_wsgi, tracker)

    asgi_row("ASGI product page (page + Product Viewed)", raw_asgi, raw_tracked, product, SC)
    asgi_row("ASGI product page, new visitor (+ Set-Cookie)", raw_asgi, raw_tracked, product,
             None)
    asgi_row("ASGI static file (skipped)", raw_asgi, raw_tracked, "/static/app.css", SC)
    asgi_row("Starlette app, product page", starlette_app(), star_tracked, product, SC)
    # The bare ASGI rows again, each request after one to a plain Starlette app: the
    # middleware's own work is the same, only the caches it runs in are not.
    neighbour = starlette_app()
    rows.append(("ASGI product page, after a Starlette request",
                 time_asgi(raw_asgi, product, SC, n, rounds, neighbour),
                 time_asgi(raw_tracked(direct), product, SC, n, rounds, neighbour),
                 time_asgi(raw_tracked(deferring), product, SC, n, rounds, neighbour)))
    rows.append(("WSGI product page (path conventions)",
                  time_wsgi(raw_wsgi, product, SC, n, rounds),
                  time_wsgi(wsgi_tracked(direct), product, SC, n, rounds),
                  time_wsgi(wsgi_tracked(deferring), product, SC, n, rounds)))
    print(f"{'request path, µs per request':48} {'without':>9} {'direct':>9} {'added':>8}"
          f" {'deferred':>9} {'added':>8}")
    for name, without, direct_us, deferred_us in rows:
        print(f"{name:48} {without:9.2f} {direct_us:9.2f} {direct_us - without:8.2f}"
              f" {deferred_us:9.2f} {deferred_us - without:8.2f}")
    print()
    print(f"{'sender thread, µs per request':48} {'build':>9}")
    builds = n // 4
    print(f"{'ASGI product page: deferred build':48} "
          f"{time_builds(raw_tracked, 'asgi', product, builds, rounds):9.2f}")
    print(f"{'WSGI product page: deferred build':48} "
          f"{time_builds(wsgi_tracked, 'wsgi', product, builds, rounds):9.2f}")


if __name__ == "__main__":
    main()
