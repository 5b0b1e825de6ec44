"""Yespo generic events (spec 001): ``POST {api_url}/event`` with Basic auth.

Body ``{"eventTypeKey", "keyValue", "params": [{"name", "value"}]}``: every value is a
string, objects and lists JSON-encoded into it.  ``keyValue`` is the contact key (email,
then phone, then external id); an event without one cannot be attributed and is not sent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from .. import events as ev
from ..config import Config
from ..events import Event
from .base import (
    NotSent,
    WireRequest,
    basic_auth,
    encode_json,
    join_url,
    skip_page_with_own_event,
)
from .yespo_tracker import cart_guid, category_key

DESTINATION = "yespo_events"
MAX_BODY_BYTES = 20 * 1024
MAX_KEY_VALUE = 300

_ORDER_EVENTS = {
    ev.ORDER_COMPLETED: ("orderCreated", "INITIALIZED"),
    ev.ORDER_UPDATED: ("orderUpdated", None),
    ev.ORDER_DELIVERED: ("orderDelivered", "DELIVERED"),
    ev.ORDER_CANCELLED: ("orderCancelled", "CANCELLED"),
}
_TRACK_EVENTS = {
    ev.PRODUCT_VIEWED: "productViewed",
    ev.PRODUCT_LIST_VIEWED: "productCategoryViewed",
    ev.CART_UPDATED: "cartUpdated",
}

Param = dict[str, str]

# Yespo's order statuses (spec 001: orderCreated "Creates the order with the status
# indicated", its examples send INITIALIZED; orderDelivered / orderCancelled set
# DELIVERED / CANCELLED) and the words shops use for each (Django Oscar "Pending",
# "Being processed", "Complete", "Cancelled"; Saleor "unfulfilled", "fulfilled",
# "canceled"; WooCommerce "processing", "on-hold", "completed", "refunded").
ORDER_STATUSES = ("INITIALIZED", "IN_PROGRESS", "DELIVERED", "CANCELLED")
_STATUS_WORDS: dict[str, str] = {
    **dict.fromkeys((
        "initialized", "initialised", "created", "new", "pending", "pending_payment",
        "awaiting_payment", "unpaid", "placed", "open", "draft", "unconfirmed",
        "unfulfilled", "on_hold", "received", "submitted", "authorized", "authorised",
    ), "INITIALIZED"),
    **dict.fromkeys((
        "in_progress", "processing", "being_processed", "paid", "confirmed", "accepted",
        "partially_fulfilled", "fulfilled", "packed", "shipped", "dispatched",
        "in_transit", "ready_for_pickup", "ready", "sent", "partially_shipped",
    ), "IN_PROGRESS"),
    **dict.fromkeys((
        "delivered", "complete", "completed", "done", "finished", "closed", "picked_up",
    ), "DELIVERED"),
    **dict.fromkeys((
        "cancelled", "canceled", "refunded", "failed", "returned", "expired", "voided",
        "void", "rejected", "declined", "partially_returned",
    ), "CANCELLED"),
}


def order_status(value: Any, default: str | None) -> str | None:
    """A shop's order status as one of :data:`ORDER_STATUSES` (``"Pending"`` →
    ``INITIALIZED``, ``"Being processed"`` → ``IN_PROGRESS``, ``"canceled"`` →
    ``CANCELLED``); ``default`` (the event's own status) for words it does not know."""
    if value is None:
        return default
    text = str(getattr(value, "value", value)).strip()
    if text.upper() in ORDER_STATUSES:
        return text.upper()
    return _STATUS_WORDS.get(re.sub(r"[\s\-]+", "_", text.lower()), default)


def render(event: Event, config: Config) -> list[WireRequest]:
    if not config.yespo_api_key:
        raise NotSent("not_configured", "CDPTRACK_YESPO_API_KEY is not set")
    key_value = event.visitor.contact_key
    if not key_value:
        raise NotSent("no_contact_key", "Yespo needs the visitor's email, phone or external id")
    if len(key_value) > MAX_KEY_VALUE:
        raise NotSent("invalid_contact_key", f"keyValue is longer than {MAX_KEY_VALUE}")

    params = _contact_params(event)
    if event.type == "page":
        skip_page_with_own_event(event)
        event_type = "pageViewed"
        params.append(_param("page", {"location": _url(event)}))
    elif event.type == "track" and event.event in _ORDER_EVENTS:
        event_type, default_status = _ORDER_EVENTS[event.event]
        params.extend(_order_params(event, default_status))
    elif event.type == "track" and event.event in _TRACK_EVENTS:
        event_type = _TRACK_EVENTS[event.event]
        params.extend(_customer_id_param(event))
        params.extend(_RECOMMENDATION_PARAMS[event_type](event))
    else:
        raise NotSent("no_mapping", f"Yespo v1/event has no event for {event.label}")

    body: dict[str, Any] = {"eventTypeKey": event_type, "keyValue": key_value, "params": params}
    encoded = encode_json(body)
    if len(encoded) > MAX_BODY_BYTES:
        # ``items`` repeats what ``products`` says; drop it before giving up on an order.
        body["params"] = [p for p in params if p["name"] != "items"]
        encoded = encode_json(body)
        if len(encoded) > MAX_BODY_BYTES:
            raise NotSent("too_large", f"the request body exceeds {MAX_BODY_BYTES} bytes")
    assert config.yespo_api_key is not None
    return [
        WireRequest(
            destination=DESTINATION,
            method="POST",
            url=join_url(config.yespo_api_url, "event"),
            headers={
                "Content-Type": "application/json",
                "Authorization": basic_auth("cdptrack", config.yespo_api_key.reveal()),
            },
            json=body,
            message_id=event.message_id,
            label=event_type,
            encoded=encoded,
        )
    ]


def _contact_params(event: Event) -> list[Param]:
    params = []
    phone = event.traits.get("phone") or event.visitor.phone
    email = event.traits.get("email") or event.visitor.email
    if phone:
        params.append(_param("phone", phone))
    if email:
        params.append(_param("email", email))
    return params


def _customer_id_param(event: Event) -> list[Param]:
    customer_id = event.visitor.customer_id
    return [_param("externalCustomerId", customer_id)] if customer_id else []


def _order_params(event: Event, default_status: str | None) -> list[Param]:
    props = event.properties
    order_id = props.get("order_id")
    if not order_id:
        raise NotSent("missing_field:order_id", "an order event needs properties.order_id")
    params = [_param("externalOrderId", order_id)]
    params.extend(_customer_id_param(event))
    total = props.get("total", props.get("revenue"))
    if total is None:
        total = _lines_total(props.get("products"))
    if total is not None:
        params.append(_param("totalCost", str(float(total))))
    elif event.event == ev.ORDER_COMPLETED:  # spec 001: orderCreated needs totalCost
        raise NotSent("missing_field:total", "orderCreated needs the order's total")
    status = order_status(props.get("status"), default_status)
    if status is None and props.get("status") is not None:
        status = "IN_PROGRESS"  # an update with a word we do not know: still open
    if status:
        params.append(_param("status", status))
    date = props.get("date") or event.timestamp.strftime("%Y-%m-%dT%H:%M:%S")
    params.append(_param("date", date))
    products = props.get("products")
    if isinstance(products, list) and products:
        items = [_order_item(p, props.get("currency")) for p in products]
        params.append(_param("items", items))
        params.append(_param("products", {"array": items}))
    currency = props.get("currency")
    if currency:
        params.append(_param("currency", currency))
    return params


def _lines_total(products: Any) -> float | None:
    """The sum of price times quantity over the order's lines; ``None`` unless every line
    has a price."""
    if not isinstance(products, list) or not products:
        return None
    total = 0.0
    for line in products:
        price = line.get("price") if isinstance(line, Mapping) else None
        if not isinstance(price, (int, float)) or isinstance(price, bool):
            return None
        quantity = line.get("quantity", 1)
        total += price * (quantity if isinstance(quantity, (int, float)) else 1)
    return round(total, 2)


def _order_item(line: Mapping[str, Any], currency: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"externalItemId": _product_id(line)}
    for source, target in (("name", "name"), ("category", "category"),
                           ("quantity", "quantity"), ("price", "cost"), ("url", "url"),
                           ("image_url", "imageUrl"), ("description", "description")):
        value = line.get(source)
        if value is not None and value != "":
            item[target] = value
    return item


def _product_viewed(event: Event) -> list[Param]:
    props = event.properties
    product: dict[str, Any] = {"productId": _product_id(props)}
    for source, target in (("price", "price"), ("quantity", "quantity"),
                           ("name", "name"), ("category", "category")):
        if props.get(source) is not None:
            product[target] = props[source]
    if props.get("in_stock") is not None:
        product["isInStock"] = 1 if props["in_stock"] else 0
    product.update(_tag_arrays(props))
    params = [_param("product", product)]
    if props.get("currency"):
        params.append(_param("currencyCode", props["currency"]))
    return params


def _category_viewed(event: Event) -> list[Param]:
    try:
        category = category_key(event.properties)
    except NotSent:
        raise NotSent("missing_field:category_id",
                      "a category event needs category_id or category") from None
    return [_param("category", {"productCategoryId": category})]


def _cart_updated(event: Event) -> list[Param]:
    props = event.properties
    lines = []
    for line in props.get("products") or []:
        item: dict[str, Any] = {"productId": _product_id(line),
                                "quantity": line.get("quantity", 1)}
        for key in ("price", "name", "category"):
            if line.get(key) is not None:
                item[key] = line[key]
        if line.get("discount") is not None:
            item["discount"] = str(line["discount"])
        item.update(_tag_arrays(line))
        lines.append(item)
    params = [_param("products", lines)]
    if props.get("currency"):
        params.append(_param("currencyCode", props["currency"]))
    # The same id as the tracker's StatusCart GUID: one id per cart content.
    params.append(_param("recycleStateId", cart_guid(event).lower()
                         if not props.get("cart_state_id") else props["cart_state_id"]))
    return params


_RECOMMENDATION_PARAMS = {
    "productViewed": _product_viewed,
    "productCategoryViewed": _category_viewed,
    "cartUpdated": _cart_updated,
}


def _param(name: str, value: Any) -> Param:
    if isinstance(value, str):
        text = value
    elif isinstance(value, (dict, list)):
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    else:
        text = str(value)
    return {"name": name, "value": text}


def _product_id(props: Mapping[str, Any]) -> str:
    value = props.get("product_id") or props.get("sku")
    if not value:
        raise NotSent("missing_field:product_id", "a product needs product_id (or sku)")
    return str(value)


def _tag_arrays(props: Mapping[str, Any]) -> dict[str, list[str]]:
    tags = props.get("tags")
    return {str(k): list(v) for k, v in tags.items()} if isinstance(tags, Mapping) else {}


def _url(event: Event) -> str:
    url = event.properties.get("url") or event.context.get("url")
    if not url:
        raise NotSent("missing_field:url", "a page event needs properties.url or context.url")
    return str(url)
