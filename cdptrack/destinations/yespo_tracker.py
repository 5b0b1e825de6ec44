"""Yespo web tracker (spec 003): ``POST {tracker_url}`` with ``GeneralInfo`` and one event.

One event per request (no batch form).  ``GeneralInfo`` carries the visitor and the ``sc``
cookie; product ``tags`` become ``tag_<name>`` fields and the event-level ``event_tags``
become the ``Tags`` object.  The StatusCart ``GUID`` is derived from the cart's content,
so it changes whenever the content changes and stays the same when it does not.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from typing import Any

from .. import events as ev
from ..config import Config
from ..events import Event, epoch_millis
from .base import NotSent, WireRequest, basic_auth

DESTINATION = "yespo_tracker"

_EVENT_NAMES = {
    ev.PRODUCT_VIEWED: "ProductPage",
    ev.PRODUCT_LIST_VIEWED: "CategoryPage",
    ev.CART_UPDATED: "StatusCart",
    ev.ORDER_COMPLETED: "PurchasedItems",
    ev.PRODUCT_ADDED_TO_WISHLIST: "AddToWishlist",
    ev.PRODUCTS_SEARCHED: "SearchRequest",
    ev.PRODUCT_IMPRESSIONS: "ProductImpressions",
    ev.PRODUCT_UPDATED: "ProductUpdate",
}


def render(event: Event, config: Config) -> list[WireRequest]:
    if not config.yespo_site_id:
        raise NotSent("not_configured", "CDPTRACK_YESPO_SITE_ID is not set")
    if event.type == "identify":
        yespo_event = "CustomerData"
    elif event.type == "track" and event.event in _EVENT_NAMES:
        yespo_event = _EVENT_NAMES[event.event]
    else:
        raise NotSent("no_mapping", f"the tracker has no event for {event.label}")

    props = event.properties
    if yespo_event == "ProductUpdate":
        # A catalogue change, not a visitor's action: GeneralInfo carries no visitor.
        body: dict[str, Any] = {
            "GeneralInfo": {"eventName": yespo_event, "siteId": config.yespo_site_id},
            "ProductUpdate": [_feed_product(p) for p in _products(props)],
        }
    else:
        if not event.visitor.sc:
            raise NotSent("no_sc_cookie", "the tracker needs the visitor's sc cookie")
        body = {"GeneralInfo": _general_info(event, yespo_event, config.yespo_site_id)}
        builder = _BODIES.get(yespo_event)
        if builder is not None:
            key, content = builder(event)
            tags = props.get("event_tags")
            if isinstance(tags, Mapping) and isinstance(content, dict):
                content["Tags"] = {str(k): _str_list(v) for k, v in tags.items()}
            body[key] = content

    headers = {"Content-Type": "application/json"}
    if config.yespo_tracker_auth and config.yespo_api_key:
        headers["Authorization"] = basic_auth("cdptrack", config.yespo_api_key.reveal())
    return [
        WireRequest(
            destination=DESTINATION,
            method="POST",
            url=config.yespo_tracker_url,
            headers=headers,
            json=body,
            message_id=event.message_id,
            label=yespo_event,
        )
    ]


def _general_info(event: Event, name: str, site_id: str) -> dict[str, Any]:
    visitor = event.visitor
    traits = event.traits
    info: dict[str, Any] = {"eventName": name, "siteId": site_id,
                            "datetime": epoch_millis(event.timestamp)}
    fields = (
        ("externalCustomerId", visitor.customer_id),
        ("user_phone", _trait(traits, "phone") or visitor.phone),
        ("user_email", _trait(traits, "email") or visitor.email),
        ("user_name", _trait(traits, "name") or _full_name(traits) or visitor.name),
        ("user_es_contact_id", visitor.yespo_contact_id),
    )
    for key, value in fields:
        if value:
            info[key] = value
    info["cookies"] = {"sc": visitor.sc}
    return info


# --- event bodies --------------------------------------------------------------------


def _product_page(event: Event) -> tuple[str, dict[str, Any]]:
    return "ProductPage", {"Product": _page_product(event.properties, "ProductPage")}


def _wishlist(event: Event) -> tuple[str, dict[str, Any]]:
    return "AddToWishlist", {"Product": _page_product(event.properties, "AddToWishlist")}


def need_price(line: Mapping[str, Any], what: str) -> Any:
    """``line["price"]``; spec 003 marks the price of ProductPage, AddToWishlist,
    StatusCart and PurchasedItems products *Required*, and the tracker answers 400
    without it, so a product without one is ``NotSent("missing_field:price")``."""
    price = line.get("price")
    if price is None or price == "":
        raise NotSent("missing_field:price", f"{what} needs the product's price")
    return price


def _category(event: Event) -> tuple[str, dict[str, Any]]:
    return "CategoryPage", {"Category": {"categoryKey": category_key(event.properties)}}


def _status_cart(event: Event) -> tuple[str, dict[str, Any]]:
    props = event.properties
    currency = props.get("currency")
    products = []
    for line in _products(props):
        item: dict[str, Any] = {"productKey": _product_key(line)}
        item["price"] = need_price(line, "a StatusCart line")
        _put(item, "discount", line.get("discount"))
        item["quantity"] = line.get("quantity", 1)
        _put(item, "price_currency_code", line.get("currency") or currency)
        item.update(_tag_fields(line))
        products.append(item)
    return "StatusCart", {"GUID": cart_guid(event), "Products": products}


def _purchased(event: Event) -> tuple[str, dict[str, Any]]:
    props = event.properties
    order_id = props.get("order_id")
    if not order_id:
        raise NotSent("missing_field:order_id", "PurchasedItems needs properties.order_id")
    products = []
    for line in _products(props):
        item: dict[str, Any] = {"product_id": _product_key(line)}
        item["unit_price"] = money(need_price(line, "a PurchasedItems line"))
        item["quantity"] = line.get("quantity", 1)
        products.append(item)
    if not products:  # spec 003: Products is required, a purchase of nothing is refused
        raise NotSent("missing_field:products", "PurchasedItems needs the order's lines")
    return "PurchasedItems", {"Products": products, "OrderNumber": order_id}


def _search(event: Event) -> tuple[str, dict[str, Any]]:
    props = event.properties
    query = props.get("query")
    if query is None:
        raise NotSent("missing_field:query", "SearchRequest needs properties.query")
    body: dict[str, Any] = {"search": str(query)}
    results = props.get("results")
    if results is not None:
        body["isFound"] = 1 if results > 0 else 0
    return "SearchRequest", body


def _impressions(event: Event) -> tuple[str, dict[str, Any]]:
    props = event.properties
    default_container = props.get("container_type")
    products = []
    for line in _products(props):
        container = line.get("container_type") or default_container
        item: dict[str, Any] = {"product_id": _product_key(line)}
        if container is not None:
            item["container_type"] = str(container)
        products.append(item)
    # eS.JS and spec 003 name the body "ProductImpression" (singular) for this event.
    return "ProductImpression", {"Products": products}


_BODIES = {
    "ProductPage": _product_page,
    "AddToWishlist": _wishlist,
    "CategoryPage": _category,
    "StatusCart": _status_cart,
    "PurchasedItems": _purchased,
    "SearchRequest": _search,
    "ProductImpressions": _impressions,
}


# --- products ------------------------------------------------------------------------


def _page_product(props: Mapping[str, Any], what: str) -> dict[str, Any]:
    product: dict[str, Any] = {"productKey": _product_key(props)}
    price = need_price(props, what)
    currency = props.get("currency")
    product["price"] = f"{money(price)} {currency}" if currency else money(price)
    if props.get("in_stock") is not None:
        product["isInStock"] = "1" if props["in_stock"] else "0"
    product.update(_tag_fields(props))
    return product


def _feed_product(line: Mapping[str, Any]) -> dict[str, Any]:
    """A ProductUpdate item: the feed's field names (``unit_price``, ``imgurl``...)."""
    item: dict[str, Any] = {}
    for key in ("brand", "name", "description"):
        _put(item, key, line.get(key))
    item["product_id"] = _product_key(line)
    _put(item, "imgurl", line.get("image_url"))
    _put(item, "url", line.get("url"))
    if line.get("price") is not None:
        item["unit_price"] = money(line["price"])
    if line.get("in_stock") is not None:
        item["isInStock"] = "1" if line["in_stock"] else "0"
    _put(item, "price_currency_code", line.get("currency"))
    _put(item, "category", line.get("category"))
    category_id = line.get("category_id")
    if category_id is not None:
        item["category_id"] = _str_list(category_id)
    item.update(_tag_fields(line))
    return item


