"""Time cdptrack's middleware adds per request, against the same app without it.

The apps are called directly in a loop (no network, no server): an ASGI app that
records its route in the scope the way Starlette's router does, the same app inside a
real Starlette application, and a WSGI app.  The tracker is a no-op ``capture`` so the
figure is the observe layer's own cost: reading the request, the cookie and the route,
inferring the page, building the canonical events.  Each figure is the best of several
rounds, in microseconds per request.

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
    def capture(self, event: Event) -> None:
        pass


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


def time_asgi(app: Any, path: str, cookie: bytes | None, n: int, rounds: int) -> float:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    n, rounds = args.requests, args.rounds
    tracker = NullTracker()
    star = starlette_app()
    star_tracked = starlette_app()
    star_tracked.add_middleware(CDPTrackMiddleware, tracker=tracker)
    cases: list[tuple[str, float, float]] = [
        ("ASGI product page (page + Product Viewed)",
         time_asgi(raw_asgi, "/products/72354", SC, n, rounds),
         time_asgi(CDPTrackMiddleware(raw_asgi, tracker), "/products/72354", SC, n, rounds)),
        ("ASGI product page, new visitor (+ Set-Cookie)",
         time_asgi(raw_asgi, "/products/72354", None, n, rounds),
         time_asgi(CDPTrackMiddleware(raw_asgi, tracker), "/products/72354", None, n, rounds)),
        ("ASGI static file (skipped)",
         time_asgi(raw_asgi, "/static/app.css", SC, n, rounds),
         time_asgi(CDPTrackMiddleware(raw_asgi, tracker), "/static/app.css", SC, n, rounds)),
        ("Starlette app, product page",
         time_asgi(star, "/products/72354", SC, n, rounds),
         time_asgi(star_tracked, "/products/72354", SC, n, rounds)),
        ("WSGI product page (path conventions)",
         time_wsgi(raw_wsgi, "/products/72354", SC, n, rounds),
         time_wsgi(CDPTrackWSGIMiddleware(raw_wsgi, tracker), "/products/72354", SC, n, rounds)),
    ]
    print(f"{'case':48} {'without':>10} {'with':>10} {'added':>10}")
    for name, without, with_ in cases:
        print(f"{name:48} {without:8.2f}µs {with_:8.2f}µs {with_ - without:8.2f}µs")


if __name__ == "__main__":
    main()
