"""The two small shops ``bench_shop.py`` serves: a product page that reads the session
and renders a template (Flask, under gunicorn) or returns the product as JSON (FastAPI,
under uvicorn), plus ``POST /login`` to sign a visitor in (so every destination gets the
page view: Yespo v1/event needs an email, Orangepill an identity).

``BENCH_CDPTRACK=1`` in the environment wires cdptrack (its settings from the usual
``CDPTRACK_*`` variables); ``BENCH_CDPTRACK=discard`` wires the middleware to a tracker
that throws each request's work away (the request path's own cost, no delivery);
anything else serves the same shop without it.  ``BENCH_CAPTURE_TIMES=1`` times each
``Tracker.capture_deferred`` call (what a request thread spends handing its events to
cdptrack: with a durable outbox, building them and committing them) and serves the
samples at ``GET /__capture_times`` (wall and thread-CPU nanoseconds, and of that the
SQLite outbox's build of the events; the call empties them).

    gunicorn 'benchmarks.shop_apps:flask_app()'
    uvicorn --factory benchmarks.shop_apps:fastapi_app
"""


# No "from __future__ import annotations": FastAPI must resolve the route
# functions' annotations, which name classes imported inside fastapi_app().
import os
import threading
import time
from typing import Any

from cdptrack.examples import catalogue

TRACKED = os.environ.get("BENCH_CDPTRACK") in ("1", "discard")


class _Discard:
    """A tracker that takes the middleware's work and drops it: what is left of
    cdptrack's cost is the request path's."""

    def capture(self, event: Any) -> None:
        pass

    def capture_deferred(self, job: Any) -> None:
        job.discard()  # leaves the build order: nothing waits for, or keeps, it


def _tracker() -> Any:
    return _Discard() if os.environ.get("BENCH_CDPTRACK") == "discard" else None


TIMED = TRACKED and os.environ.get("BENCH_CAPTURE_TIMES") == "1"
# Per capture_deferred: wall ns, thread CPU ns, and the same for building the events.
_SAMPLES: list[tuple[int, int, int, int]] = []
_BUILD = threading.local()


def _time_captures() -> None:
    """Wrap ``Tracker.capture_deferred`` (before the middleware binds it) to record how
    long each call keeps the request's thread: wall time, which includes waiting for
    the outbox's lock and the GIL while the sender is busy, and the thread's CPU."""
    from cdptrack.delivery import outbox_sqlite
    from cdptrack.tracker import Tracker

    original = Tracker.capture_deferred
    build = outbox_sqlite.run_build

    def timed(self: Any, job: Any) -> None:
        _BUILD.wall = _BUILD.cpu = 0
        wall, cpu = time.perf_counter_ns(), time.thread_time_ns()
        original(self, job)
        _SAMPLES.append((time.perf_counter_ns() - wall, time.thread_time_ns() - cpu,
                         _BUILD.wall, _BUILD.cpu))

    def timed_build(job: Any) -> Any:
        wall, cpu = time.perf_counter_ns(), time.thread_time_ns()
        try:
            return build(job)
        finally:
            _BUILD.wall += time.perf_counter_ns() - wall
            _BUILD.cpu += time.thread_time_ns() - cpu

    Tracker.capture_deferred = timed  # type: ignore[method-assign]
    outbox_sqlite.run_build = timed_build


def _take_samples() -> dict[str, list[int]]:
    taken = _SAMPLES[:]
    del _SAMPLES[:len(taken)]
    return {"wall": [s[0] for s in taken], "cpu": [s[1] for s in taken],
            "build_wall": [s[2] for s in taken], "build_cpu": [s[3] for s in taken]}

PAGE = """<!doctype html><html><head><title>{{ product.name }}</title></head><body>
<h1>{{ product.name }}</h1><p class="price">{{ product.price }} {{ currency }}</p>
<p>{{ product.description | default('') }}</p>
<p>Cart: {{ cart | length }} lines</p>
<ul>{% for p in related %}<li><a href="/product/{{ p.product_id }}">{{ p.name }}</a>
{{ p.price }}</li>{% endfor %}</ul></body></html>"""


def _user(email: str) -> dict[str, Any]:
    return {"id": "u-" + email.split("@")[0], "email": email,
            "orangepill_identity": catalogue.identity_for(email)}


def flask_app() -> Any:
    """The Flask shop (a WSGI app)."""
    from flask import Flask, abort, render_template, request, session
    from jinja2 import DictLoader

    app = Flask(__name__)
    app.config["SECRET_KEY"] = "bench-shop-secret"
    app.jinja_loader = DictLoader({"product.html": PAGE})  # compiled once, then cached

    @app.get("/product/<product_id>")
    def product_detail(product_id: str) -> str:
        found = catalogue.product(product_id) or abort(404)
        cart = session.get("cart", [])
        related = catalogue.in_category(found["category_slug"])
        return render_template("product.html", product=found, cart=cart, related=related,
                                      currency=catalogue.CURRENCY)

    @app.post("/login")
    def login() -> str:
        session["user"] = _user(request.form.get("email", "bench@example.com"))
        return "ok"

    if TIMED:
        @app.get("/__capture_times")
        def capture_times() -> dict[str, list[int]]:
            return _take_samples()

        _time_captures()
    if TRACKED:
        from cdptrack.integrations.flask import CDPTrack

        CDPTrack(app, tracker=_tracker())
    return app


def fastapi_app() -> Any:
    """The FastAPI shop (an ASGI app)."""
    from fastapi import FastAPI, HTTPException, Request
    from starlette.middleware.sessions import SessionMiddleware

    app = FastAPI()

    @app.get("/product/{product_id}")
    async def product_detail(product_id: str, request: Request) -> dict[str, Any]:
        found = catalogue.product(product_id)
        if found is None:
            raise HTTPException(404)
        cart = request.session.get("cart", [])
        return {**found, "cart_lines": len(cart), "currency": catalogue.CURRENCY}

    @app.post("/login")
    async def login(request: Request) -> str:
        request.session["user"] = _user("bench@example.com")
        return "ok"

    if TIMED:
        @app.get("/__capture_times")
        async def capture_times() -> dict[str, list[int]]:
            return _take_samples()

        _time_captures()
    if TRACKED:
        from cdptrack.integrations.fastapi import setup

        setup(app, tracker=_tracker())
    app.add_middleware(SessionMiddleware, secret_key="bench-shop-secret")
    return app
