"""The Flask extension on real Flask apps: conventions, settings, hooks and streaming."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from flask import Blueprint, Flask, render_template_string, session, stream_with_context
from observe_support import ListTracker
from werkzeug.test import TestResponse

from cdptrack import Config, ConfigError, Visitor
from cdptrack.destinations import render_event
from cdptrack.integrations.flask import CDPTrack
from cdptrack.observe.declare import track

SC = "CDA68358-94FB-4D83-9655-3FEB3C4114A3"


def get(client: Any, path: str, **kwargs: Any) -> TestResponse:
    response: TestResponse = client.get(path, **kwargs)
    response.close()  # the WSGI close() is when events are built
    return response


def build_app(tracker: ListTracker, **options: Any) -> Flask:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = "test"
    shop = Blueprint("shop", __name__, url_prefix="/shop")

    @shop.get("/item/<int:item_id>")
    def product_detail(item_id: int) -> str:
        return render_template_string(
            "<h1>{{ product.name }}</h1>",
            product={"id": item_id, "name": "Boot", "price": "19.90", "stock": 0})

    @shop.get("/offers/<code>")
    @track.product_page(key="code")
    def offer(code: str) -> dict[str, Any]:
        return {"product": {"product_id": code, "price": 5, "name": "Offer"}}

    @track.category_page(key="name")  # above @route: found from the endpoint's mark
    @shop.get("/dept/<name>")
    def department(name: str) -> str:
        return "<p>dept</p>"

    @app.get("/plain")
    def plain() -> str:
        return "<p>plain</p>"

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("view failed")

    @app.get("/stream/<pid>")
    def stream(pid: str) -> Any:
        def body() -> Iterator[str]:
            yield "<p>"
            track.product(product_id=pid, price=3)  # runs while the body is sent
            yield "streamed</p>"
        return app.response_class(stream_with_context(body()), mimetype="text/html")

    @app.post("/signin")
    def signin() -> tuple[str, int, dict[str, str]]:
        session["user_id"] = "u-1"
        session["email"] = "u1@example.com"
        return "", 303, {"Location": "/"}

    app.register_blueprint(shop)
    CDPTrack(app, tracker=tracker, **options)
    return app


def test_blueprint_prefix_template_context_and_decorators() -> None:
    tracker = ListTracker()
    client = build_app(tracker).test_client()
    get(client, "/shop/item/7")
    viewed = tracker.one("Product Viewed")
    assert viewed.properties == {"product_id": "7", "name": "Boot", "price": 19.9,
                                 "in_stock": False}
    assert tracker.one("page").name == "Product"
    tracker.clear()
    get(client, "/shop/offers/SUMMER")
    assert tracker.one("Product Viewed").properties == {
        "product_id": "SUMMER", "price": 5, "name": "Offer"}
    tracker.clear()
    get(client, "/shop/dept/boots")
    assert tracker.one("Product List Viewed").properties["category_id"] == "boots"


def test_settings_from_app_config_and_init_app_pattern() -> None:
    tracker = ListTracker()
    extension = CDPTrack(tracker=tracker)
    app = Flask(__name__)
    app.config.update(SECRET_KEY="x", CDPTRACK_COOKIE_NAME="vid",
                      CDPTRACK_COOKIE_MAX_AGE="600")
    app.get("/")(lambda: "<p>home</p>")
    extension.init_app(app)
    extension.init_app(app)  # a second init is a no-op
    response = get(app.test_client(), "/")
    assert response.headers.getlist("Set-Cookie") == [
        f"vid={tracker.one('page').visitor.sc}; Max-Age=600; Path=/; SameSite=Lax"]
    assert CDPTrack.state(app).observer.options.cookie_name == "vid"
    assert not hasattr(extension, "app")


def test_response_identical_to_the_unwrapped_app_and_no_vary_cookie() -> None:
    tracker = ListTracker()
    app = build_app(tracker)
    tracked_client = app.test_client()
    from werkzeug.test import Client
    plain_client = Client(app.wsgi_app.app)  # type: ignore[attr-defined]
    for client in (tracked_client, plain_client):
        client.set_cookie("sc", SC)
    for path in ("/plain", "/shop/item/7"):
        tracked, plain = get(tracked_client, path), get(plain_client, path)
        assert tracked.get_data() == plain.get_data()
        assert tracked.headers.to_wsgi_list() == plain.headers.to_wsgi_list()
        assert "Vary" not in tracked.headers
    assert tracker.labels() == ["page", "page", "Product Viewed"]


def test_streamed_body_events_after_close_with_calls_inside_the_stream() -> None:
    tracker = ListTracker()
    client = build_app(tracker).test_client()
    response = client.get("/stream/42")
    assert response.get_data() == b"<p>streamed</p>"
    response.close()
    assert tracker.one("Product Viewed").properties == {"product_id": "42", "price": 3}


def test_exception_in_view_gives_500_and_no_events() -> None:
    tracker = ListTracker()
    app = build_app(tracker)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    response = get(app.test_client(), "/boom")
    assert response.status_code == 500
    assert tracker.events == []
    assert "Set-Cookie" not in response.headers


def test_sign_in_identifies_with_session_identity() -> None:
    tracker = ListTracker()
    client = build_app(tracker).test_client()
    response = client.post("/signin")
    response.close()
    event = tracker.one("identify")
    assert event.traits == {"email": "u1@example.com", "user_id": "u-1",
                            "external_customer_id": "u-1"}
    assert event.visitor.user_id == "u-1"


class FakeLoginUser:
    """Flask-Login's ``current_user`` shape: ``is_authenticated`` and ``get_id()``."""

    def __init__(self, authenticated: bool) -> None:
        self.is_authenticated = authenticated
        self.email = "login@example.com"

    def get_id(self) -> str:
        return "42"


