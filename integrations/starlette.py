"""Starlette adapter: ``setup(app, **options)`` (or ``app.add_middleware(CDPTrackMiddleware,
...)``).

``setup`` puts the pure ASGI middleware innermost in the user middleware stack, inside any
``SessionMiddleware`` or authentication middleware however they were added (before or
after ``setup``), so the live ``scope["session"]`` is there before the view runs and the
cart can be compared.  A tracker made here is started and flushed by the app's lifespan
messages; the app's own lifespan is left untouched.

With a bare ``app.add_middleware(CDPTrackMiddleware, ...)``, add it *before*
``SessionMiddleware`` in your code (Starlette runs later additions outside earlier ones),
or give ``session_secret`` so the signed session cookie can be read instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request

from cdptrack.asgi import CDPTrackMiddleware
from cdptrack.capture import EventSink
from cdptrack.config import Config
from cdptrack.observe.core import Observer
from cdptrack.wiring import make_observer


def setup(app: Starlette, config: Config | None = None, *, tracker: EventSink | None = None,
          user_loader: Callable[[Request], Any] | None = None, **options: Any) -> Observer:
    """Track ``app``.  Returns the observer (``.tracker``, ``.stats()``); it is also kept
    as ``app.state.cdptrack``.  ``user_loader(request)`` returns the signed-in user."""
    if getattr(app, "middleware_stack", None) is not None:
        raise RuntimeError("cdptrack.setup() must run before the application starts")
    if user_loader is not None:
        loader = user_loader
        options["user_loader"] = lambda raw: loader(
            raw if isinstance(raw, Request) else Request(raw))
    observer, owns = make_observer(tracker, config=config, **options)
    app.user_middleware.append(
        Middleware(CDPTrackMiddleware, observer=observer,  # type: ignore[arg-type]
                   manage_tracker=owns))
    app.state.cdptrack = observer
    return observer


__all__ = ["CDPTrackMiddleware", "setup"]
