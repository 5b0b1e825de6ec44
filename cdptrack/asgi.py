"""Pure ASGI middleware: one line turns a Starlette/FastAPI (or any ASGI) shop into events.

Modelled on Starlette's gzip and OpenTelemetry middlewares: non-HTTP scopes pass
straight through; per-request state lives in the scope and in closures, never on the
instance; ``send`` is wrapped to see the status and headers at ``http.response.start``
(where the ``sc`` cookie is added for a new visitor, the only change ever made to the
response) and the last ``http.response.body``, after which the route the app matched
(``scope["route"]``, ``scope["endpoint"]``, ``path_params``, ``root_path`` of mounts)
is read and the events are built.  No request body is read.  A guard key in the scope
makes a second installation a no-op.  Never ``BaseHTTPMiddleware``: it breaks context
variables and background tasks.

With ``manage_tracker`` (the default when the middleware created its own tracker) the
lifespan messages start the tracker and flush it at shutdown, leaving the app's own
lifespan untouched.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .capture import EventSink
from .config import Config
from .observe.answer import ANSWER_KINDS, keep_chunk
from .observe.carts import CART_OBJECT_NAMES
from .observe.core import Observer, plain_path, url_path
from .observe.declare import ignored
from .observe.options import ObserveOptions
from .observe.page import resolve_page
from .observe.session import (
    fill_session_from_cookies,
    session_from_set_cookie,
    snapshot_after,
    snapshot_later,
)
from .observe.state import GUARD_KEY, STATE_KEY, RequestState, current_state
from .observe.visitor import identity_from_user
from .wiring import make_observer

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = logging.getLogger("cdptrack.observe")

# The request headers the observer reads, by their raw ASGI name (lower-case bytes).
_WANTED_HEADERS: dict[bytes, str] = {
    name.encode("latin-1"): name for name in (
        "cookie", "user-agent", "sec-gpc", "sec-purpose", "purpose", "x-purpose", "x-moz",
        "referer", "host", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host")
}
# Headers a client or proxy may send as several fields, and how their values join
# (HTTP/2 clients send one ``cookie`` field per cookie; proxies may add a field).
_JOINED: dict[str, str] = {"cookie": "; ", "x-forwarded-for": ", ",
                           "x-forwarded-proto": ", ", "x-forwarded-host": ", "}
SHUTDOWN_TIMEOUT = 5.0


class CDPTrackMiddleware:
    """``app = CDPTrackMiddleware(app, tracker)`` or
    ``app.add_middleware(CDPTrackMiddleware, tracker=tracker, **options)``.

    Without ``tracker`` one is made from ``config`` (or the ``CDPTRACK_*`` environment)
    and started and stopped with the app's lifespan.  ``options`` and the flat keyword
    options are :class:`~cdptrack.observe.options.ObserveOptions` (cookie, session,
    consent, route rules, ...) or :class:`~cdptrack.Config` settings.
    """

    def __init__(
        self,
        app: ASGIApp,
        tracker: EventSink | None = None,
        *,
        config: Config | None = None,
        options: ObserveOptions | None = None,
        observer: Observer | None = None,
        manage_tracker: bool | None = None,
        **flat_options: Any,
    ) -> None:
        self.app = app
        if observer is None:
            observer, created = make_observer(tracker, config=config, options=options,
                                              **flat_options)
        else:
            created = False
        self.observer = observer
        self.manage_tracker = created if manage_tracker is None else manage_tracker
        # App-level (not per-request) facts: whether a lifespan started the tracker,
        # and whether the missing lifespan was reported.
        self._lifespan_seen = False
        self._warned_no_lifespan = False
        self._session_cookie = observer.options.session_cookie_name.encode("latin-1") + b"="

    @property
    def tracker(self) -> EventSink:
        return self.observer.tracker

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope_type = scope["type"]
        if scope_type == "lifespan" and self.manage_tracker and GUARD_KEY not in scope:
            scope[GUARD_KEY] = True
            await self._lifespan(scope, receive, send)
            return
        if scope_type != "http" or GUARD_KEY in scope:
            await self.app(scope, receive, send)
            return
        if self.manage_tracker and not self._lifespan_seen and not self._warned_no_lifespan:
            self._warn_no_lifespan()
        scope[GUARD_KEY] = True
        state = self._begin(scope)
        if state is None:
            await self.app(scope, receive, send)
            return
        observer = self.observer
        session_cookie = self._session_cookie

        async def send_tracked(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.start":
                message = _on_start(observer, state, message, session_cookie, scope)
            elif (kind == "http.response.body" and not message.get("more_body", False)) \
                    or kind == "http.response.pathsend":
                if state.response_json is not None:
                    keep_chunk(state, message.get("body", b""))
                if observer.commit_first:  # durable outbox: committed before the end
                    _finish(observer, state, scope)
                    await send(message)
                    return
                await send(message)
                _finish(observer, state, scope)
                return
            elif kind == "http.response.body" and state.response_json is not None:
                keep_chunk(state, message.get("body", b""))
            await send(message)

        token = current_state.set(state)
        try:
            await self.app(scope, receive, send_tracked)
        finally:
            current_state.reset(token)

    def _begin(self, scope: Scope) -> RequestState | None:
        observer = self.observer
        try:
            headers: dict[str, str] = {}
            wanted = _WANTED_HEADERS.get
            for name, value in scope.get("headers") or ():
                key = wanted(name)
                if key is not None:
                    if key not in headers:
                        headers[key] = value.decode("latin-1")
                    elif key in _JOINED:
                        headers[key] += _JOINED[key] + value.decode("latin-1")
            client = scope.get("client")
            root_path = scope.get("root_path", "")
            path = scope.get("path", "/")
            if root_path and not path.startswith(root_path):
                path = root_path + path
            host = headers.get("host")
            if host is None:
                server = scope.get("server")
                host = f"{server[0]}:{server[1]}" if server else "localhost"
            requested = None
            if not plain_path(path):
                raw_path = scope.get("raw_path")
                requested = url_path(
                    path.encode("utf-8", "surrogateescape"),
                    raw_path.decode("latin-1") if isinstance(raw_path, bytes) else None)
            state = observer.begin(
                scope.get("method", "GET"), scope.get("scheme", "http"), host, path,
                (scope.get("query_string") or b"").decode("latin-1"), root_path,
                client[0] if client else None, headers, scope, requested,
            )
            if state is None:
                return None
            scope[STATE_KEY] = state
            session = scope.get("session")
            if session is not None:
                state.session_before = snapshot_later(session, observer.options)
            return state
        except Exception:
            observer.error("begin")
            return None

    def _warn_no_lifespan(self) -> None:
        self._warned_no_lifespan = True
        logger.warning(
            "cdptrack: requests arrive but no ASGI lifespan started this app's tracker "
            "(a mounted sub-app, a server run with lifespan off, or Django): events are "
            "drained on SIGTERM/SIGINT, at the server's shutdown and at exit instead. "
            "Call setup() on the outermost app, or wrap a Django ASGI app with "
            "cdptrack.integrations.django.asgi_application()")

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        tracker = self.observer.tracker
        observer = self.observer
        self._lifespan_seen = True

        async def receive_lifespan() -> Message:
            message = await receive()
            if message.get("type") == "lifespan.startup":
                try:
                    start = getattr(tracker, "astart", None)
                    if start is not None:
                        await start()
                except Exception:
                    observer.error("lifespan_startup")
            return message

        async def send_lifespan(message: Message) -> None:
            if message.get("type") in ("lifespan.shutdown.complete",
                                       "lifespan.shutdown.failed"):
                await ashutdown(tracker, observer)
            await send(message)

        await self.app(scope, receive_lifespan, send_lifespan)


async def ashutdown(tracker: Any, observer: Observer | None,
                    timeout: float | None = None) -> None:
    """Flush and stop a tracker from async code, bounded (``timeout``, else the
    tracker's ``shutdown_budget``, else :data:`SHUTDOWN_TIMEOUT` seconds), never
    raising."""
    if timeout is None:
        budget = getattr(tracker, "shutdown_budget", None)
        timeout = float(budget) if isinstance(budget, (int, float)) else SHUTDOWN_TIMEOUT
    try:
        stop = getattr(tracker, "ashutdown", None)
        if stop is not None:
            await stop(timeout)
            return
        sync_stop = getattr(tracker, "shutdown", None)
        if sync_stop is not None:
            await asyncio.to_thread(sync_stop, timeout)
    except Exception:
        if observer is not None:
            observer.error("lifespan_shutdown")
        else:
            logger.warning("cdptrack: stopping the tracker failed", exc_info=True)


class TrackerLifespan:
    """An ASGI app that answers the lifespan protocol for an app that has none (Django's
    ASGI handler refuses lifespan scopes): ``startup`` starts the tracker, ``shutdown``
    drains it (bounded by its ``shutdown_budget``) once the server has finished its
    graceful shutdown.  Every other scope goes to ``app`` unchanged.

    ``tracker`` may be a callable returning the tracker, so a tracker that is built
    lazily (Django's, from settings) is looked up at startup.
    """

    def __init__(self, app: ASGIApp, tracker: Any) -> None:
        self.app = app
        self._tracker = tracker

    def _get(self) -> Any:
        tracker = self._tracker
        if callable(tracker) and not hasattr(tracker, "capture"):
            return tracker()
        return tracker

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            kind = message.get("type")
            if kind == "lifespan.startup":
                try:
                    tracker = self._get()
                    start = getattr(tracker, "astart", None)
                    if start is not None:
                        await start()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif kind == "lifespan.shutdown":
                try:
                    await ashutdown(self._get(), None)
                finally:
                    await send({"type": "lifespan.shutdown.complete"})
                return


def _on_start(observer: Observer, state: RequestState, message: Message,
              session_cookie: bytes, scope: Scope) -> Message:
    try:
        if state.sc_new and ignored(scope.get("endpoint")):
            state.skip = True  # @track.ignore() on an endpoint class: no visitor cookie
        headers = message.get("headers") or []
        json_answer = False
        visitor_cookie = observer.visitor_cookie_prefix
        for name, value in headers:
            lower = name.lower()
            if lower == b"content-type":
                state.html = value[:9].lower() == b"text/html"
                json_answer = value[:16].lower() == b"application/json"
            elif lower == b"set-cookie":
                if value.startswith(session_cookie):
                    state.session_cookie_after = session_from_set_cookie(
                        value.decode("latin-1"))
                elif value.startswith(visitor_cookie):
                    observer.app_set_visitor(state, value.decode("latin-1"))
        cookie = observer.response_cookie(state, message["status"])
        found = scope.get("state")
        if found and 200 <= state.status < 400 and isinstance(found, dict) \
                and found.get("order") is not None:
            # request.state.order: read at response start, while the database session
            # the shop's middleware or dependency opened for the view is still open.
            observer.read_order(state, found["order"])
        if found and isinstance(found, dict):
            objects = [found[name] for name in CART_OBJECT_NAMES
                       if found.get(name) is not None]
            if objects:  # request.state.cart / basket: ORM rows, read while still live
                read_route(state, scope)
                observer.read_cart(state, objects)
        if json_answer and 200 <= message["status"] < 300 and _keeps_answer(
                observer, state, scope):
            state.response_json = b""  # a JSON API's cart or order: kept (bounded)
        if cookie is not None:
            return {**message, "headers": [*headers, (b"set-cookie", cookie.encode("latin-1"))]}
    except Exception:
        observer.error("response_start")
    return message


# Product details come from the return value FastAPI hands over (``setup()``); the
# answers of cart, checkout and order routes are kept as JSON.
_ASGI_ANSWER_KINDS = ANSWER_KINDS - {"product"}


def _keeps_answer(observer: Observer, state: RequestState, scope: Scope) -> bool:
    # The route is known at response start (the router wrote it into the scope).
    read_route(state, scope)
    found = resolve_page(state, observer.options)
    return found is not None and found.kind in _ASGI_ANSWER_KINDS


def _finish(observer: Observer, state: RequestState, scope: Scope) -> None:
    try:
        read_route(state, scope)
        found = scope.get("state") or {}
        objects = [found[name] for name in CART_OBJECT_NAMES
                   if isinstance(found, dict) and found.get(name) is not None]
        observer.read_cart(state, objects)
        if state.user is None and observer.options.user_loader is None:
            state.user = scope_user(scope, found)
        session = scope.get("session")
        if session is not None and state.session_after is None:
            state.session_after = snapshot_after(session, state.session_before,
                                                 observer.options)
        fill_session_from_cookies(observer.options, state, "starlette")
        if session is not None and state.session_before is None:
            observer.warn_once(
                "session_inside",
                "cdptrack: the session appears only inside cdptrack's middleware (a "
                "SessionMiddleware added after CDPTrackMiddleware runs inside it), so cart "
                "changes and sign-ins cannot be compared and are not sent. Use "
                "cdptrack.integrations.starlette.setup(app), add CDPTrackMiddleware before "
                "SessionMiddleware, or give session_secret")
    except Exception:
        observer.error("finish")
        return
    observer.finish(state)


def scope_user(scope: Scope, found: Any) -> Any:
    """The signed-in user an app left in the scope, when no ``user_loader`` is set: the
    ``user`` a dependency or middleware put on ``request.state`` (the usual place in a
    bearer-token FastAPI app: ``request.state.user = user`` in ``get_current_user``),
    else Starlette's ``AuthenticationMiddleware`` user (``scope["user"]``) when it is
    authenticated.  None when there is none."""
    user = found.get("user") if isinstance(found, dict) else None
    if user is None:
        user = scope.get("user")
        if user is not None and not getattr(user, "is_authenticated", False):
            return None
    return user if identity_from_user(user) else None


def read_route(state: RequestState, scope: Scope) -> None:
    """The route the app matched, from the scope the router wrote into (no re-matching).

    Mounted sub-apps and prefixed routers: the innermost router wrote ``route`` and the
    mounts extended ``root_path``; the full template is the mount prefix (``root_path``
    past the server's own root path) plus the route's ``path_format``.
    """
    if state.route_template is not None:
        return
    route = scope.get("route")
    endpoint = scope.get("endpoint")
    state.path_params = scope.get("path_params")
    state.endpoint = endpoint
    if route is None:
        if endpoint is not None:
            state.endpoint_name = getattr(endpoint, "__name__", None)
        return
    name = getattr(route, "name", None)
    state.endpoint_name = name if isinstance(name, str) else getattr(endpoint, "__name__", None)
    path_format = getattr(route, "path_format", None)
    if not isinstance(path_format, str) or type(route).__name__ in ("Mount", "Host"):
        return
    root_path = scope.get("root_path", "")
    app_root = scope.get("app_root_path", state.script_root)
    prefix = root_path[len(app_root):] if root_path.startswith(app_root) else root_path
    prefix = prefix.rstrip("/") + included_prefix(scope, route)
    state.route_template = prefix + path_format if prefix else path_format


def included_prefix(scope: Scope, route: Any) -> str:
    """The ``include_router(prefix=...)`` prefixes above ``route`` when FastAPI matched
    it through an included router it did not copy the route into (FastAPI >= 0.165
    keeps the router's own route, whose ``path_format`` lacks them, and names the
    included router in ``scope["fastapi"]``); ``""`` otherwise."""
    found = scope.get("fastapi")
    included = found.get("included_router") if isinstance(found, dict) else None
    if included is None:
        return ""
    context = getattr(included, "include_context", None)
    prefix = getattr(context, "prefix", None)
    router = getattr(included, "original_router", None)
    if not isinstance(prefix, str) or not prefix or not any(
            r is route for r in getattr(router, "routes", ())):
        return ""
    return prefix.rstrip("/")


__all__ = ["CDPTrackMiddleware", "TrackerLifespan", "ashutdown", "included_prefix", "read_route"]