@pytest.mark.parametrize("authenticated", [True, False])
def test_user_loader_runs_in_the_request_context(authenticated: bool) -> None:
    tracker = ListTracker()
    seen: list[str] = []

    def loader(request: Any) -> FakeLoginUser:
        seen.append(request.path)
        return FakeLoginUser(authenticated)

    client = build_app(tracker, user_loader=loader).test_client()
    get(client, "/plain")
    visitor = tracker.one("page").visitor
    assert seen == ["/plain"]
    if authenticated:
        assert (visitor.user_id, visitor.email) == ("42", "login@example.com")
    else:
        assert visitor.user_id is None and visitor.email is None


class SessionLoginUser:
    """A Flask-Login-like ``current_user`` read from the ``_user_id`` session key, with
    an email only the user record has (the session does not carry it)."""

    def __init__(self, user_id: str | None) -> None:
        self.is_authenticated = user_id is not None
        self.user_id = user_id
        self.email = "login@example.com" if user_id is not None else None

    def get_id(self) -> str | None:
        return self.user_id


def build_login_app(tracker: ListTracker) -> Flask:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = "test"

    @app.post("/login")
    def login() -> tuple[str, int, dict[str, str]]:
        session["_user_id"] = "42"  # what flask_login.login_user() stores
        return "", 303, {"Location": "/"}

    @app.get("/")
    def home() -> str:
        return "<p>home</p>"

    @app.post("/checkout")
    def checkout() -> tuple[str, int, dict[str, str]]:
        session["email"] = "new@example.com"
        return "", 303, {"Location": "/"}

    @app.post("/profile")
    def profile() -> str:
        track.identify(phone="380501234567")
        return "<p>saved</p>"

    def loader(request: Any) -> SessionLoginUser:
        return SessionLoginUser(session.get("_user_id"))

    CDPTrack(app, tracker=tracker, user_loader=loader)
    return app


