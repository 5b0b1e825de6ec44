"""The sink's validators accept the vendors' own examples and name what is wrong in
hand-made bad payloads (the field path, so a shop can find it)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from spec_examples import events_v1_examples, orangepill_examples, tracker_examples

from cdptrack.sink import validate as v

SC = "CDA68358-94FB-4D83-9655-3FEB3C4114A3"


def has(problems: list[str], fragment: str) -> bool:
    return any(fragment in p for p in problems)


# -- the vendors' examples are valid ----------------------------------------------------


@pytest.mark.parametrize("name", sorted(v.YESPO_TRACKER_BODY_KEYS))
def test_every_yespo_tracker_spec_example_is_valid(name: str) -> None:
    example = tracker_examples()[name]
    assert v.check_yespo_tracker(example) == []


def test_every_yespo_v1_spec_example_is_valid() -> None:
    examples = events_v1_examples()
    assert len(examples) >= 6
    for body in examples:
        assert v.check_yespo_event(body) == [], body["eventTypeKey"]


def test_orangepill_spec_examples_are_valid() -> None:
    examples = orangepill_examples()
    _, url, body = examples["Send Custom Person Events"]
    assert v.check_orangepill_event(url.rsplit("/", 1)[1], body) == []
    _, _, person = examples["Update Person"]
    assert v.check_orangepill_person(person) == []


def test_customerio_semantic_event_with_both_ids_is_accepted() -> None:
    # Both the known and the anonymous form match: a literal oneOf would reject this.
    body = {"type": "track", "event": "Product Viewed", "userId": "u-1", "anonymousId": SC,
            "properties": {"product_id": "1", "price": 9.5, "quantity": 1, "custom": [1]},
            "timestamp": "2024-01-15T10:30:00.000Z", "messageId": "m-1"}
    assert v.check_customerio("track", body) == []


def test_customerio_custom_event_passes_with_any_properties() -> None:
    body = {"type": "track", "event": "Order Delivered", "userId": "u-1",
            "properties": {"order_id": 5, "anything": {"nested": True}}}
    assert v.check_customerio("track", body) == []


# -- Yespo tracker: bad payloads --------------------------------------------------------


def product_page() -> dict[str, Any]:
    return copy.deepcopy(tracker_examples()["ProductPage"])


def test_tracker_requires_site_id_and_sc_cookie() -> None:
    body = product_page()
    del body["GeneralInfo"]["siteId"]
    body["GeneralInfo"]["cookies"] = {}
    problems = v.check_yespo_tracker(body)
    assert has(problems, "GeneralInfo.siteId: required")
    assert has(problems, "GeneralInfo.cookies.sc")


def test_tracker_datetime_must_be_milliseconds() -> None:
    body = product_page()
    body["GeneralInfo"]["datetime"] = 1579622183  # seconds
    assert has(v.check_yespo_tracker(body), "GeneralInfo.datetime")
    body["GeneralInfo"]["datetime"] = "1579622183208"
    assert has(v.check_yespo_tracker(body), "must be an integer")


def test_tracker_event_body_must_match_event_name() -> None:
    body = product_page()
    body["GeneralInfo"]["eventName"] = "CategoryPage"
    problems = v.check_yespo_tracker(body)
    assert has(problems, "CategoryPage: required")
    assert has(problems, "ProductPage: unexpected event body")


def test_tracker_impressions_use_the_singular_body_key() -> None:
    body = copy.deepcopy(tracker_examples()["ProductImpressions"])
    body["ProductImpressions"] = body.pop("ProductImpression")
    assert has(v.check_yespo_tracker(body), "ProductImpression: required")


def test_tracker_product_fields() -> None:
    body = product_page()
    del body["ProductPage"]["Product"]["productKey"]
    body["ProductPage"]["Product"]["isInStock"] = "yes"
    body["ProductPage"]["Product"]["tag_colour"] = "red"
    problems = v.check_yespo_tracker(body)
    assert has(problems, "ProductPage.Product.productKey: required")
    assert has(problems, "ProductPage.Product.isInStock")
    assert has(problems, "ProductPage.Product.tag_colour")


def test_tracker_cart_lines_need_quantity_and_price() -> None:
    body = copy.deepcopy(tracker_examples()["StatusCart"])
    del body["StatusCart"]["Products"][1]["quantity"]
    body["StatusCart"]["Products"][0]["price"] = "cheap"
    problems = v.check_yespo_tracker(body)
    assert has(problems, "StatusCart.Products[1].quantity: required")
    assert has(problems, "StatusCart.Products[0].price")


def test_tracker_unknown_event_name() -> None:
    body = product_page()
    body["GeneralInfo"]["eventName"] = "ProductViewed"
    assert has(v.check_yespo_tracker(body), "unknown event 'ProductViewed'")


# -- Yespo generic events: bad payloads -------------------------------------------------


def v1_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "eventTypeKey": "pageViewed", "keyValue": "jane@example.com",
        "params": [{"name": "page", "value": json.dumps({"location": "https://x.example/"})}],
    }
    body.update(changes)
    return body


def test_v1_limits_on_event_type_and_key() -> None:
    assert has(v.check_yespo_event(v1_body(eventTypeKey="e" * 101)), "at most 100")
    assert has(v.check_yespo_event(v1_body(keyValue="k" * 301)), "at most 300")
    assert not has(v.check_yespo_event(v1_body(eventTypeKey="e" * 100)), "at most")


def test_v1_params_are_name_value_strings_and_json_values_parse() -> None:
    body = v1_body(params=[{"name": "page", "value": "{not json"},
                           {"name": "count", "value": 3}])
    problems = v.check_yespo_event(body)
    assert has(problems, "params[0].value (page): not valid JSON")
    assert has(problems, "params[1].value (count): must be a string")


def test_v1_needs_a_contact_key() -> None:
    body = v1_body()
    del body["keyValue"]
    assert has(v.check_yespo_event(body), "keyValue: required unless")
    body["params"].append({"name": "email", "value": "jane@example.com"})
    assert v.check_yespo_event(body) == []


def test_v1_order_created_required_params() -> None:
    body = {"eventTypeKey": "orderCreated", "keyValue": "380501234567",
            "params": [{"name": "externalOrderId", "value": "1"}]}
    problems = v.check_yespo_event(body)
    for name in ("status", "date", "totalCost"):
        assert has(problems, f"params.{name}: required for orderCreated")


# -- Customer.io: bad payloads ----------------------------------------------------------


def test_customerio_semantic_property_types_come_from_the_openapi_schema() -> None:
    body = {"type": "track", "event": "Order Completed", "userId": "u-1",
            "properties": {"order_id": 17, "total": "12.50",
                           "products": [{"product_id": "1", "quantity": 1.5}]}}
    problems = v.check_customerio("track", body)
    assert has(problems, "properties.order_id: 17 is not of type 'string'")
    assert has(problems, "properties.total: '12.50' is not of type 'number'")
    assert has(problems, "properties.products[0].quantity")


def test_customerio_needs_an_id_an_event_and_iso_timestamps() -> None:
    problems = v.check_customerio("track", {"type": "track", "timestamp": "yesterday"})
    assert has(problems, "one of userId or anonymousId")
    assert has(problems, "event: required")
    assert has(problems, "timestamp: must be an ISO-8601")


def test_customerio_batch_checks_each_message_and_its_size() -> None:
    good = {"type": "page", "anonymousId": SC, "properties": {"url": "https://x.example/"}}
    huge = {"type": "track", "event": "Big", "userId": "u", "properties": {"x": "a" * 40000}}
    problems = v.check_customerio("batch", {"batch": [good, {"type": "nope"}, huge]})
    assert not has(problems, "batch[0]")
    assert has(problems, "batch[1].type")
    assert has(problems, "batch[2]: ") and has(problems, "32 KB")
    assert has(v.check_customerio("batch", {"batch": []}), "at least one message")


def test_customerio_type_must_match_endpoint() -> None:
    body = {"type": "identify", "userId": "u-1"}
    assert has(v.check_customerio("track", body), "sent to the /track endpoint")


# -- Orangepill: bad payloads -----------------------------------------------------------


def test_orangepill_event_body_shape() -> None:
    assert has(v.check_orangepill_event("addToCart", {"properties": {}}), "data: required")
    assert has(v.check_orangepill_event("addToCart", {"data": {"properties": []}}),
               "data.properties: must be an object")
    assert has(v.check_orangepill_event("add to cart", {"data": {"properties": {}}}),
               "path.event")


def test_orangepill_person_fields() -> None:
    problems = v.check_orangepill_person({"gender": "robot", "birthDate": "15/01/1966",
                                          "contactInformation": {"email": ["x@y.z"]}})
    assert has(problems, "body.gender")
    assert has(problems, "body.birthDate")
    assert has(problems, "body.contactInformation.email")
    assert has(v.check_orangepill_person({}), "at least one field")
