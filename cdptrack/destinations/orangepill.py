"""Orangepill identities with the Infobip People extension (spec 000).

Track and page events become custom person events,
``POST /identities/{id}/person/event/{event}`` with ``{"data": {"properties": {...}}}``;
``identify`` becomes a person update, ``PATCH /identities/{id}/person``.  Both need the
visitor's Orangepill identity.  The ``idempotency-key`` is the event's
``message_id``, so every retry of a request carries the same key and runs only once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from .. import events as ev
from ..config import Config
from ..events import Event
from .base import NotSent, WireRequest, join_url, skip_page_with_own_event

DESTINATION = "orangepill"

_EVENT_NAMES = {
    ev.PRODUCT_VIEWED: "productViewed",
    ev.PRODUCT_LIST_VIEWED: "categoryViewed",
    ev.CART_UPDATED: "cartUpdated",
    ev.ORDER_COMPLETED: "orderCompleted",
    ev.ORDER_UPDATED: "orderUpdated",
    ev.ORDER_DELIVERED: "orderDelivered",
    ev.ORDER_CANCELLED: "orderCancelled",
    ev.PRODUCT_ADDED_TO_WISHLIST: "addedToWishlist",
    ev.PRODUCTS_SEARCHED: "productsSearched",
}
# Yespo-only concepts with no person-event meaning.
_NOT_SENT = frozenset({ev.PRODUCT_IMPRESSIONS, ev.PRODUCT_UPDATED})
_INTERNAL_PROPERTIES = frozenset({"cart_state_id", "event_tags", ev.PAGE_EVENT})

# identify traits → Infobip person fields (everything else goes to customAttributes).
_PERSON_FIELDS = {
    "first_name": "firstName",
    "last_name": "lastName",
    "middle_name": "middleName",
    "address": "address",
    "city": "city",
    "country": "country",
    "gender": "gender",
    "birth_date": "birthDate",
    "birthday": "birthDate",
    "avatar": "profilePicture",
    "profile_picture": "profilePicture",
}
_CONTACT_TRAITS = frozenset({"email", "phone", "name", "tags"})


def render(event: Event, config: Config) -> list[WireRequest]:
    if not config.orangepill_api_key:
        raise NotSent("not_configured", "CDPTRACK_ORANGEPILL_API_KEY is not set")
    identity = event.visitor.orangepill_identity
    if not identity:
        raise NotSent("no_identity", "Orangepill needs visitor.orangepill_identity")
    base = join_url(config.orangepill_url, f"identities/{quote(identity, safe='')}/person")

    if event.type == "identify":
        method, url, body, label = "PATCH", base, _person(event), "personUpdate"
        if not body:
            raise NotSent("nothing_to_update", "identify carried no person fields")
    else:
        if event.type == "page":
            skip_page_with_own_event(event)
            name = "pageViewed"
            properties = dict(event.properties)
            if event.name:
                properties.setdefault("name", event.name)
            if "url" not in properties and event.context.get("url"):
                properties["url"] = event.context["url"]
        elif event.event in _NOT_SENT:
            raise NotSent("no_mapping", f"Orangepill has no person event for {event.label}")
        else:
            name = _EVENT_NAMES.get(event.event or "") or camel_event(event.event or "")
            properties = dict(event.properties)
        properties = {k: v for k, v in properties.items()
                      if k not in _INTERNAL_PROPERTIES and v is not None}
        method, label = "POST", name
        url = f"{base}/event/{quote(name, safe='')}"
        body = {"data": {"properties": camel_keys(properties)}}

    assert config.orangepill_api_key is not None
    return [
        WireRequest(
            destination=DESTINATION,
            method=method,
            url=url,
            headers={
                "Content-Type": "application/json",
                "x-api-key": config.orangepill_api_key.reveal(),
                "idempotency-key": idempotency_key(event.message_id),
            },
            json=body,
            message_id=event.message_id,
            label=label,
        )
    ]


def idempotency_key(message_id: str) -> str:
    """The event's ``message_id`` itself: one event makes at most one Orangepill request,
    and every retry of that request carries the same key, so it runs only once."""
    return message_id


def _person(event: Event) -> dict[str, Any]:
    traits = {**{k: v for k in ("email", "phone", "name")
                 if (v := getattr(event.visitor, k))}, **event.traits}
    person: dict[str, Any] = {}
    name = traits.get("name")
    if name and not traits.get("first_name") and not traits.get("last_name"):
        first, _, last = str(name).strip().partition(" ")
        person["firstName"] = first
        if last:
            person["lastName"] = last.strip()
    custom: dict[str, Any] = {}
    for key, value in traits.items():
        if value is None or key in _CONTACT_TRAITS:
            continue
        if key in _PERSON_FIELDS:
            person[_PERSON_FIELDS[key]] = value
        else:
            custom[camel(key)] = value
    contact: dict[str, Any] = {}
    if traits.get("email"):
        contact["email"] = [{"address": str(traits["email"])}]
    if traits.get("phone"):
        contact["phone"] = [{"number": str(traits["phone"])}]
    if contact:
        person["contactInformation"] = contact
    if isinstance(traits.get("tags"), list):
        person["tags"] = [str(t) for t in traits["tags"]]
    if custom:
        person["customAttributes"] = custom
    return person


_WORD = re.compile(r"[A-Za-z0-9]+")


def camel(name: str) -> str:
    """``product_id`` → ``productId``; names already in camelCase are kept."""
    if "_" not in name and " " not in name and "-" not in name:
        return name[:1].lower() + name[1:] if name[:1].isupper() and name[1:2].islower() \
            else name
    words: list[str] = _WORD.findall(name)
    if not words:
        return name
    return words[0].lower() + "".join(w[:1].upper() + w[1:] for w in words[1:])


def camel_event(name: str) -> str:
    """``Checkout Started`` → ``checkoutStarted``; ``addToCart`` stays ``addToCart``."""
    words: list[str] = _WORD.findall(name)
    if len(words) <= 1:
        return camel(name) if words else "event"
    return words[0][:1].lower() + words[0][1:] + "".join(
        w[:1].upper() + w[1:] for w in words[1:]
    )


def camel_keys(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {camel(str(k)): camel_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [camel_keys(v) for v in value]
    return value
