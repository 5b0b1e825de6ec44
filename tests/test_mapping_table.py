"""Each row of the design's mapping table: what every canonical event becomes at each API."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cdptrack.config import Config
from cdptrack.destinations import render_event
from cdptrack.events import Event

CONFIG = Config(yespo_site_id="SITE", yespo_api_key="yespo-secret-key",
                customerio_api_key="cio-secret-key", orangepill_api_key="op-secret-key")
VISITOR = {"sc": "CDA68358-94FB-4D83-9655-3FEB3C4114A3", "user_id": "u-17",
           "email": "jane@example.com", "phone": "380501234567",
           "orangepill_identity": "634b56217f6a7b0be52dffbd"}
PRODUCT = {"product_id": "72354", "price": 754, "currency": "USD", "quantity": 1}
ORDER = {"order_id": "o-1", "total": 754, "currency": "USD", "products": [PRODUCT]}

# (canonical type, event name, properties) → expected name per destination (None = no request)
ROWS: list[tuple[str, str | None, dict[str, Any], dict[str, str | None]]] = [
    ("page", None, {"url": "https://shop.example/"},
     {"yespo_tracker": None, "yespo_events": "pageViewed", "customerio": "page",
      "orangepill": "pageViewed"}),
    ("track", "Product Viewed", PRODUCT,
     {"yespo_tracker": "ProductPage", "yespo_events": "productViewed",
      "customerio": "Product Viewed", "orangepill": "productViewed"}),
    ("track", "Product List Viewed", {"category": "Mugs", "list_id": "mugs"},
     {"yespo_tracker": "CategoryPage", "yespo_events": "productCategoryViewed",
      "customerio": "Product List Viewed", "orangepill": "categoryViewed"}),
    ("track", "Cart Updated", {"cart_id": "c", "products": [PRODUCT], "added": [PRODUCT]},
     {"yespo_tracker": "StatusCart", "yespo_events": "cartUpdated",
      "customerio": "Product Added", "orangepill": "cartUpdated"}),
    ("track", "Order Completed", ORDER,
     {"yespo_tracker": "PurchasedItems", "yespo_events": "orderCreated",
      "customerio": "Order Completed", "orangepill": "orderCompleted"}),
    ("track", "Order Updated", ORDER,
     {"yespo_tracker": None, "yespo_events": "orderUpdated", "customerio": "Order Updated",
      "orangepill": "orderUpdated"}),
    ("track", "Order Delivered", {"order_id": "o-1"},
     {"yespo_tracker": None, "yespo_events": "orderDelivered",
      "customerio": "Order Delivered", "orangepill": "orderDelivered"}),
    ("track", "Order Cancelled", ORDER,
     {"yespo_tracker": None, "yespo_events": "orderCancelled",
      "customerio": "Order Cancelled", "orangepill": "orderCancelled"}),
    ("track", "Product Added to Wishlist", PRODUCT,
     {"yespo_tracker": "AddToWishlist", "yespo_events": None,
      "customerio": "Product Added to Wishlist", "orangepill": "addedToWishlist"}),
    ("track", "Products Searched", {"query": "mug", "results": 0},
     {"yespo_tracker": "SearchRequest", "yespo_events": None,
      "customerio": "Products Searched", "orangepill": "productsSearched"}),
    ("track", "Product Impressions",
     {"products": [{"product_id": "1", "container_type": "12"}]},
     {"yespo_tracker": "ProductImpressions", "yespo_events": None, "customerio": None,
      "orangepill": None}),
    ("track", "Product Updated", {"products": [PRODUCT]},
     {"yespo_tracker": "ProductUpdate", "yespo_events": None, "customerio": None,
      "orangepill": None}),
    ("identify", None, {},
     {"yespo_tracker": "CustomerData", "yespo_events": None, "customerio": "identify",
      "orangepill": "personUpdate"}),
    ("track", "Checkout Started", {"order_id": "o-1", "value": 754},
     {"yespo_tracker": None, "yespo_events": None, "customerio": "Checkout Started",
      "orangepill": "checkoutStarted"}),
    ("track", "Coupon Applied", {"coupon_id": "SAVE"},
     {"yespo_tracker": None, "yespo_events": None, "customerio": "Coupon Applied",
      "orangepill": "couponApplied"}),
]


def wire_name(destination: str, body: dict[str, Any], url: str) -> str:
    if destination == "yespo_tracker":
        return str(body["GeneralInfo"]["eventName"])
    if destination == "yespo_events":
        return str(body["eventTypeKey"])
    if destination == "customerio":
        return str(body.get("event") or body["type"])
    if url.endswith("/person"):
        return "personUpdate"
    return url.rsplit("/", 1)[-1]


@pytest.mark.parametrize("etype,name,props,expected", ROWS,
                         ids=[r[1] or r[0] for r in ROWS])
def test_mapping_row(etype: str, name: str | None, props: dict[str, Any],
                     expected: dict[str, str | None]) -> None:
    data: dict[str, Any] = {"type": etype, "visitor": VISITOR, "properties": props}
    if name:
        data["event"] = name
    if etype == "identify":
        data["traits"] = {"first_name": "Jane"}
    rendered = render_event(Event.from_dict(data), CONFIG)
    got: dict[str, str | None] = {d: None for d in expected}
    for request in rendered.requests:
        got[request.destination] = wire_name(request.destination, request.json, request.url)
    assert got == expected
    # Where a destination sends nothing, the reason is counted, never silent.
    skipped = {d for d, _ in rendered.skipped}
    assert skipped == {d for d, v in expected.items() if v is None}


def test_status_cart_guid_changes_with_content_and_only_then() -> None:
    def guid(products: list[dict[str, Any]], sc: str = VISITOR["sc"]) -> str:
        event = Event.from_dict({"type": "track", "event": "Cart Updated",
                                 "visitor": {**VISITOR, "sc": sc},
                                 "properties": {"products": products}})
        [request] = [r for r in render_event(event, CONFIG).requests
                     if r.destination == "yespo_tracker"]
        return str(request.json["StatusCart"]["GUID"])

    one = [{"product_id": "a", "quantity": 1, "price": 5}]
    two = [{"product_id": "a", "quantity": 2, "price": 5}]
    assert guid(one) == guid([dict(one[0])])  # same content → same GUID
    assert guid(one) != guid(two)  # quantity changed → new GUID
    assert guid(one) != guid([*one, {"product_id": "b", "quantity": 1, "price": 1}])
    assert guid(one) != guid(one, sc="OTHER-VISITOR")  # per visitor
    assert guid(one) == guid(one).upper() and len(guid(one)) == 36


def test_empty_cart_sends_an_empty_products_list() -> None:
    event = Event.from_dict({"type": "track", "event": "Cart Updated", "visitor": VISITOR,
                             "properties": {"products": [], "removed": [PRODUCT]}})
    by_destination = {r.destination: r for r in render_event(event, CONFIG).requests}
    assert by_destination["yespo_tracker"].json["StatusCart"]["Products"] == []
    params = {p["name"]: p["value"] for p in by_destination["yespo_events"].json["params"]}
    assert json.loads(params["products"]) == []
    assert by_destination["customerio"].json["event"] == "Product Removed"


def test_recycle_state_id_matches_the_status_cart_guid() -> None:
    event = Event.from_dict({"type": "track", "event": "Cart Updated", "visitor": VISITOR,
                             "properties": {"products": [PRODUCT]}})
    by_destination = {r.destination: r for r in render_event(event, CONFIG).requests}
    params = {p["name"]: p["value"] for p in by_destination["yespo_events"].json["params"]}
    guid = by_destination["yespo_tracker"].json["StatusCart"]["GUID"]
    assert params["recycleStateId"] == guid.lower()


def test_yespo_events_needs_a_contact_key_and_counts_the_reason() -> None:
    event = Event.from_dict({"type": "track", "event": "Product Viewed",
                             "visitor": {"sc": "ANON"}, "properties": PRODUCT})
    rendered = render_event(event, CONFIG)
    assert ("yespo_events", "no_contact_key") in rendered.skipped
    assert ("orangepill", "no_identity") in rendered.skipped
    assert {r.destination for r in rendered.requests} == {"yespo_tracker", "customerio"}


@pytest.mark.parametrize("visitor,key", [
    ({"email": "e@x.io", "phone": "1", "user_id": "u"}, "e@x.io"),
    ({"phone": "380", "user_id": "u"}, "380"),
    ({"user_id": "u-9"}, "u-9"),
    ({"user_id": "u-9", "external_customer_id": "AV1"}, "AV1"),
])
def test_key_value_prefers_email_then_phone_then_external_id(
    visitor: dict[str, str], key: str
) -> None:
    event = Event.from_dict({"type": "page", "visitor": visitor,
                             "properties": {"url": "https://s.example/"}})
    [request] = render_event(event, CONFIG, ["yespo_events"]).requests
    assert request.json["keyValue"] == key


def test_yespo_events_uses_basic_auth_with_the_key_as_password() -> None:
    event = Event.from_dict({"type": "page", "visitor": VISITOR,
                             "properties": {"url": "https://s.example/"}})
    [request] = render_event(event, CONFIG, ["yespo_events"]).requests
    import base64
    user_pass = base64.b64decode(request.headers["Authorization"].split()[1]).decode()
    assert user_pass.endswith(":yespo-secret-key")


def test_yespo_events_body_limit_drops_duplicate_items_then_refuses() -> None:
    big = [{**PRODUCT, "product_id": str(i), "description": "x" * 80} for i in range(90)]
    event = Event.from_dict({"type": "track", "event": "Order Completed", "visitor": VISITOR,
                             "properties": {**ORDER, "products": big}})
    [request] = render_event(event, CONFIG, ["yespo_events"]).requests
    names = [p["name"] for p in request.json["params"]]
    assert "products" in names and "items" not in names
    assert len(request.body_bytes()) <= 20 * 1024
    huge = [{**PRODUCT, "product_id": str(i), "description": "x" * 400} for i in range(60)]
    event = Event.from_dict({"type": "track", "event": "Order Completed", "visitor": VISITOR,
                             "properties": {**ORDER, "products": huge}})
    assert render_event(event, CONFIG, ["yespo_events"]).skipped == [
        ("yespo_events", "too_large")
    ]


def test_customerio_refuses_messages_over_32kb_with_a_reason() -> None:
    event = Event.from_dict({"type": "track", "event": "Product Viewed", "visitor": VISITOR,
                             "properties": {**PRODUCT, "blob": "x" * 33_000}})
    assert render_event(event, CONFIG, ["customerio"]).skipped == [("customerio", "too_large")]


def test_identify_carries_both_ids_and_traits_to_customerio() -> None:
    event = Event.from_dict({"type": "identify", "visitor": VISITOR,
                             "traits": {"first_name": "Jane", "plan": "gold"}})
    [request] = render_event(event, CONFIG, ["customerio"]).requests
    assert request.url.endswith("/identify")
    body = request.json
    assert (body["userId"], body["anonymousId"]) == ("u-17", VISITOR["sc"])
    assert body["traits"] == {"email": "jane@example.com", "phone": "380501234567",
                              "first_name": "Jane", "plan": "gold"}


def test_page_event_for_customerio_and_orangepill() -> None:
    event = Event.from_dict({"type": "page", "name": "Home", "visitor": VISITOR,
                             "context": {"url": "https://s.example/?a=1", "ip": "203.0.113.9"}})
    by_destination = {r.destination: r for r in render_event(event, CONFIG).requests}
    cio = by_destination["customerio"].json
    assert cio["type"] == "page" and cio["name"] == "Home"
    assert cio["properties"]["url"] == "https://s.example/?a=1"
    assert cio["context"]["ip"] == "203.0.113.9"
    op = by_destination["orangepill"]
    assert op.url.endswith("/identities/634b56217f6a7b0be52dffbd/person/event/pageViewed")
    assert op.json == {"data": {"properties": {"name": "Home", "url": "https://s.example/?a=1"}}}


def test_orangepill_idempotency_key_is_stable_per_event_and_differs_between_events() -> None:
    data = {"type": "track", "event": "Product Viewed", "visitor": VISITOR,
            "properties": PRODUCT, "message_id": "m-1"}
    first = render_event(Event.from_dict(data), CONFIG, ["orangepill"]).requests[0]
    again = render_event(Event.from_dict(data), CONFIG, ["orangepill"]).requests[0]
    other = render_event(Event.from_dict({**data, "message_id": "m-2"}), CONFIG,
                         ["orangepill"]).requests[0]
    assert first.headers["idempotency-key"] == again.headers["idempotency-key"] == "m-1"
    assert first.headers["idempotency-key"] != other.headers["idempotency-key"]


def test_orangepill_camel_cases_property_names_in_nested_products() -> None:
    event = Event.from_dict({"type": "track", "event": "Order Completed", "visitor": VISITOR,
                             "properties": {**ORDER, "products": [
                                 {"product_id": "1", "image_url": "https://i/1.png"}]}})
    [request] = render_event(event, CONFIG, ["orangepill"]).requests
    props = request.json["data"]["properties"]
    assert props["orderId"] == "o-1"
    assert props["products"] == [{"productId": "1", "imageUrl": "https://i/1.png"}]


def test_tracker_sends_basic_auth_only_when_a_key_is_configured() -> None:
    event = Event.from_dict({"type": "track", "event": "Product Viewed", "visitor": VISITOR,
                             "properties": PRODUCT})
    with_key = render_event(event, CONFIG, ["yespo_tracker"]).requests[0]
    assert with_key.headers["Authorization"].startswith("Basic ")
    site_only = Config(yespo_site_id="SITE")
    without = render_event(event, site_only, ["yespo_tracker"]).requests[0]
    assert "Authorization" not in without.headers


def test_tracker_needs_the_sc_cookie() -> None:
    event = Event.from_dict({"type": "track", "event": "Product Viewed",
                             "visitor": {"email": "a@b.c"}, "properties": PRODUCT})
    assert render_event(event, CONFIG, ["yespo_tracker"]).skipped == [
        ("yespo_tracker", "no_sc_cookie")
    ]


def test_search_is_found_follows_the_result_count() -> None:
    def found(results: int) -> int:
        event = Event.from_dict({"type": "track", "event": "Products Searched",
                                 "visitor": VISITOR,
                                 "properties": {"query": "q", "results": results}})
        [request] = render_event(event, CONFIG, ["yespo_tracker"]).requests
        return int(request.json["SearchRequest"]["isFound"])

    assert (found(0), found(3)) == (0, 1)