def test_user_loader_identifies_once_at_sign_in_not_on_every_request() -> None:
    tracker = ListTracker()
    client = build_login_app(tracker).test_client()
    client.post("/login").close()
    get(client, "/")
    get(client, "/")
    identify = tracker.one("identify")
    assert identify.traits == {"email": "login@example.com", "user_id": "42",
                               "external_customer_id": "42"}
    pages = tracker.named("page")
    assert len(pages) == 2
    assert all((p.visitor.user_id, p.visitor.email) == ("42", "login@example.com")
               for p in pages)


def test_user_loader_identifies_again_when_the_identity_changes() -> None:
    tracker = ListTracker()
    client = build_login_app(tracker).test_client()
    client.post("/login").close()
    tracker.clear()
    client.post("/checkout").close()  # a new email in the session: a changed identity
    assert tracker.one("identify").traits["email"] == "new@example.com"
    tracker.clear()
    get(client, "/")
    assert tracker.named("identify") == []
    client.post("/profile").close()  # an explicit track.identify()
    assert tracker.one("identify").traits["phone"] == "380501234567"


def test_declarations_on_method_view_classes() -> None:
    from flask.views import MethodView

    @track.product_page(key="sku")
    class ProductAPI(MethodView):
        def get(self, sku: str) -> str:
            return render_template_string(
                "<h1>{{ product.name }}</h1>", product={"id": sku, "name": "Hat", "price": 8})

    @track.ignore()
    class StatusAPI(MethodView):
        def get(self) -> str:
            return "<p>ok</p>"

    assert isinstance(ProductAPI, type) and issubclass(ProductAPI, MethodView)
    tracker = ListTracker()
    app = Flask(__name__)
    app.add_url_rule("/hats/<sku>", view_func=ProductAPI.as_view("hat"))
    app.add_url_rule("/status", view_func=StatusAPI.as_view("status"))
    CDPTrack(app, tracker=tracker)
    client = app.test_client()
    get(client, "/hats/H-1")
    assert tracker.one("Product Viewed").properties == {
        "product_id": "H-1", "name": "Hat", "price": 8}
    tracker.clear()
    response = get(app.test_client(), "/status")
    assert response.status_code == 200
    assert tracker.events == []
    assert "Set-Cookie" not in response.headers


def test_page_views_generic_leaves_pages_with_their_own_event_out_of_single_apis() -> None:
    config = Config(yespo_site_id="site", yespo_api_key="k1", customerio_api_key="k2",
                    orangepill_api_key="k3")
    tracker = ListTracker()
    client = build_app(tracker, page_views="generic").test_client()
    get(client, "/shop/item/7", headers={"Cookie": f"sc={SC}"})
    page, viewed = tracker.one("page"), tracker.one("Product Viewed")
    assert tracker.labels() == ["page", "Product Viewed"]
    assert page.properties["page_event"] == "Product Viewed"
    # A visitor every API can take (Yespo v1/event needs an email, Orangepill an id).
    known = Visitor(sc=SC, email="jane@example.com", orangepill_identity="634b5621")
    page, viewed = replace(page, visitor=known), replace(viewed, visitor=known)
    rendered = render_event(page, config)
    assert sorted(rendered.skipped) == [("orangepill", "page_has_own_event"),
                                        ("yespo_events", "page_has_own_event"),
                                        ("yespo_tracker", "no_mapping")]
    (message,) = [json.loads(r.body_bytes()) for r in rendered.requests]
    assert message["type"] == "page" and "page_event" not in message["properties"]
    # The product view itself still goes everywhere.
    assert {r.destination for r in render_event(viewed, config).requests} == {
        "yespo_tracker", "yespo_events", "customerio", "orangepill"}
    # A page without an event of its own is a page view everywhere, unmarked.
    tracker.clear()
    get(client, "/plain", headers={"Cookie": f"sc={SC}"})
    assert "page_event" not in tracker.one("page").properties


def test_page_views_all_is_the_default_and_other_values_are_refused() -> None:
    tracker = ListTracker()
    get(build_app(tracker).test_client(), "/shop/item/7")
    assert "page_event" not in tracker.one("page").properties
    with pytest.raises(ConfigError, match="page_views"):
        build_app(ListTracker(), page_views="none")
