"""What each route of an app will send, decided before any request: ``cdptrack routes``.

The framework adapters list an app's routes (:class:`Route`: the pattern as the
framework writes it, with mount and blueprint prefixes, its methods and its view);
:func:`plan_route` decides each one with the functions the middleware uses at request
time (:func:`~cdptrack.observe.page.route_page_source` for the page kind, key and where
the decision comes from; :func:`~cdptrack.observe.build.kind_event` and
:func:`~cdptrack.observe.build.identifies` for the events), so the table cannot
disagree with what a request really sends.  Pure: no framework, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..events import (
    CART_UPDATED,
    ORDER_COMPLETED,
    PRODUCT_ADDED_TO_WISHLIST,
    PRODUCT_LIST_VIEWED,
    PRODUCT_VIEWED,
    PRODUCTS_SEARCHED,
)
from .build import identifies, kind_event
from .core import TRACKED_METHODS, Observer
from .declare import IGNORE_KEY
from .options import ObserveOptions
from .page import key_value, route_page_source, template_params
from .state import PageDeclaration, RequestState

# Why an event in the table may not be sent by a given request (the ``when`` of an
# event; ``None``: always, for a 2xx answer, or a 3xx one to a change request).
WHEN = {
    "html": "the answer is an HTML page",
    "identity": "the visitor is known (session, user loader, track.identify)",
    "cart_changed": "the cart changed",
    "query": "the query string has a search parameter",
    "order": "the order is known (once per order)",
    "product_id": "the view gives the product id (return value, context, track.*)",
}
# Methods shown when the framework does not say which ones a view accepts (a Django
# function view): what a browser sends.
DEFAULT_METHODS = ("GET", "POST")
_METHOD_ORDER = ("GET", "POST", "PUT", "PATCH", "DELETE")


@dataclass(frozen=True)
class Route:
    """One route of an app, as its framework adapter read it from the app.

    ``pattern`` is the route as the framework writes it, full (blueprint ``url_prefix``,
    ``include_router`` prefix, ``Mount`` path, ``include()`` prefixes); ``template`` is
    what the middleware reads from the framework at request time (a Django ``re_path``
    read as a template; ``None``: the framework reports none, as for a mounted
    static-files app).  ``methods`` are upper-case HTTP methods
    (``None``: the framework does not say).  ``endpoint`` is the view function or class
    (its ``@track`` decorator is read), ``endpoint_name`` the framework's name for it.
    ``html``: the answer is HTML (``True``), is not (``False``), or cannot be told
    from the route (``None``)."""

    pattern: str
    methods: tuple[str, ...] | None
    endpoint: Any = None
    endpoint_name: str | None = None
    template: str | None = None
    html: bool | None = None


@dataclass(frozen=True)
class AppRoutes:
    """An app's routes and the observer its cdptrack installation made (``None``: the
    app does not install cdptrack; the table then shows what the defaults would do).
    ``installed`` says whether requests reach cdptrack at all (a Django project has
    settings, hence an observer, before its middleware is listed)."""

    framework: str
    routes: Sequence[Route]
    observer: Observer | None
    notes: tuple[str, ...] = field(default=())
    installed: bool | None = None  # None: installed when there is an observer


def sort_methods(methods: Any) -> tuple[str, ...]:
    """Tracked HTTP methods in a stable order (GET, POST, PUT, PATCH, DELETE); HEAD and
    OPTIONS, which cdptrack never tracks, are left out."""
    found = {str(m).upper() for m in methods}
    return tuple(m for m in _METHOD_ORDER if m in found)


def plan_route(route: Route, options: ObserveOptions,
               observer: Observer | None = None) -> dict[str, Any]:
    """The row of one route (the JSON shape documented in the README, "cdptrack
    routes"): per method, the page kind, its key parameter, the ``source`` of the
    decision (``declaration``, ``rule``, ``convention``, ``none``) and the events a
    request would send, each with the condition (``when``, a key of :data:`WHEN`) it
    depends on.  ``kind``, ``key`` and ``source`` at the top are the GET's (else the
    first method's).  A path cdptrack never tracks (static files, ``ignore_paths``)
    has ``tracked: false`` and no events."""
    path = route.template if route.template is not None else route.pattern
    methods = sort_methods(route.methods) if route.methods is not None else DEFAULT_METHODS
    static = observer.is_static(path) if observer is not None else path.startswith(
        options.static_prefixes + options.ignore_paths)
    requests: dict[str, dict[str, Any]] = {}
    for method in methods:
        if method in TRACKED_METHODS:
            requests[method] = _plan_method(route, method, options, static)
    first = requests.get("GET") or next(iter(requests.values()), None) or {}
    return {
        "route": route.pattern,
        "methods": list(methods),
        "methods_known": route.methods is not None,
        "endpoint": route.endpoint_name,
        "kind": first.get("kind"),
        "key": first.get("key"),
        "source": first.get("source", "none"),
        "tracked": not static and any(r["tracked"] for r in requests.values()),
        "requests": requests,
    }


def _plan_method(route: Route, method: str, options: ObserveOptions,
                 static: bool) -> dict[str, Any]:
    if static:
        return {"kind": None, "key": None, "source": "none", "tracked": False,
                "why": "static", "events": []}
    template = route.template
    decl, source = route_page_source(template, route.endpoint, route.endpoint_name,
                                     method, options, path=route.pattern)
    if decl is not None and decl.key == IGNORE_KEY:
        return {"kind": None, "key": None, "source": source, "tracked": False,
                "why": "ignored", "events": []}
    kind = decl.kind if decl is not None else None
    params = template_params(template if template is not None else route.pattern)
    key = _key_param(decl, params) if decl is not None else None
    events: list[dict[str, Any]] = []

    def add(name: str, when: str | None = None) -> None:
        events.append({"event": name, "when": when})

    if identifies(kind, method):
        add("identify", "identity")
    if method == "GET" and options.track_pages and route.html is not False:
        add("page", None if route.html else "html")
    name = kind_event(kind, method, declared=source == "declaration",
                      order_on_request=True)
    if name in (PRODUCT_VIEWED, PRODUCT_ADDED_TO_WISHLIST):
        add(name, None if key is not None and key in params else "product_id")
    elif name == PRODUCT_LIST_VIEWED:
        add(name)
    elif name == PRODUCTS_SEARCHED:
        add(name, "query")
    elif name == ORDER_COMPLETED:
        add(name, "order")
    if kind in ("cart", "checkout", "order") and method != "GET":
        add(CART_UPDATED, "cart_changed")
    return {"kind": kind, "key": key, "source": source, "tracked": True, "why": None,
            "events": events}


def _key_param(decl: PageDeclaration, params: list[str]) -> str | None:
    """The parameter the page's key is read from, found as the middleware finds its
    value (:func:`~cdptrack.observe.page.key_value`) on a request whose path parameters
    are named after themselves."""
    if decl.key is not None:
        return decl.key
    if decl.kind == "search":
        return decl.query_param  # the query-string parameter holding the words
    state = RequestState("GET", "http", "", "/", "", "", None, None, None, {}, None)
    state.path_params = {name: name for name in params}
    return key_value(state, decl)


__all__ = ["DEFAULT_METHODS", "WHEN", "AppRoutes", "Route", "plan_route", "sort_methods"]
