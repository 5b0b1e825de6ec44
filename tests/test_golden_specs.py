"""Every example payload of the four vendor specs, reproduced from a canonical event."""

from __future__ import annotations

import json
from typing import Any

import pytest
from spec_examples import events_v1_examples, orangepill_examples, tracker_examples

from cdptrack.config import Config
from cdptrack.destinations import customerio, orangepill, yespo_events, yespo_tracker
from cdptrack.events import Event

SC = "CDA68358-94FB-4D83-9655-3FEB3C4114A3"
TRACKER_VISITOR = {
    "sc": SC,
    "external_customer_id": "1234509876",
    "phone": "1-541-754-3010",
    "email": "user@mail.com",
    "name": "Gregori Boczynski",
    "yespo_contact_id": "255830499",
}
TRACKER_TIME = 1579622183208


def tracker_body(event: dict[str, Any], site_id: str = "8A412DC") -> dict[str, Any]:
    requests = yespo_tracker.render(Event.from_dict(event), Config(yespo_site_id=site_id))
    assert len(requests) == 1
    request = requests[0]
    assert (request.method, request.url) == ("POST", "https://tracker.yespo.io/api/v2")
    assert request.headers["Content-Type"] == "application/json"
    return dict(request.json)


def tracked(name: str, properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "track", "event": name, "visitor": TRACKER_VISITOR,
            "properties": properties, "timestamp": TRACKER_TIME, **extra}


# --- Yespo web tracker (spec 003) ----------------------------------------------------


def test_product_page_example() -> None:
    event = tracked("Product Viewed", {
        "product_id": "72354", "price": 754, "currency": "USD", "in_stock": True,
        "tags": {"something": ["abc", "bca"]},
        "event_tags": {"some_tags": ["some_tag1", "some_tag2"]},
    })
    assert tracker_body(event) == tracker_examples()["ProductPage"]


def test_status_cart_example() -> None:
    tags = {"something": ["aaa", "bbb"]}
    event = tracked("Cart Updated", {
        "cart_state_id": "6F9619FF-8B86-D011-B42D-00CF4FC964FF",
        "currency": "USD",
        "products": [
            {"product_id": "430738", "price": 201.95, "discount": 180, "quantity": 1,
             "tags": tags},
            {"product_id": "902339", "price": 596, "discount": 590, "quantity": 1,
             "tags": tags},
        ],
        "event_tags": {"some_tags": ["1", "a2"], "some_tags1": ["4", "gg"]},
    })
    assert tracker_body(event) == tracker_examples()["StatusCart"]


def test_add_to_wishlist_example() -> None:
    event = tracked("Product Added to Wishlist", {
        "product_id": "72354", "price": "754", "in_stock": True,
        "tags": {"something": ["abc", "bca"]},
        "event_tags": {"some_tags": ["some_tag1", "some_tag2"]},
    })
    assert tracker_body(event) == tracker_examples()["AddToWishlist"]


def test_purchased_items_example() -> None:
    event = tracked("Order Completed", {
        "order_id": "123/2017",
        "products": [
            {"product_id": "430738", "price": "201.95", "quantity": 1},
            {"product_id": "211452", "price": "341.80", "quantity": 2},
        ],
        "event_tags": {"some_tags1": ["4", "gg"]},
    })
    assert tracker_body(event) == tracker_examples()["PurchasedItems"]


def test_product_impressions_example() -> None:
    event = tracked("Product Impressions", {
        "products": [
            {"product_id": "430968", "container_type": "1253"},
            {"product_id": "430738", "container_type": "1254"},
            {"product_id": "429983", "container_type": "1255"},
        ],
        "event_tags": {"some_tags": ["1", "a2"], "some_tags1": ["4", "gg"]},
    })
    body = tracker_body(event)
    assert body == tracker_examples()["ProductImpressions"]
    assert "ProductImpression" in body  # singular body key, as eS.JS sends it


def test_category_page_example() -> None:
    event = tracked("Product List Viewed", {
        "category_id": "509876",
        "event_tags": {"some_tags": ["1", "a2"], "some_tags1": ["4", "gg"]},
    })
    assert tracker_body(event) == tracker_examples()["CategoryPage"]


