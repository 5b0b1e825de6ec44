"""Orangepill identities with the Infobip People extension (spec 000).

Track and page events become custom person events,
``POST /identities/{id}/person/event/{event}`` with ``{"data": {"properties": {...}}}``;
``identify`` becomes a person update, ``PATCH /identities/{id}/person``.  Both need the
visitor's Orangepill identity.  The ``idempotency-key`` is the event's
``message_id``, so every retry of a request carries the same key and runs only once.

A signed-in visitor (``user_id``) without ``orangepill_identity`` raises
:class:`~.base.Deferred`: the delivery layer finds or creates the identity
(:mod:`cdptrack.delivery.identities`) with the requests built here,
:func:`create_person` (``POST /identities/person``, spec 000 "Create Person and
Identity") and :func:`find_person` (``GET /identities/persons`` with Infobip's
``identifier``/``type`` parameters, spec 000 "List Infobip CDP Persons"), and renders
the event again with the id it got.
"""

from __future__ import annotations

import functools
import hashlib
import re
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

from .. import events as ev
from ..config import Config
from ..events import Event
from .base import Deferred, NotSent, WireRequest, join_url, skip_page_with_own_event

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
        if event.visitor.user_id and config.orangepill_create_identities:
            raise Deferred("no_identity", "the identity of this user is looked up or "
                           "created before the event is sent")
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


_PERSON_NAMESPACE = uuid.UUID("0c7b8f52-2a51-4f7e-9d3e-4b1c5a9e6f21")


def realm_of(config: Config) -> str:
    """Which Orangepill realm the configured key belongs to, without the key: the first
    16 hex digits of its SHA-256.  Identity ids are remembered per realm, so a new key
    (another realm) never reuses ids from the old one.  Raises ``NotSent`` when no key
    is set."""
    if not config.orangepill_api_key:
        raise NotSent("not_configured", "CDPTRACK_ORANGEPILL_API_KEY is not set")
    return hashlib.sha256(config.orangepill_api_key.reveal().encode("utf-8")).hexdigest()[:16]


def person_idempotency_key(realm: str, user_id: str) -> str:
    """The ``idempotency-key`` of the create request for the shop's user ``user_id``: a
    UUID derived from the realm (:func:`realm_of`) and the user id only, so every retry,
    every process of a fleet and every restart asks to create the same person with the
    same key, and Orangepill answers with the identity it created the first time
    (api-facts: "a repeated key returns the original response")."""
    return str(uuid.uuid5(_PERSON_NAMESPACE, f"{realm}\x1fperson\x1f{user_id}"))


def can_create_person(event: Event) -> bool:
    """Whether ``event``'s visitor can become a new person: a user id and an e-mail or a
    phone (what Infobip finds a person by)."""
    visitor = event.visitor
    return bool(visitor.user_id and (visitor.email or visitor.phone))


def create_person(event: Event, config: Config) -> WireRequest:
    """``POST /identities/person`` for ``event``'s visitor (spec 000, "Create Person and
    Identity"): ``{"type": "person", "person": {firstName, lastName, contactInformation:
    {email: [{address}], phone: [{number}]}, ...}}``, country and currency left to the
    realm's defaults.  The answer is the new ``Identity``, whose ``id`` is the visitor's
    ``orangepill_identity``.  ``message_id`` is the idempotency key."""
    realm = realm_of(config)
    user_id = event.visitor.user_id or ""
    key = person_idempotency_key(realm, user_id)
    assert config.orangepill_api_key is not None
    return WireRequest(
        destination=DESTINATION,
        method="POST",
        url=join_url(config.orangepill_url, "identities/person"),
        headers={
            "Content-Type": "application/json",
            "x-api-key": config.orangepill_api_key.reveal(),
            "idempotency-key": key,
        },
        json={"type": "person", "person": _person(event)},
        message_id=key,
        label="createPerson",
    )


def find_person(event: Event, config: Config) -> WireRequest | None:
    """``GET /identities/persons?identifier=...&type=EMAIL`` (or ``PHONE``): the Infobip
    person holding the visitor's e-mail or phone (spec 000 "List Infobip CDP Persons"
    passes Infobip's URL parameters; Infobip's "Get a single person" takes
    ``identifier`` and ``type``).  Its ``externalId`` is the Orangepill identity id (spec
    000 "Fields mapping").  None when the visitor has neither."""
    visitor = event.visitor
    if visitor.email:
        query = {"identifier": visitor.email, "type": "EMAIL"}
    elif visitor.phone:
        query = {"identifier": visitor.phone, "type": "PHONE"}
    else:
        return None
    assert config.orangepill_api_key is not None
    return WireRequest(
        destination=DESTINATION,
        method="GET",
        url=join_url(config.orangepill_url, "identities/persons") + "?" + urlencode(query),
        headers={"x-api-key": config.orangepill_api_key.reveal()},
        json=None,
        message_id=person_idempotency_key(realm_of(config), visitor.user_id or ""),
        label="findPerson",
    )


def created_identity(answer: Any) -> str | None:
    """The ``id`` of the ``Identity`` a create request answered with (spec 000's
    response example: ``{"id": "634b56217f6a7b0be52dffbd", "type": "person", ...}``);
    None when the answer holds none."""
    if isinstance(answer, Mapping):
        value = answer.get("id")
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value):
            return str(value)
    return None


def found_identity(answer: Any) -> str | None:
    """The identity id in a person lookup's answer: the ``externalId`` of the Infobip
    person (spec 000 "Fields mapping": Orangepill ``id`` = Infobip ``externalId``), from
    one person, a list of persons, or a list under ``persons``/``data``/``results``; the
    first person that has one.  None when no person has one (a person never linked to
    an identity)."""
    if isinstance(answer, Mapping):
        for name in ("persons", "data", "results"):
            if isinstance(answer.get(name), list):
                return found_identity(answer[name])
        value = answer.get("externalId")
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value):
            return str(value)
        return None
    if isinstance(answer, list):
        for item in answer:
            found = found_identity(item) if isinstance(item, Mapping) else None
            if found:
                return found
    return None


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


@functools.lru_cache(maxsize=4096)  # property names repeat: convert each once
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
    """``value`` with every mapping key in camelCase (:func:`camel`), at any depth."""
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return value
    if isinstance(value, Mapping):
        return {camel(str(k)): camel_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [camel_keys(v) for v in value]
    return value
