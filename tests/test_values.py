"""Shop values as shops hold them: ``Decimal`` money, ``UUID`` ids, dates and enums reach
every API as JSON the API accepts; a value with no JSON form costs only its property."""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime, timezone
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

from cdptrack.config import Config
from cdptrack.events import Event, EventError, normalize_properties, to_number
from cdptrack.sink import Sink
from cdptrack.tracker import Tracker

KEYS = {"yespo_site_id": "8A412DC", "yespo_api_key": "yespo-SECRET-1",
        "customerio_api_key": "cio-SECRET-2", "orangepill_api_key": "op-SECRET-3"}
VISITOR = {"sc": "CDA68358-94FB-4D83-9655-3FEB3C4114A3", "email": "jane@example.com",
           "user_id": "u-17", "orangepill_identity": "634b56217f6a7b0be52dffbd"}


class Size(enum.Enum):
    SMALL = "S"
    LARGE = "L"


@pytest.mark.parametrize(("given", "number"), [
    (Decimal("19.90"), 19.9), (Decimal("20.00"), 20), (Fraction(3, 4), 0.75),
    (754, 754), (19.5, 19.5), ("19.90", 19.9), ("19,90", 19.9), ("$1,299.00", 1299),
    ("1.299,90 €", 1299.9), ("EUR 1.299,90", 1299.9), ("1 299,00 грн", 1299),
    ("1,299", 1299), ("USD 12", 12), ("1'299.50 CHF", 1299.5), ("£0.99", 0.99),
])
def test_money_fields_accept_what_shops_hold(given: Any, number: float) -> None:
    assert to_number(given, "price") == number
    assert normalize_properties({"price": given})["price"] == number


@pytest.mark.parametrize(("given", "number"), [
    ("-$5", -5), ("$-5", -5), ("-5 €", -5), ("€ -5", -5), ("\u22125,00 €", -5),
    ("(5.00)", -5), ("($1,299.00)", -1299), ("+5", 5),
])
def test_negative_amounts_in_the_ways_shops_write_them(given: str, number: float) -> None:
    assert to_number(given, "discount") == number


@pytest.mark.parametrize(("given", "number"), [
    # A lone separator with 1-3 digits before and exactly three after is grouping, as
    # in "1.299 €" (de, it, es, pt-BR, ...) and "$1,299" (en): shop prices have cents.
    ("1.299", 1299), ("1,299", 1299), ("12.500 kr", 12500), ("999.000", 999000),
    ("1.299.000", 1299000), ("₹1,29,999.00", 129999),
    # Anything else is a decimal mark.
    ("0.125", 0.125), ("0,125", 0.125), ("1234.567", 1234.567), ("1.2999", 1.2999),
    ("19.9", 19.9), (".99", 0.99),
])
def test_a_lone_separator_is_grouping_only_when_it_looks_like_thousands(
        given: str, number: float) -> None:
    assert to_number(given, "price") == number


@pytest.mark.parametrize("bad", ["5-", "--5", "-(5)", "(-5)", "1.2.3", "1,29,9.00", "",
                                 "$", "(5"])
def test_amounts_with_a_misplaced_sign_or_grouping_are_refused(bad: str) -> None:
    with pytest.raises(EventError, match=r"^price: must be a number"):
        to_number(bad, "price")


@pytest.mark.parametrize("bad", ["free", Decimal("NaN"), Decimal("Infinity"), True, [1]])
def test_a_money_field_that_is_no_amount_names_the_field(bad: Any) -> None:
    with pytest.raises(EventError, match=r"products\[0\]\.price"):
        normalize_properties({"products": [{"product_id": "1", "price": bad}]})


def test_ids_accept_uuid_int_and_decimal_keys() -> None:
    pk = uuid.UUID("0b8e3c4c-1f2a-4a5b-9c6d-7e8f9a0b1c2d")
    props = normalize_properties({"product_id": pk, "order_id": 1042,
                                  "cart_id": Decimal("77")})
    assert props == {"product_id": str(pk), "order_id": "1042", "cart_id": "77"}


def test_any_property_is_encoded_iso_str_value_or_number() -> None:
    when = datetime(2026, 3, 1, 12, 30, tzinfo=timezone.utc)
    ref = uuid.uuid4()
    dropped: list[str] = []
    props = normalize_properties({
        "delivered_at": when, "delivery_date": date(2026, 3, 2), "ref": ref,
        "size": Size.LARGE, "weight": Decimal("1.250"), "labels": {"a"},
        "nested": {"at": when, "amounts": (Decimal("1.5"), Fraction(1, 2))},
    }, dropped=dropped)
    assert props == {
        "delivered_at": "2026-03-01T12:30:00+00:00", "delivery_date": "2026-03-02",
        "ref": str(ref), "size": "L", "weight": 1.25, "labels": ["a"],
        "nested": {"at": "2026-03-01T12:30:00+00:00", "amounts": [1.5, 0.5]},
    }
    assert dropped == []