def test_customer_data_example() -> None:
    event = {
        "type": "identify",
        "visitor": {"sc": "CDA68358-94FB-4D83-9655-3FEB3CGGG1",
                    "external_customer_id": "1234509876", "phone": "3801111111111",
                    "email": "user@mail.com", "yespo_contact_id": "255830499"},
        "traits": {"name": "Johny"},
        "timestamp": TRACKER_TIME,
    }
    assert tracker_body(event, site_id="8D3869C") == tracker_examples()["CustomerData"]


def test_search_request_example() -> None:
    visitor = {**TRACKER_VISITOR, "email": "userdech123@mail.com", "yespo_contact_id": None}
    event = {"type": "track", "event": "Products Searched", "visitor": visitor,
             "properties": {"query": "input_value", "results": 12},
             "timestamp": 1668792552000}
    expected = json.loads(json.dumps(tracker_examples()["SearchRequest"]))
    # The example shows an empty user_es_contact_id; cdptrack leaves unknown fields out.
    assert expected["GeneralInfo"].pop("user_es_contact_id") == ""
    assert tracker_body(event, site_id="CE460EC") == expected


def test_product_update_example() -> None:
    tags = {"discount": ["10"], "oldprice": ["224.38"], "something": ["aaa", "bbb"]}
    base = {"brand": "Apple", "name": "iPhone 7", "description": "Some description",
            "product_id": "430738", "image_url": "https://domain.com/apple/product_large.png",
            "price": "201.95", "in_stock": True, "currency": "UAH", "tags": tags}
    event = {"type": "track", "event": "Product Updated", "properties": {"products": [
        {**base, "url": "https://domain.com/apple/product_page_example.html",
         "category_id": ["3"]},
        {**base, "category": "level1 > level2 > level3", "category_id": ["1", "2", "3"]},
    ]}}
    assert tracker_body(event, site_id="site_id") == tracker_examples()["ProductUpdate"]


# --- Yespo generic events (spec 001) -------------------------------------------------


def v1_body(event: dict[str, Any]) -> dict[str, Any]:
    requests = yespo_events.render(Event.from_dict(event), Config(yespo_api_key="secret"))
    assert len(requests) == 1
    assert (requests[0].method, requests[0].url) == ("POST", "https://yespo.io/api/v1/event")
    return dict(requests[0].json)


def decoded(body: dict[str, Any]) -> dict[str, Any]:
    """Params with JSON-encoded values decoded, so key order inside them is not compared."""
    def value(text: str) -> Any:
        try:
            parsed = json.loads(text)
        except ValueError:
            return text
        return parsed if isinstance(parsed, (dict, list)) else text
    params = [(p["name"], value(p["value"])) for p in body["params"]]
    return {**body, "params": params}


def v1_example(key: str, index: int = 0) -> dict[str, Any]:
    return [b for b in events_v1_examples() if b["eventTypeKey"] == key][index]


ORDER_ITEM = {"product_id": "200600", "name": "Super Device", "category": "devices",
              "quantity": 1, "price": 990, "url": "http://example.com/item/200600",
              "image_url": "http://example.com/item/200600/image.png",
              "description": "High quality"}
ORDER_EVENT = {
    "type": "track", "event": "Order Completed",
    "visitor": {"phone": "380501234567", "external_customer_id": "AV13760"},
    "properties": {"order_id": "12345679", "total": 258, "date": "2020-05-14T10:11:00",
                   "products": [ORDER_ITEM]},
}


def test_order_created_example_with_products() -> None:
    body = v1_body(ORDER_EVENT)
    assert decoded(body) == decoded(v1_example("orderCreated", 1))
    # The items value is byte-for-byte the example's string (compact JSON, same key order).
    expected_items = next(p for p in v1_example("orderCreated", 1)["params"]
                          if p["name"] == "items")
    assert next(p for p in body["params"] if p["name"] == "items") == expected_items


def test_order_created_first_example_is_contained() -> None:
    body = decoded(v1_body(ORDER_EVENT))
    for param in decoded(v1_example("orderCreated", 0))["params"]:
        assert param in body["params"]


def test_page_viewed_example() -> None:
    event = {"type": "page", "visitor": {"phone": "380501234567", "email": "example@email.com"},
             "properties": {"url": "https://example.com"}}
    assert decoded(v1_body(event)) == decoded(v1_example("pageViewed"))


