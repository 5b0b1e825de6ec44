"""An app's route table with what each route sends and where: ``cdptrack routes`` and the
inspector's routes tab.

:func:`route_table` turns an adapter's :class:`~cdptrack.observe.routes.AppRoutes` into
one JSON document (the shape is documented in the README, "cdptrack routes").  Which
destination takes which event is found by rendering a complete sample of the event
with the real renderers and the app's configuration, for an anonymous visitor and then
for a known one, so the answer is the renderers' own (``no_mapping``,
``not_configured``, ...), never a second table to keep in step.
"""

from __future__ import annotations

from typing import Any

from .config import DESTINATIONS, Config, ConfigError
from .destinations import render_event
from .events import (
    CART_UPDATED,
    ORDER_COMPLETED,
    PRODUCT_ADDED_TO_WISHLIST,
    PRODUCT_LIST_VIEWED,
    PRODUCT_VIEWED,
    PRODUCTS_SEARCHED,
    Event,
    Visitor,
    identify,
    page,
    track,
)
from .observe.options import ObserveOptions
from .observe.routes import WHEN, AppRoutes, plan_route

FORMAT = "cdptrack-routes/1"
# Destination answers besides the renderers' own reasons.
SENT = "sent"
KNOWN_VISITOR = "known_visitor"  # sent once the visitor is known (see REACH)
WITH_IDENTITY = "orangepill_identity"  # sent once the visitor has an Orangepill identity
REACH = {
    SENT: "sent",
    KNOWN_VISITOR: ("sent once the visitor is known (Yespo v1/event: an email, phone or "
                    "customer id; Orangepill: a signed-in user with an email or phone)"),
    WITH_IDENTITY: "sent when the visitor has an Orangepill identity",
    "not_configured": "this API is not configured",
    "no_mapping": "this API has no form for the event",
}

_SC = "CDA68358-94FB-4D83-9655-3FEB3C4114A3"
_ANONYMOUS = Visitor(sc=_SC)
_KNOWN = Visitor(sc=_SC, user_id="u-1", email="jane@example.com")
_IDENTIFIED = Visitor(sc=_SC, user_id="u-1", email="jane@example.com",
                      orangepill_identity="634b56217f6a7b0be52dffbd")
_CONTEXT = {"url": "https://shop.example/p/1", "ip": "203.0.113.9"}
_LINE = {"product_id": "1", "name": "Sample", "price": 10, "currency": "USD",
         "quantity": 1}
_SAMPLES: dict[str, dict[str, Any]] = {
    PRODUCT_VIEWED: {k: v for k, v in _LINE.items() if k != "quantity"},
    PRODUCT_ADDED_TO_WISHLIST: {k: v for k, v in _LINE.items() if k != "quantity"},
    PRODUCT_LIST_VIEWED: {"category": "Shoes", "category_id": "shoes", "list_id": "shoes",
                          "products": [_LINE]},
    PRODUCTS_SEARCHED: {"query": "shoes", "results": 1},
    ORDER_COMPLETED: {"order_id": "100001", "total": 10, "revenue": 10, "currency": "USD",
                      "products": [_LINE]},
    CART_UPDATED: {"cart_id": _SC, "currency": "USD", "products": [_LINE],
                   "added": [_LINE], "removed": []},
}


def _sample(name: str, visitor: Visitor) -> Event:
    if name == "page":
        return page(_CONTEXT["url"], name="Product", visitor=visitor, context=_CONTEXT)
    if name == "identify":
        return identify({"email": "jane@example.com"}, visitor=visitor, context=_CONTEXT)
    return track(name, _SAMPLES.get(name, {}), visitor=visitor, context=_CONTEXT)


def _outcome(name: str, visitor: Visitor, config: Config, destination: str) -> str:
    rendered = render_event(_sample(name, visitor), config, [destination])
    if rendered.requests or rendered.deferred:
        return SENT  # deferred: sent once the delivery layer has what it looks up
    return rendered.skipped[0][1] if rendered.skipped else "no_request"


def reach(name: str, config: Config) -> dict[str, str]:
    """Where a complete ``name`` event (``page``, ``identify`` or a track event name)
    goes with ``config``: per destination ``sent``, ``known_visitor`` (once the visitor
    has an email, phone or user id), ``orangepill_identity`` (once the visitor has an
    Orangepill identity) or the renderer's reason (``not_configured``, ``no_mapping``,
    ...).  ``identify`` is only ever sent for a known visitor, so it is tried as one."""
    out: dict[str, str] = {}
    for destination in DESTINATIONS:
        first = _KNOWN if name == "identify" else _ANONYMOUS
        found = _outcome(name, first, config, destination)
        if found in ("no_contact_key", "no_identity") and first is _ANONYMOUS:
            if _outcome(name, _KNOWN, config, destination) == SENT:
                found = KNOWN_VISITOR
            else:
                found = _outcome(name, _KNOWN, config, destination)
        if found == "no_identity" and _outcome(name, _IDENTIFIED, config,
                                               destination) == SENT:
            found = WITH_IDENTITY
        out[destination] = found
    return out


def route_table(found: AppRoutes, config: Config, *, app: str | None = None
                ) -> dict[str, Any]:
    """The JSON document of an app's routes (see the module docstring and the README):
    ``format``, ``app``, ``framework``, ``installed`` (the app installs cdptrack),
    ``destinations`` (configured or not), ``when`` and ``reach`` (what the conditions
    and destination answers mean), ``notes`` and ``routes``, one row per route (see
    :func:`~cdptrack.observe.routes.plan_route`) whose events carry ``destinations``."""
    if found.observer is not None:
        options = found.observer.options
    else:  # what the middleware would read when installed: the CDPTRACK_* variables
        try:
            options = ObserveOptions.from_env()
        except ConfigError:
            options = ObserveOptions()
    cache: dict[str, dict[str, str]] = {}
    rows = []
    for route in found.routes:
        row = plan_route(route, options, found.observer)
        for request in row["requests"].values():
            for event in request["events"]:
                name = event["event"]
                if name not in cache:
                    cache[name] = reach(name, config)
                event["destinations"] = dict(cache[name])
        rows.append(row)
    enabled = set(config.enabled())
    return {
        "format": FORMAT,
        "app": app,
        "framework": found.framework,
        "installed": found.observer is not None if found.installed is None
        else found.installed,
        "destinations": {name: name in enabled for name in DESTINATIONS},
        "when": dict(WHEN),
        "reach": dict(REACH),
        "notes": list(found.notes),
        "routes": rows,
    }


def config_of(found: AppRoutes) -> Config | None:
    """The configuration the app's tracker was made with (``None``: the app hands
    cdptrack a tracker of its own, or does not install cdptrack)."""
    if found.observer is None:
        return None
    config = getattr(found.observer.tracker, "config", None)
    return config if isinstance(config, Config) else None


__all__ = ["FORMAT", "REACH", "config_of", "reach", "route_table"]
