"""Route rules written the way any framework writes routes, through real apps."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from flask import Flask
from observe_support import ListTracker

from cdptrack.integrations.flask import CDPTrack
from cdptrack.observe.options import ObserveOptions
from cdptrack.observe.page import resolve_page_source, route_shape
from cdptrack.observe.state import RequestState


def flask_shop(tracker: ListTracker, rules: dict[str, str]) -> Flask:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = "test"

    @app.get("/goods/<int:gid>")
    def goods(gid: int) -> str:
        return "<p>goods</p>"

    @app.get("/catalogue/<slug>_<int:pk>/")
    def catalogue_item(slug: str, pk: int) -> str:
        return "<p>item</p>"

    @app.get("/about/<name>")
    def about(name: str) -> str:
        return "<p>about</p>"

    CDPTrack(app, tracker=tracker, route_rules=rules, defer_events=False)
    return app


def viewed(tracker: ListTracker) -> list[str]:
    return [e.properties["product_id"] for e in tracker.named("Product Viewed")]


@pytest.mark.parametrize("key", [
    "/goods/<gid>",                   # Flask without the converter
    "/goods/<int:gid>",               # Flask with it
    "/goods/{gid}",                   # Starlette's way
    "/goods/{gid:int}",
    "^goods/(?P<gid>\\d+)$",          # a Django re_path
    "/goods/<int:other_name>",        # another parameter name: the rule's key says
])
def test_a_rule_written_with_any_converter_applies(key: str) -> None:
    tracker = ListTracker()
    app = flask_shop(tracker, {key: "product:gid"})
    app.test_client().get("/goods/7").close()
    assert viewed(tracker) == ["7"]


def test_django_converters_in_a_rule_match_the_route_the_framework_reports() -> None:
    tracker = ListTracker()
    app = flask_shop(tracker, {"/catalogue/<slug:product_slug>_<int:pk>/": "product:pk"})
    app.test_client().get("/catalogue/red-boot_12/").close()
    assert viewed(tracker) == ["12"]


def test_a_rule_including_the_root_path_applies_under_a_script_root() -> None:
    tracker = ListTracker()
    app = flask_shop(tracker, {"/shop/about/<name>": "product:name"})
    client = app.test_client()
    client.get("/about/x1", environ_overrides={"SCRIPT_NAME": "/shop"}).close()
    assert viewed(tracker) == ["x1"]
    tracker.clear()
    app2 = flask_shop(tracker, {"/about/<name>": "product:name"})
    app2.test_client().get("/about/x2", environ_overrides={"SCRIPT_NAME": "/shop"}).close()
    assert viewed(tracker) == ["x2"]


def test_a_rule_that_never_applies_to_its_path_is_named_once(
        caplog: pytest.LogCaptureFixture) -> None:
    state = RequestState("GET", "http", "shop.test", "/p/42", "", "", None, None, None, {},
                         None)
    state.route_template, state.endpoint_name = "/p/{product_ref}/view", "item"
    options = ObserveOptions(route_rules={"/p/<sku>": "product:sku"}, conventions=False)
    with caplog.at_level(logging.WARNING, "cdptrack.observe"):
        for _ in range(3):
            assert resolve_page_source(state, options) == (None, "none")
    warnings = [r.getMessage() for r in caplog.records if "never applied" in r.getMessage()]
    assert len(warnings) == 1
    assert "'/p/<sku>'" in warnings[0] and "/p/{product_ref}/view" in warnings[0]


def test_route_shapes() -> None:
    shapes: dict[str, Any] = {
        "/catalogue/<slug:product_slug>_<int:pk>/": "/catalogue/{}_{}",
        "^catalogue/(?P<product_slug>[\\w-]*)_(?P<pk>\\d+)/$": "catalogue/{}_{}",
        "/products/{id:int}": "/products/{}",
    }
    for template, shape in shapes.items():
        assert route_shape(template) == shape