def test_product_viewed_example() -> None:
    event = {"type": "track", "event": "Product Viewed",
             "visitor": {"phone": "411786452", "email": "example@email.com"},
             "properties": {"product_id": "WS01-L-Green", "price": 45.5, "in_stock": True,
                            "currency": "USD", "tags": {"someProductProperty": ["green"]}}}
    assert decoded(v1_body(event)) == decoded(v1_example("productViewed"))


def test_product_category_viewed_example() -> None:
    event = {"type": "track", "event": "Product List Viewed",
             "visitor": {"phone": "7411324763", "email": "example@email.com"},
             "properties": {"category": "Mugs"}}
    assert decoded(v1_body(event)) == decoded(v1_example("productCategoryViewed"))


def test_cart_updated_example() -> None:
    event = {"type": "track", "event": "Cart Updated",
             "visitor": {"phone": "73456712", "email": "example@email.com"},
             "properties": {"currency": "USD",
                            "cart_state_id": "d59c6e6d-4123-4b0e-8c32-15f0656a8c60",
                            "products": [{"product_id": "WS01-L-Green", "quantity": 1,
                                          "price": 45.5}]}}
    assert decoded(v1_body(event)) == decoded(v1_example("cartUpdated"))


# --- Orangepill (spec 000) -----------------------------------------------------------

IDENTITY = "634b56217f6a7b0be52dffbd"


def test_custom_person_event_example() -> None:
    method, url, body = orangepill_examples()["Send Custom Person Events"]
    event = Event.from_dict({
        "type": "track", "event": "addToCart", "visitor": {"orangepill_identity": IDENTITY},
        "properties": {"item_name": "Generic Shoes", "item_id": 9473370, "price": 56.324,
                       "quantity": 2, "from_promo_campaign": True,
                       "in_stock_since": "2019-09-30T16:35:52.3616436+03:00",
                       "category": "Sneakers"},
    })
    [request] = orangepill.render(event, Config(orangepill_api_key="AXVubzpwQDU1dzByYM=="))
    assert (request.method, request.url, request.json) == (method, url, body)
    assert request.headers["x-api-key"] == "AXVubzpwQDU1dzByYM=="
    assert request.headers["idempotency-key"]


def test_update_person_example() -> None:
    method, url, body = orangepill_examples()["Update Person"]
    event = Event.from_dict({"type": "identify", "visitor": {"orangepill_identity": IDENTITY},
                             "traits": {"address": "129 Bethnel Road", "city": "Manchester"}})
    [request] = orangepill.render(event, Config(orangepill_api_key="k"))
    assert (request.method, request.url, request.json) == (method, url, body)


def test_person_update_maps_names_and_contacts_like_create_person() -> None:
    _, _, create = orangepill_examples()["Create Person and Identity"]
    assert create is not None
    person = create["person"]
    event = Event.from_dict({
        "type": "identify", "visitor": {"orangepill_identity": IDENTITY},
        "traits": {"first_name": "Jane", "last_name": "Smith", "middle_name": "Janie",
                   "gender": "FEMALE", "birth_date": "1966-01-15", "city": "London",
                   "email": "janewilliams@acme.com", "phone": "41793026727"},
    })
    [request] = orangepill.render(event, Config(orangepill_api_key="k"))
    for key in ("firstName", "lastName", "middleName", "gender", "birthDate", "city"):
        assert request.json[key] == person[key]
    contact = request.json["contactInformation"]
    assert contact["email"] == person["contactInformation"]["email"]
    assert contact["phone"] == person["contactInformation"]["phone"]


# --- Customer.io (spec 002) ----------------------------------------------------------


@pytest.mark.parametrize("region,host", [("us", "https://cdp.customer.io/v1"),
                                         ("eu", "https://cdp-eu.customer.io/v1")])
def test_customerio_hosts_and_basic_auth(region: str, host: str) -> None:
    event = Event.from_dict({"type": "track", "event": "Product Viewed",
                             "visitor": {"sc": SC}, "properties": {"product_id": "1"}})
    [request] = customerio.render(event, Config(customerio_api_key="cio-key",
                                                customerio_region=region))  # type: ignore[arg-type]
    assert request.url == f"{host}/track"
    assert request.batch_url == f"{host}/batch"
    # Basic auth, the key as user name and an empty password: base64("cio-key:").
    assert request.headers["Authorization"] == "Basic Y2lvLWtleTo="
