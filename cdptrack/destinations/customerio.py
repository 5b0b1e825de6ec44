"""Customer.io Data Pipelines (spec 002): ``/track``, ``/identify``, ``/page``.

Known visitors are sent with ``userId``, anonymous ones with ``anonymousId`` (the ``sc``
cookie), never both on a ``track`` call: the spec's known and anonymous forms are a
``oneOf``.  ``identify`` carries both, which is what ties the anonymous history to the
person.  Every message carries ``messageId`` (stable across retries) and an ISO-8601
``timestamp``; the sender may coalesce messages into ``/batch`` (``batch_url``).
A ``track`` message is checked against its semantic event's schema in spec 002 before
it is returned (:mod:`.customerio_schema`): one the API would refuse is
``NotSent("invalid_field:<field>")``, never a request.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from .. import events as ev
from ..config import Config
from ..events import Event, iso_millis
from ..version import __version__
from .base import NotSent, WireRequest, basic_auth, derived_id, encode_json, join_url
from .customerio_schema import first_problem

DESTINATION = "customerio"
MAX_MESSAGE_BYTES = 32 * 1024

# Canonical events that have no Customer.io form (Yespo-only concepts).
_NOT_SENT = frozenset({ev.PRODUCT_IMPRESSIONS, ev.PRODUCT_UPDATED})
# cdptrack's own property names that mean nothing to Customer.io.
_INTERNAL_PROPERTIES = frozenset({"added", "removed", "cart_state_id", "event_tags",
                                  ev.PAGE_EVENT})


def render(event: Event, config: Config) -> list[WireRequest]:
    if not config.customerio_api_key:
        raise NotSent("not_configured", "CDPTRACK_CUSTOMERIO_API_KEY is not set")
    identity = _identity(event)
    if event.type == "identify":
        messages = [("identify", _identify(event))]
    elif event.type == "page":
        messages = [("page", _page(event))]
    elif event.event in _NOT_SENT:
        raise NotSent("no_mapping", f"Customer.io has no event for {event.label}")
    elif event.event == ev.CART_UPDATED:
        messages = [("track", m) for m in _cart_changes(event)]
        if not messages:
            raise NotSent("no_changed_lines", "Cart Updated named no added or removed line")
    else:
        messages = [("track", _track(event, event.event or "", _public(event.properties),
                                     event.message_id))]

    base = config.customerio_base_url
    headers = {
        "Content-Type": "application/json",
        "Authorization": _auth(config.customerio_api_key.reveal()),
    }
    if config.customerio_strict:
        headers["X-Strict-Mode"] = "1"
    requests = []
    for kind, message in messages:
        message.update(identity if kind != "identify" else {})
        if kind == "track":
            # Spec 002's schema for the semantic event: what the API would refuse with
            # a 400 is never queued (the reason names the field, counted per field).
            problem = first_problem(message)
            if problem is not None:
                raise NotSent(f"invalid_field:{problem[0]}", problem[1])
        message["context"] = _context(event)
        message["timestamp"] = iso_millis(event.timestamp)
        encoded = encode_json(message)
        if len(encoded) > MAX_MESSAGE_BYTES:
            raise NotSent("too_large", f"a message exceeds {MAX_MESSAGE_BYTES} bytes")
        requests.append(
            WireRequest(
                destination=DESTINATION,
                method="POST",
                url=join_url(base, kind),
                headers=headers,
                json=message,
                message_id=message["messageId"],
                batch_url=join_url(base, "batch"),
                label=message.get("event") or kind,
                encoded=encoded,
            )
        )
    return requests


@functools.lru_cache(maxsize=8)
def _auth(api_key: str) -> str:
    return basic_auth(api_key, "")


def _identity(event: Event) -> dict[str, str]:
    visitor = event.visitor
    if visitor.user_id:
        return {"userId": visitor.user_id}
    if visitor.sc:
        return {"anonymousId": visitor.sc}
    raise NotSent("no_identity", "Customer.io needs visitor.user_id or visitor.sc")


def _track(event: Event, name: str, properties: dict[str, Any], message_id: str
           ) -> dict[str, Any]:
    return {"type": "track", "event": name, "properties": properties, "messageId": message_id}


def _page(event: Event) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "page"}
    if event.name:
        message["name"] = event.name
    properties = _public(event.properties)
    if "url" not in properties and event.context.get("url"):
        properties["url"] = event.context["url"]
    message["properties"] = properties
    message["messageId"] = event.message_id
    return message


def _identify(event: Event) -> dict[str, Any]:
    visitor = event.visitor
    traits: dict[str, Any] = {}
    for key in ("email", "phone", "name"):
        value = getattr(visitor, key)
        if value:
            traits[key] = value
    traits.update(event.traits)
    message: dict[str, Any] = {"type": "identify"}
    if visitor.user_id:
        message["userId"] = visitor.user_id
    if visitor.sc:
        message["anonymousId"] = visitor.sc
    message["traits"] = traits
    message["messageId"] = event.message_id
    return message


def _cart_changes(event: Event) -> list[dict[str, Any]]:
    """Cart Updated → one Product Added / Product Removed per changed line."""
    props = event.properties
    shared = {k: props[k] for k in ("cart_id", "currency") if props.get(k) is not None}
    out = []
    for field, name in (("added", ev.PRODUCT_ADDED), ("removed", ev.PRODUCT_REMOVED)):
        for index, line in enumerate(props.get(field) or []):
            properties = {**shared, **_public(line)}
            message_id = derived_id(event.message_id, field, str(index))
            out.append(_track(event, name, properties, message_id))
    return out


def _public(props: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in props.items() if k not in _INTERNAL_PROPERTIES and v is not None}


def _context(event: Event) -> dict[str, Any]:
    source = event.context
    context: dict[str, Any] = {}
    if source.get("ip"):
        context["ip"] = source["ip"]
    if source.get("user_agent"):
        context["userAgent"] = source["user_agent"]
    page = {k: source[k] for k in ("url", "path", "referrer", "title") if source.get(k)}
    if page:
        context["page"] = page
    for key, value in source.items():
        if key not in {"ip", "user_agent", "url", "path", "referrer", "title"}:
            context.setdefault(key, value)
    context["library"] = {"name": "cdptrack", "version": __version__}
    return context