def test_a_property_with_no_json_form_is_dropped_alone() -> None:
    event = Event.from_dict({"type": "track", "event": "Gift Wrapped",
                             "properties": {"handle": object(), "ok": 1,
                                            "bad_float": float("nan")}})
    assert event.properties == {"ok": 1}
    assert sorted(event.dropped) == ["bad_float", "handle"]


def test_lists_and_objects_where_text_goes_become_their_first_name() -> None:
    props = normalize_properties({"products": [{
        "product_id": "12", "category": [{"name": "Shoes", "id": 3}, {"name": "Sale"}],
        "brand": {"title": "Acme"}, "name": "Boot", "variant": Size.SMALL}]})
    line = props["products"][0]
    assert (line["category"], line["brand"], line["variant"]) == ("Shoes", "Acme", "S")


def _config(sink: Sink) -> Config:
    return Config(**KEYS, **sink.config_overrides())


def _all_valid(sink: Sink) -> dict[str, Any]:
    summary = sink.summary()
    assert all(entry["invalid"] == 0 for entry in summary.values()), summary
    return summary


def test_capture_with_decimal_money_and_odd_values_delivers_everywhere() -> None:
    with Sink() as sink:
        tracker = Tracker(_config(sink))
        pk = uuid.uuid4()
        tracker.capture({"type": "track", "event": "Product Viewed", "visitor": VISITOR,
                         "properties": {"product_id": pk, "price": Decimal("19.90"),
                                        "currency": "EUR", "name": "Boot"}})
        tracker.capture({"type": "track", "event": "Order Completed", "visitor": VISITOR,
                         "properties": {"order_id": uuid.uuid4(), "total": Decimal("9.99"),
                                        "currency": "EUR", "products": [
                                            {"product_id": pk, "price": Decimal("9.99"),
                                             "quantity": Decimal("1")}]}})
        tracker.capture({"type": "track", "event": "Delivery Booked", "visitor": VISITOR,
                         "properties": {"slot": datetime(2026, 3, 1, tzinfo=timezone.utc),
                                        "day": date(2026, 3, 1), "ref": uuid.uuid4(),
                                        "size": Size.SMALL, "handle": object()}})
        assert tracker.flush(20)
        stats = tracker.stats()
        tracker.shutdown(5)
        summary = _all_valid(sink)
    assert summary["yespo_tracker"]["by_event"] == {"ProductPage": 1, "PurchasedItems": 1}
    assert summary["yespo_events"]["by_event"] == {"orderCreated": 1, "productViewed": 1}
    assert summary["customerio"]["events"] == 3
    assert summary["orangepill"]["events"] == 3
    for name in ("customerio", "orangepill", "yespo_events", "yespo_tracker"):
        assert stats[name].get("dropped:invalid", 0) == 0
        assert stats[name]["dropped_property:handle"] == 1
    product_page = next(r for r in sink.requests("yespo_tracker")
                        if r["event"] == "ProductPage")
    assert product_page["body"]["ProductPage"]["Product"]["price"] == "19.90 EUR"


def test_a_session_cart_without_prices_is_skipped_at_the_tracker_with_one_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    from flask import Flask, session
    from observe_support import ListTracker

    from cdptrack.integrations.flask import CDPTrack

    app = Flask(__name__)
    app.secret_key = "test"
    tracker = ListTracker()
    CDPTrack(app, tracker=tracker, defer_events=False)

    @app.post("/unpriced-cart/add/<pid>")
    def add(pid: str) -> str:
        cart = dict(session.get("cart") or {})
        cart[pid] = cart.get(pid, 0) + 1
        session["cart"] = cart
        return "ok"

    client = app.test_client()
    with caplog.at_level("WARNING", logger="cdptrack.observe"):
        client.post("/unpriced-cart/add/72354").close()  # events are built at close()
        client.post("/unpriced-cart/add/72355").close()
    carts = [e for e in tracker.events if e.event == "Cart Updated"]
    assert len(carts) == 2  # the event itself still goes (Customer.io takes it)
    warnings = [r.getMessage() for r in caplog.records
                if "Cart Updated" in r.getMessage() and "has no price" in r.getMessage()]
    assert len(warnings) == 1, warnings  # once per route, not per request
    assert "catalogue" in warnings[0]
