"""Starlette adapter: ``setup(app, **options)`` (or ``app.add_middleware(CDPTrackMiddleware,
...)``).

``setup`` puts the pure ASGI middleware innermost in the user middleware stack, inside any
``SessionMiddleware`` or authentication middleware however they were added (before or
after ``setup``), so the live ``scope["session"]`` is there before the view runs and the
cart can be compared.  A tracker made here is started and flushed by the app's lifespan
messages; the app's own lifespan is left untouched.  FastAPI's documentation pages
(``/openapi.json``, ``/docs``, ``/docs/oauth2-redirect``, ``/redoc``, wherever the app
puts them) are added to ``ignore_paths``: never tracked, like static files.

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
from starlette.responses import HTMLResponse
from starlette.routing import Host, Mount, WebSocketRoute

from cdptrack.asgi import CDPTrackMiddleware
from cdptrack.capture import EventSink
from cdptrack.config import Config
from cdptrack.observe.core import Observer
from cdptrack.observe.options import ObserveOptions, split_options
from cdptrack.observe.routes import AppRoutes, Route, sort_methods
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
    config_kw, observe_kw = split_options(options)
    opts = ObserveOptions.from_env(**observe_kw)
    never = opts.static_prefixes + opts.ignore_paths
    docs = tuple(path for path in api_docs_paths(app) if not path.startswith(never))
    if docs:  # FastAPI's own documentation pages are no shop pages
        opts = opts.with_overrides(ignore_paths=opts.ignore_paths + docs)
    observer, owns = make_observer(tracker, config=config, options=opts, **config_kw)
    app.user_middleware.append(
        Middleware(CDPTrackMiddleware, observer=observer,  # type: ignore[arg-type]
                   manage_tracker=owns))
    app.state.cdptrack = observer
    return observer


def api_docs_paths(app: Any) -> tuple[str, ...]:
    """The paths of FastAPI's generated API documentation on ``app`` (its
    ``openapi_url``, ``docs_url`` with ``swagger_ui_oauth2_redirect_url``, and
    ``redoc_url``; those switched off are ``None``), which ``setup()`` never tracks.
    A Starlette app has none."""
    openapi = getattr(app, "openapi_url", None)
    if not isinstance(openapi, str) or not openapi:
        return ()  # FastAPI serves no documentation without the schema
    docs = getattr(app, "docs_url", None)
    found = [openapi, docs, getattr(app, "redoc_url", None)]
    if docs:
        found.append(getattr(app, "swagger_ui_oauth2_redirect_url", None))
    return tuple(path for path in found if isinstance(path, str) and path.startswith("/"))


def app_routes(app: Any) -> AppRoutes:
    """``app``'s routes as ``cdptrack routes`` shows them, each with the full template
    the middleware reads at request time (see :func:`cdptrack.asgi.read_route`): the
    ``Mount`` paths above it plus its ``path_format`` (``include_router`` prefixes are
    in ``path_format`` already).  ``app`` is a Starlette/FastAPI app, or one wrapped in
    ASGI middleware (``CDPTrackMiddleware(app)``: its options are read).  The observer
    is the one ``setup()`` or ``add_middleware(CDPTrackMiddleware, ...)`` made (the
    latter built here from its options, as the app would at its first request)."""
    observer: Observer | None = None
    inner = app
    for _ in range(32):  # outer ASGI middleware, down to the app with the routes
        if isinstance(inner, CDPTrackMiddleware):
            observer = inner.observer
        if hasattr(inner, "routes") or not hasattr(inner, "app"):
            break
        inner = inner.app
    state = getattr(getattr(inner, "state", None), "_state", {})
    found = state.get("cdptrack") if isinstance(state, dict) else None
    if isinstance(found, Observer):
        observer = found
    for entry in getattr(inner, "user_middleware", ()) or ():
        if observer is None and getattr(entry, "cls", None) is CDPTrackMiddleware:
            observer = CDPTrackMiddleware(inner, *entry.args, **entry.kwargs).observer
    routes: list[Route] = []
    _collect(getattr(inner, "routes", ()) or (), "", routes)
    notes = () if observer is not None else (
        "this app does not install cdptrack (setup(app) or CDPTrackMiddleware); the "
        "table shows what the defaults would do",)
    framework = "fastapi" if type(inner).__module__.startswith("fastapi") else "starlette"
    return AppRoutes(framework, routes, observer, notes)


def _collect(entries: Any, prefix: str, out: list[Route]) -> None:
    for entry in entries:
        contexts = getattr(entry, "effective_route_contexts", None)
        if callable(contexts):
            # FastAPI >= 0.165: an included router, listed through the contexts its
            # routes are matched with; each keeps its router's route, whose
            # path_format lacks the include prefixes that read_route adds back.
            for context in contexts():
                route = getattr(context, "original_route", None)
                full = getattr(context, "path", None)
                own = getattr(route, "path", None)
                if isinstance(full, str) and isinstance(own, str) and full.endswith(own):
                    _add(route, prefix + full[:len(full) - len(own)].rstrip("/"), out)
            continue
        _add(entry, prefix, out)


def _add(route: Any, prefix: str, out: list[Route]) -> None:
    if isinstance(route, WebSocketRoute):
        return
    path_format = getattr(route, "path_format", "")
    if isinstance(route, (Mount, Host)):
        inner = getattr(route, "routes", None) or []
        mount_path = getattr(route, "path", "")  # path_format ends in "/{path}"
        here = prefix if isinstance(route, Host) else prefix + str(mount_path).rstrip("/")
        if inner:
            _collect(inner, here, out)
        else:  # a mounted app without routes (static files): no template reported
            name = getattr(route, "name", None)
            out.append(Route(here + "/{path}", None, None,
                             name if isinstance(name, str) else None, None, None))
        return
    endpoint = getattr(route, "endpoint", None)
    name = getattr(route, "name", None)
    methods = getattr(route, "methods", None)
    response_class = getattr(route, "response_class", None)
    response_class = getattr(response_class, "value", response_class)  # FastAPI Default
    html = True if isinstance(response_class, type) and issubclass(
        response_class, HTMLResponse) else None
    if not methods and isinstance(endpoint, type):  # an HTTPEndpoint: its handlers
        methods = [m for m in ("GET", "POST", "PUT", "PATCH", "DELETE")
                   if hasattr(endpoint, m.lower())]
    path = getattr(route, "path", path_format)
    out.append(Route(
        prefix + (path if isinstance(path, str) else path_format),
        sort_methods(methods) if methods else None,
        endpoint, name if isinstance(name, str) else getattr(endpoint, "__name__", None),
        prefix + path_format, html))


__all__ = ["CDPTrackMiddleware", "api_docs_paths", "app_routes", "setup"]