def _product_key(props: Mapping[str, Any]) -> str:
    key = props.get("product_id") or props.get("sku")
    if not key:
        raise NotSent("missing_field:product_id", "a product needs product_id (or sku)")
    return str(key)


def _products(props: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    products = props.get("products")
    return list(products) if isinstance(products, list) else []


def _tag_fields(props: Mapping[str, Any]) -> dict[str, list[str]]:
    tags = props.get("tags")
    if not isinstance(tags, Mapping):
        return {}
    return {f"tag_{name}": _str_list(values) for name, values in tags.items()}


def category_key(props: Mapping[str, Any]) -> str:
    """The category's feed id: ``category_id``, else ``list_id``, else ``category``."""
    for key in ("category_id", "list_id", "category"):
        value = props.get(key)
        if isinstance(value, list):
            value = value[-1] if value else None
        if value:
            return str(value)
    raise NotSent("missing_field:category_id",
                  "a category page needs category_id, list_id or category")


def cart_guid(event: Event) -> str:
    """The StatusCart GUID: ``cart_state_id`` when given, else a hash of the content.

    The hash covers the visitor and each line's product, quantity and price, so the GUID
    changes whenever the cart's content changes and stays the same when it does not.
    """
    explicit = event.properties.get("cart_state_id")
    if explicit:
        return str(explicit)
    digest = hashlib.sha256()
    digest.update((event.visitor.sc or event.visitor.user_id or "").encode())
    digest.update(str(event.properties.get("cart_id") or "").encode())
    lines = sorted(
        (str(p.get("product_id") or p.get("sku")), str(p.get("variant") or ""),
         str(p.get("quantity", 1)), str(p.get("price")))
        for p in _products(event.properties)
    )
    for line in lines:
        digest.update("\x1f".join(line).encode() + b"\x1e")
    return str(uuid.UUID(bytes=digest.digest()[:16], version=4)).upper()


# --- values --------------------------------------------------------------------------


def money(value: Any) -> str:
    """Prices as the tracker's examples write them: ``754``, ``201.95``, ``341.80``."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int) or value.is_integer():
        return str(int(value))
    return f"{value:.2f}" if round(value, 2) == value else repr(value)


def _str_list(value: Any) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [str(value)]


def _put(target: dict[str, Any], key: str, value: Any) -> None:
    if value is not None and value != "":
        target[key] = value


def _trait(traits: Mapping[str, Any], key: str) -> str | None:
    value = traits.get(key)
    return str(value) if value not in (None, "") else None


def _full_name(traits: Mapping[str, Any]) -> str | None:
    parts = [str(traits[k]) for k in ("first_name", "last_name") if traits.get(k)]
    return " ".join(parts) or None
