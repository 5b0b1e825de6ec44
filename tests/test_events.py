"""Canonical events are validated and normalised at the edge, with errors naming the field."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from cdptrack.events import Event, EventError, Visitor, epoch_millis, iso_millis, track


def test_numeric_strings_become_numbers_and_ids_become_strings() -> None:
    event = Event.from_dict({"event": "Order Completed", "properties": {
        "order_id": 1001, "total": "19.90", "revenue": "20", "products": [
            {"product_id": 7, "price": "9,95", "quantity": "2", "position": "3"}]}})
    props = event.properties
    assert (props["order_id"], props["total"], props["revenue"]) == ("1001", 19.9, 20)
    assert props["products"][0] == {"product_id": "7", "price": 9.95, "quantity": 2,
                                    "position": 3}


@pytest.mark.parametrize("data,field", [
    ({"event": "Product Viewed", "properties": {"price": "cheap"}}, "properties.price"),
    ({"event": "Order Completed", "properties": {"products": [{"quantity": "1.5"}]}},
     "properties.products[0].quantity"),
    ({"event": "Order Completed", "properties": {"products": "none"}}, "properties.products"),
    ({"event": "Product Viewed", "properties": {"in_stock": "maybe"}}, "properties.in_stock"),
    ({"event": "Product Viewed", "visitor": {"email": ["a"]}}, "visitor.email"),
    ({"event": "Product Viewed", "visitor": "jane"}, "visitor"),
    ({"event": ""}, "event"),
    ({"type": "alias"}, "type"),
    ({"type": "page", "event": "Home"}, "event"),
    ({"event": "X", "timestamp": "yesterday"}, "timestamp"),
    ({"event": "X", "properties": []}, "properties"),
    ({"event": "X", "properties": {"price": float("nan")}}, "properties.price"),
])
def test_bad_events_name_the_offending_field(data: dict[str, object], field: str) -> None:
    with pytest.raises(EventError) as caught:
        Event.from_dict(data)
    assert caught.value.field == field
    assert str(caught.value).startswith(field + ":")


def test_not_an_object_is_a_clear_error() -> None:
    with pytest.raises(EventError, match="must be a JSON object"):
        Event.from_dict(["track"])


@pytest.mark.parametrize("raw,expected_ms", [
    ("2020-01-21T15:56:23.208Z", 1579622183208),
    ("2020-01-21T17:56:23.208+02:00", 1579622183208),
    ("2020-01-21T15:56:23.208", 1579622183208),  # naive means UTC
    (1579622183208, 1579622183208),  # epoch milliseconds
    (1579622183.208, 1579622183208),  # epoch seconds
])
def test_timestamps_in_any_common_form(raw: object, expected_ms: int) -> None:
    event = Event.from_dict({"event": "X", "timestamp": raw})
    assert epoch_millis(event.timestamp) == expected_ms
    assert iso_millis(event.timestamp) == "2020-01-21T15:56:23.208Z"


def test_message_id_is_generated_when_absent_and_kept_when_given() -> None:
    a, b = Event.from_dict({"event": "X"}), Event.from_dict({"event": "X"})
    assert a.message_id and a.message_id != b.message_id
    assert Event.from_dict({"event": "X", "message_id": "m-1"}).message_id == "m-1"


def test_external_customer_id_defaults_to_user_id() -> None:
    assert Event.from_dict({"event": "X", "visitor": {"user_id": 17}}).visitor == Visitor(
        user_id="17", external_customer_id="17")


def test_round_trip_through_json_is_stable() -> None:
    event = track("Product Viewed", {"product_id": "1", "price": 2.5, "tags": {"c": ["red"]}},
                  visitor={"sc": "S", "email": "e@x.io"}, context={"ip": "203.0.113.9"},
                  timestamp=datetime(2020, 1, 21, 15, 56, 23, 208000, tzinfo=timezone.utc))
    again = Event.from_dict(json.loads(json.dumps(event.to_dict())))
    assert again == event
    assert event.to_dict()["timestamp"] == "2020-01-21T15:56:23.208Z"


def test_unknown_properties_pass_through_untouched() -> None:
    props = {"gift_wrap": {"paper": "gold"}, "price": 1}
    assert Event.from_dict({"event": "X", "properties": props}).properties == props
