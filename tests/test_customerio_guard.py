"""Never a Customer.io message the API refuses: each ``track`` message is checked against
its semantic event's schema in spec 002 before it is queued; one that breaks it is not
sent there, counted as ``dropped:invalid_field:<field>`` and named in one warning, while
the other APIs get the event.  The check is the one the sink uses."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from flask import Flask
from spec_examples import customerio_openapi

from cdptrack import Tracker, track
from cdptrack.config import Config
from cdptrack.destinations import customerio, customerio_schema, render_event
from cdptrack.events import Event
from cdptrack.integrations.flask import CDPTrack
from cdptrack.sink import Sink, validate

SC = "CDA68358-94FB-4D83-9655-3FEB3C4114A3"
CONFIG = Config(customerio_api_key="cio-key")


def event(name: str, properties: dict[str, Any], **visitor: str) -> Event:
    return Event.from_dict({"type": "track", "event": name,
                            "visitor": visitor or {"sc": SC}, "properties": properties})


def test_the_packaged_schema_is_spec_002_and_the_sink_checks_with_it() -> None:
    assert customerio_schema.customerio_openapi() == customerio_openapi()
    assert validate.track_problems is customerio_schema.track_problems
    assert len(customerio_schema.semantic_event_names()) == 28


def test_a_filter_value_of_the_wrong_type_is_not_sent_and_names_the_field() -> None:
    shoe_size = event("Product List Filtered",
                      {"list_id": "boots", "filters": [{"type": "size", "value": 42}]})
    rendered = render_event(shoe_size, CONFIG, ["customerio"])
    assert rendered.requests == []
    assert rendered.skipped == [("customerio", "invalid_field:filters.value")]
    assert rendered.details["customerio"] == (
        "properties.filters[0].value: 42 is not of type 'string'")
    fixed = event("Product List Filtered",
                  {"list_id": "boots", "filters": [{"type": "size", "value": "42"}]})
    [request] = customerio.render(fixed, CONFIG)
    assert validate.check_customerio("track", request.json) == []


@pytest.mark.parametrize("visitor", [{"sc": SC}, {"user_id": "u-1"}], ids=["anon", "known"])
def test_the_shape_cache_answers_as_the_schema_does(visitor: dict[str, str]) -> None:
    good = {"list_id": "l", "filters": [{"type": "size", "value": "42"}]}
    bad = {"list_id": "l", "filters": [{"type": "size", "value": "42"},
                                       {"type": "colour", "value": 7}]}
    for props, valid in [(good, True), (bad, False), (good, True), (bad, False),
                         ({**good, "sorts": "price"}, False)]:
        rendered = render_event(event("Product List Filtered", props, **visitor), CONFIG,
                                ["customerio"])
        assert (rendered.requests != []) is valid, props
        for request in rendered.requests:  # whatever is sent, the sink accepts
            assert validate.check_customerio("track", request.json) == []


def test_custom_events_carry_any_properties() -> None:
    [request] = customerio.render(event("Size Guide Opened", {"value": 42, "x": [1, "a"]}),
                                  CONFIG)
    assert request.json["properties"] == {"value": 42, "x": [1, "a"]}


def test_through_a_flask_shop_the_sink_sees_no_invalid_request(
        caplog: pytest.LogCaptureFixture) -> None:
    with Sink() as sink:
        tracker = Tracker(Config(yespo_site_id="8A412DC", customerio_api_key="cio-SECRET",
                                 **sink.config_overrides()), handle_signals=False)
        app = Flask(__name__)

        @app.get("/category/<slug>")
        def category(slug: str) -> str:
            size = 42  # the shop's filter form hands over an int
            track.event("Product List Filtered",
                        {"list_id": slug, "filters": [{"type": "size", "value": size}]})
            return "<p>boots</p>"

        CDPTrack(app, tracker=tracker)
        client = app.test_client()
        client.set_cookie("sc", SC)
        with caplog.at_level(logging.WARNING, logger="cdptrack"):
            for _ in range(2):
                client.get("/category/boots").close()
            assert tracker.flush(20)
        tracker.shutdown(5)
        summary = sink.summary()
        assert all(entry["invalid"] == 0 for entry in summary.values()), summary
        cio = [r["event"] for r in sink.requests("customerio")]
        assert "Product List Viewed" in cio and "Product List Filtered" not in cio
        stats = tracker.stats()["customerio"]
        assert stats["dropped:invalid_field:filters.value"] == 2
        warnings = [r.getMessage() for r in caplog.records  # the shutdown table aside
                    if "invalid_field:filters.value" in r.getMessage()
                    and r.name != "cdptrack.summary"]
        assert len(warnings) == 1, warnings
        assert "Product List Filtered from http://localhost/category/boots" in warnings[0]
        assert "properties.filters[0].value: 42 is not of type 'string'" in warnings[0]
        assert "cio-SECRET" not in warnings[0]
