"""The Django middleware on a real, database-less Django project driven by its test client.

The project (settings, URLconf, views, templates) lives in this module: Django's settings
are configured once per process, here at import, and each test swaps only ``CDPTRACK``
with ``override_settings`` (which makes the adapter build a fresh observer and tracker).
Sessions are signed cookies; signed-in users come from an in-memory auth backend.
"""

from __future__ import annotations

import asyncio
import logging
import wsgiref.util
from collections.abc import Iterator
from typing import Any

import django_project  # noqa: F401 - configures Django's settings on import
import pytest
from django.conf import settings
from django.contrib.auth import login, logout
from django.contrib.auth.models import User
from django.contrib.auth.signals import user_logged_in
from django.core.handlers.wsgi import WSGIHandler
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.template.response import TemplateResponse
from django.test import AsyncClient, Client, override_settings
from django.urls import include, path, re_path
from django.utils.decorators import method_decorator
from django.views import View
from observe_support import ListTracker, by_api, recording_server

from cdptrack.config import ConfigError
from cdptrack.events import Event
from cdptrack.integrations.django import (
    CDPTrackMiddleware,
    get_tracker,
    route_template,
    tracking,
)
from cdptrack.observe.declare import track
from cdptrack.tracker import Tracker
from cdptrack.wsgi import CDPTrackWSGIMiddleware

# Users are unsaved model instances: no database, so no last_login update on sign-in.
user_logged_in.disconnect(dispatch_uid="update_last_login")

SC = "CDA68358-94FB-4D83-9655-3FEB3C4114A3"
BOOT = {"product_id": "72354", "name": "Boot", "price": 754, "currency": "USD"}
SOCK = {"product_id": "sock-1", "name": "Sock", "price": 5, "currency": "USD"}
CATALOGUE = {p["product_id"]: p for p in (BOOT, SOCK)}
USERS = {"7": User(id=7, username="jane", email="jane@example.com", first_name="Jane",
                   last_name="Smith")}


class MemoryBackend:
    """An authentication backend over ``USERS`` (what a database would hold)."""

    def authenticate(self, request: HttpRequest | None, username: str = "",
                     password: str = "") -> User | None:
        return next((u for u in USERS.values() if u.username == username), None)

    def get_user(self, user_id: Any) -> User | None:
        return USERS.get(str(user_id))


# --- the shop's views -------------------------------------------------------------------


def home(request: HttpRequest) -> HttpResponse:
    return HttpResponse("<h1>Shop</h1>")


def product_detail(request: HttpRequest, product_id: str) -> TemplateResponse:
    product = {**CATALOGUE[product_id], "stock": 3}
    return TemplateResponse(request, "product.html", {"product": product})


def legacy_item(request: HttpRequest, pk: str) -> HttpResponse:
    return HttpResponse(f"<p>item {pk}</p>")


def category(request: HttpRequest, slug: str) -> TemplateResponse:
    return TemplateResponse(request, "category.html", {
        "category": {"name": slug.title(), "slug": slug}, "products": [BOOT, SOCK]})


def search(request: HttpRequest) -> TemplateResponse:
    query = request.GET.get("q", "")
    results = [p for p in CATALOGUE.values() if query.lower() in str(p["name"]).lower()]
    return TemplateResponse(request, "search.html", {"results": results})


def cart_add(request: HttpRequest, product_id: str) -> HttpResponseRedirect:
    cart = dict(request.session.get("cart", {}))
    line = cart.get(product_id) or {**CATALOGUE[product_id], "quantity": 0}
    cart[product_id] = {**line, "quantity": line["quantity"] + 1}
    request.session["cart"] = cart
    return HttpResponseRedirect("/cart/")


def cart_remove(request: HttpRequest, product_id: str) -> HttpResponseRedirect:
    cart = dict(request.session.get("cart", {}))
    cart.pop(product_id, None)
    request.session["cart"] = cart
    return HttpResponseRedirect("/cart/")


def cart_touch(request: HttpRequest) -> HttpResponse:
    # Changes a line in place without marking the session modified: Django saves nothing.
    request.session["cart"]["sock-1"]["quantity"] += 5
    return HttpResponse("<p>not saved</p>")


def wide_item(request: HttpRequest, pid: str, layout: str) -> HttpResponse:
    return HttpResponse(f"<p>{pid} {layout}</p>")


def cart_page(request: HttpRequest) -> HttpResponse:
    request.session.get("cart")
    return HttpResponse("<h1>Cart</h1>")


def checkout(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        lines = list(request.session.get("cart", {}).values())
        total = sum(line["price"] * line["quantity"] for line in lines)
        request.session["last_order"] = {"order_id": "A-1001", "total": total,
                                         "currency": "USD", "products": lines}
        request.session["cart"] = {}
        return HttpResponseRedirect("/checkout/success/")
    return HttpResponse("<h1>Checkout</h1>")


def checkout_success(request: HttpRequest) -> TemplateResponse:
    return TemplateResponse(request, "thanks.html",
                            {"order": request.session.get("last_order")})


def sign_in(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        user = MemoryBackend().authenticate(request, username=request.POST["username"])
        assert user is not None
        login(request, user, backend=f"{__name__}.MemoryBackend")
        return HttpResponseRedirect("/")
    return HttpResponse("<form>sign in</form>")


def sign_out(request: HttpRequest) -> HttpResponseRedirect:
    logout(request)
    return HttpResponseRedirect("/")


def account(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"<p>{request.user.get_username()}</p>")


@track.product_page(key="code")
def offer(request: HttpRequest, code: str) -> HttpResponse:
    track.product(price=5, name="Offer")
    return HttpResponse("<p>offer</p>")


class DepartmentView(View):
    def get(self, request: HttpRequest, name: str) -> HttpResponse:
        return HttpResponse("<p>department</p>")


class BundleView(View):
    @track.product_page(key="sku")
    def get(self, request: HttpRequest, sku: str) -> HttpResponse:
        return HttpResponse("<p>bundle</p>")


@method_decorator(track.order_confirmation(key="number"), name="dispatch")
class ReceiptView(View):
    def get(self, request: HttpRequest, number: str) -> HttpResponse:
        track.order(total=12, currency="EUR")
        return HttpResponse("<p>receipt</p>")


@track.product_page(key="slug")
class ProductPageView(View):
    """A class-based view declared as a whole: the class stays a class (``as_view()``)."""

    def get(self, request: HttpRequest, slug: str) -> TemplateResponse:
        return TemplateResponse(request, "product.html", {"product": {
            "product_id": slug, "name": "Scarf", "price": 30, "in_stock": True}})


class GiftPageView(ProductPageView):
    """Inherits the declaration of its base class."""


@track.ignore()
class StatusView(View):
    def get(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse("<p>ok</p>")


def stream(request: HttpRequest, pid: str) -> StreamingHttpResponse:
    def body() -> Iterator[str]:
        yield "<p>"
        track.product(product_id=pid, price=3)  # runs while the body is sent
        yield "streamed</p>"
    return StreamingHttpResponse(body(), content_type="text/html")


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("view failed")


def static_file(request: HttpRequest, name: str) -> HttpResponse:
    return HttpResponse("body{}", content_type="text/css")


@track.ignore()
def health(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


async def async_product(request: HttpRequest, product_id: str) -> HttpResponse:
    track.product(product_id=product_id, price=9)
    return HttpResponse("<p>async</p>")


shop_patterns = [path("item/<int:pk>/", legacy_item, name="item")]

urlpatterns = [
    path("", home, name="home"),
    path("products/<str:product_id>/", product_detail, name="product_detail"),
    re_path(r"^legacy/goods/(?P<pk>[0-9]+)/$", legacy_item),
    path("shop/", include((shop_patterns, "shop"))),
    path("category/<slug:slug>/", category, name="category_page"),
    path("search/", search, name="search"),
    path("cart/", cart_page, name="cart"),
    path("cart/add/<str:product_id>/", cart_add, name="cart_add"),
    path("cart/touch/", cart_touch),
    path("wide/<str:pid>/", wide_item, {"layout": "wide"}, name="product"),
    path("cart/remove/<str:product_id>/", cart_remove, name="cart_remove"),
    path("checkout/", checkout, name="checkout"),
    path("checkout/success/", checkout_success, name="checkout_success"),
    path("login/", sign_in, name="login"),
    path("logout/", sign_out, name="logout"),
    path("account/", account, name="account"),
    path("offers/<str:code>/", offer),
    path("dept/<str:name>/", track.category_page(key="name")(DepartmentView.as_view())),
    path("bundles/<str:sku>/", BundleView.as_view()),
    path("receipts/<str:number>/", ReceiptView.as_view()),
    path("scarves/<str:slug>/", ProductPageView.as_view(), name="scarf"),
    path("gifts/<str:slug>/", GiftPageView.as_view()),
    path("status/", StatusView.as_view()),
    path("stream/<str:pid>/", stream),
    path("boom/", boom),
    path("assets-v2/<path:name>", static_file),
    path("static/<path:name>", static_file),
    path("health/", health),
    path("async/products/<str:product_id>/", async_product),
]


# --- helpers ------------------------------------------------------------------------------


@pytest.fixture
def tracker() -> Iterator[ListTracker]:
    collected = ListTracker()
    with override_settings(CDPTRACK={"tracker": collected}):
        yield collected


def sc_cookie(response: HttpResponseBase) -> str | None:
    morsel = response.cookies.get("sc")
    return morsel.value if morsel is not None else None


def shopper() -> Client:
    client = Client()
    client.cookies["sc"] = SC
    return client


def props(event: Event) -> dict[str, Any]:
    return dict(event.properties)


# --- page views -----------------------------------------------------------------------------


def test_product_page_gives_page_and_product_viewed_from_the_template_context(
        tracker: ListTracker) -> None:
    response = shopper().get("/products/72354/", HTTP_USER_AGENT="Mozilla/5.0",
                             HTTP_REFERER="https://search.example/")
    assert response.status_code == 200
    assert tracker.labels() == ["page", "Product Viewed"]
    page = tracker.one("page")
    assert page.name == "Product"
    assert page.properties["referrer"] == "https://search.example/"
    viewed = tracker.one("Product Viewed")
    assert props(viewed) == {**BOOT, "in_stock": True}
    assert viewed.visitor.sc == SC
    assert viewed.context["url"] == "http://testserver/products/72354/"
    assert viewed.context["user_agent"] == "Mozilla/5.0"


def test_category_and_search_pages(tracker: ListTracker) -> None:
    client = shopper()
    client.get("/category/boots/")
    listed = props(tracker.one("Product List Viewed"))
    assert (listed["category"], listed["category_id"]) == ("Boots", "boots")
    assert [p["product_id"] for p in listed["products"]] == ["72354", "sock-1"]
    tracker.clear()
    client.get("/search/", {"q": "boot"})
    assert props(tracker.one("Products Searched")) == {"query": "boot", "results": 1}


def test_route_templates_from_includes_and_re_path(tracker: ListTracker) -> None:
    client = shopper()
    client.get("/shop/item/5/")
    client.get("/legacy/goods/6/")
    client.get("/wide/7/")  # url_name "product"; the extra kwargs are not path parameters
    assert [e.properties["product_id"] for e in tracker.named("Product Viewed")] == [
        "5", "6", "7"]
    assert route_template(r"^legacy/goods/(?P<pk>[0-9]+)/$") == "legacy/goods/{pk}/"
    assert route_template(r"^a/(?P<slug>(x|y)+)\.html/?\Z") == "a/{slug}.html/"
    assert route_template("item/<int:pk>/") == "item/<int:pk>/"


def test_declarations_on_function_views_and_class_views(tracker: ListTracker) -> None:
    client = shopper()
    client.get("/offers/SUMMER/")
    assert props(tracker.one("Product Viewed")) == {"product_id": "SUMMER", "price": 5,
                                                     "name": "Offer"}
    tracker.clear()
    client.get("/dept/shoes/")  # track.category_page(...)(View.as_view())
    assert props(tracker.one("Product List Viewed"))["category_id"] == "shoes"
    tracker.clear()
    client.get("/bundles/B-9/")  # a decorated get() method
    assert props(tracker.one("Product Viewed")) == {"product_id": "B-9"}
    tracker.clear()
    client.get("/receipts/R-5/")  # method_decorator(..., name="dispatch")
    assert props(tracker.one("Order Completed")) == {"order_id": "R-5", "total": 12,
                                                      "revenue": 12, "currency": "EUR"}


def test_declarations_on_view_classes_keep_the_class_and_are_found_from_the_route(
        tracker: ListTracker) -> None:
    assert isinstance(ProductPageView, type) and issubclass(ProductPageView, View)
    client = shopper()
    client.get("/scarves/S-1/")
    assert props(tracker.one("Product Viewed")) == {
        "product_id": "S-1", "name": "Scarf", "price": 30, "in_stock": True}
    assert tracker.one("page").name == "Product"
    tracker.clear()
    client.get("/gifts/G-2/")  # a subclass of a declared view
    assert props(tracker.one("Product Viewed"))["product_id"] == "G-2"
    tracker.clear()
    response = Client().get("/status/")  # @track.ignore() on a class: nothing, no cookie
    assert response.status_code == 200
    assert tracker.events == []
    assert sc_cookie(response) is None


# --- the session: cart, order, identity -------------------------------------------------


def test_cart_changes_in_the_session_become_cart_updated(tracker: ListTracker) -> None:
    client = shopper()
    assert client.post("/cart/add/72354/").status_code == 302
    first = props(tracker.one("Cart Updated"))
    assert first["added"] == [{**BOOT, "quantity": 1}]
    assert first["removed"] == []
    assert first["products"] == [{**BOOT, "quantity": 1}]
    assert first["cart_id"] == SC
    tracker.clear()
    client.post("/cart/add/72354/")
    client.post("/cart/add/sock-1/")
    added = [props(e)["added"] for e in tracker.named("Cart Updated")]
    assert added == [[{**BOOT, "quantity": 1}], [{**SOCK, "quantity": 1}]]
    assert props(tracker.named("Cart Updated")[-1])["products"] == [
        {**BOOT, "quantity": 2}, {**SOCK, "quantity": 1}]
    tracker.clear()
    client.post("/cart/remove/72354/")
    removed = props(tracker.one("Cart Updated"))
    assert removed["removed"] == [{**BOOT, "quantity": 2}]
    assert removed["added"] == []
    assert removed["products"] == [{**SOCK, "quantity": 1}]
    tracker.clear()
    client.get("/cart/")  # the view reads the cart: no change, no event
    client.post("/cart/touch/")  # an unsaved change is no change
    assert tracker.labels() == ["page"]


def test_checkout_then_thank_you_sends_order_completed_once(tracker: ListTracker) -> None:
    client = shopper()
    client.post("/cart/add/72354/")
    tracker.clear()
    assert client.post("/checkout/").status_code == 302
    emptied = props(tracker.one("Cart Updated"))  # bought, not removed
    assert (emptied["products"], emptied["removed"]) == ([], [])
    tracker.clear()
    client.get("/checkout/success/")
    order = props(tracker.one("Order Completed"))
    assert order["order_id"] == "A-1001"
    assert (order["total"], order["revenue"], order["currency"]) == (754, 754, "USD")
    assert order["products"] == [{**BOOT, "quantity": 1}]
    assert tracker.one("page").name == "Order Confirmation"
    tracker.clear()
    client.get("/checkout/success/")  # a reload
    assert tracker.named("Order Completed") == []
    assert tracking().stats()["orders_deduplicated"] == 1


def test_sign_in_identifies_once_and_user_fills_the_visitor(tracker: ListTracker) -> None:
    client = shopper()
    client.get("/")
    assert tracker.one("page").visitor.user_id is None
    tracker.clear()
    assert client.post("/login/", {"username": "jane"}).status_code == 302
    identify = tracker.one("identify")
    assert identify.traits == {"user_id": "7", "email": "jane@example.com",
                               "name": "Jane Smith", "external_customer_id": "7"}
    tracker.clear()
    client.get("/account/")
    client.get("/products/72354/")
    assert tracker.labels() == ["page", "page", "Product Viewed"]  # no second identify
    visitor = tracker.one("Product Viewed").visitor
    assert (visitor.user_id, visitor.email, visitor.name) == ("7", "jane@example.com",
                                                              "Jane Smith")
    tracker.clear()
    client.post("/logout/")
    client.get("/")
    assert "identify" not in tracker.labels()
    assert tracker.one("page").visitor.user_id is None


class Customer:
    """A shop's own user object, as a ``user_loader`` returns it."""

    def __init__(self, customer_id: str) -> None:
        self.customer_id = customer_id
        self.email = f"{customer_id}@example.com"


def test_a_user_loader_gives_the_visitor_and_identify_once_not_on_every_request() -> None:
    collected = ListTracker()
    seen: list[str] = []

    def loader(request: HttpRequest) -> Customer | None:
        seen.append(request.path)
        return Customer("c-9") if request.COOKIES.get("member") else None

    with override_settings(CDPTRACK={"tracker": collected, "user_loader": loader}):
        client = shopper()
        client.cookies["member"] = "1"
        client.get("/")
        client.post("/cart/add/72354/")
        client.get("/")
    assert seen == ["/", "/cart/add/72354/", "/"]
    # The user first appears for this visitor on the first request: identified once.
    assert collected.labels() == ["identify", "page", "Cart Updated", "page"]
    visitor = collected.named("Cart Updated")[0].visitor
    assert (visitor.external_customer_id, visitor.email) == ("c-9", "c-9@example.com")


def test_middleware_listed_before_the_session_is_reported(
        tracker: ListTracker, caplog: pytest.LogCaptureFixture) -> None:
    wrong = ["cdptrack.integrations.django.CDPTrackMiddleware",
             "django.contrib.sessions.middleware.SessionMiddleware"]
    with override_settings(MIDDLEWARE=wrong), caplog.at_level(logging.WARNING, "cdptrack"):
        CDPTrackMiddleware(lambda request: HttpResponse())
    assert ["SessionMiddleware" in r.getMessage() for r in caplog.records] == [True]


# --- what is never tracked ----------------------------------------------------------------


def test_404_head_static_bot_and_ignored_views_send_nothing(tracker: ListTracker) -> None:
    client = Client()
    responses = [
        client.get("/nope/"),
        client.head("/products/72354/"),
        client.get("/static/app.css"),
        client.get("/assets-v2/app.css"),  # settings.STATIC_URL
        client.get("/products/72354/", HTTP_USER_AGENT="Googlebot/2.1"),
        client.get("/health/"),
    ]
    assert [r.status_code for r in responses] == [404, 200, 200, 200, 200, 200]
    assert tracker.events == []
    assert [sc_cookie(r) for r in responses] == [None] * 6


def test_response_unchanged_apart_from_the_sc_cookie(tracker: ListTracker) -> None:
    others = [m for m in settings.MIDDLEWARE if "cdptrack" not in m]
    for target in ("/", "/products/72354/", "/category/boots/"):
        tracker.clear()
        tracked = Client().get(target)
        with override_settings(MIDDLEWARE=others):
            plain = Client().get(target)
        assert tracked.content == plain.content
        assert list(tracked.items()) == list(plain.items())  # no Vary: Cookie either
        assert tracked.status_code == plain.status_code
        new_sc = sc_cookie(tracked)
        assert new_sc is not None and sc_cookie(plain) is None
        assert tracked.cookies["sc"].output() == (
            f"Set-Cookie: sc={new_sc}; Max-Age=63072000; Path=/; SameSite=Lax")
        assert {e.visitor.sc for e in tracker.events} == {new_sc}  # the cookie is the visitor
    # a returning visitor keeps the cookie and gets no new one
    assert sc_cookie(shopper().get("/")) is None


def test_no_vary_cookie_added_when_the_view_ignores_the_session(
        tracker: ListTracker) -> None:
    client = shopper()
    client.post("/cart/add/72354/")  # now there is a session cookie
    response = client.get("/")
    assert "Vary" not in response.headers
    assert tracker.labels()[-1] == "page"


# --- timing: after the response ------------------------------------------------------------


def wsgi_environ(path_info: str) -> dict[str, Any]:
    environ: dict[str, Any] = {"PATH_INFO": path_info, "HTTP_COOKIE": f"sc={SC}",
                               "HTTP_HOST": "testserver"}
    wsgiref.util.setup_testing_defaults(environ)
    return environ


def test_events_are_built_when_the_server_closes_the_response(tracker: ListTracker) -> None:
    handler = WSGIHandler()
    seen: list[str] = []
    body = handler(wsgi_environ("/products/72354/"), lambda status, headers: seen.append(status))
    assert seen == ["200 OK"]
    assert b"".join(body) == b"<h1>Boot</h1>"
    assert tracker.events == []  # the body is out, the server has not closed it yet
    body.close()  # type: ignore[attr-defined]
    assert tracker.labels() == ["page", "Product Viewed"]
    body.close()  # type: ignore[attr-defined]
    assert len(tracker.events) == 2  # a second close reports nothing twice


def test_streaming_response_events_after_the_stream_with_calls_inside_it(
        tracker: ListTracker) -> None:
    response = shopper().get("/stream/42/")
    assert tracker.events == []
    assert b"".join(response.streaming_content) == b"<p>streamed</p>"  # type: ignore[attr-defined]
    assert props(tracker.one("Product Viewed")) == {"product_id": "42", "price": 3}


def test_under_the_outer_wsgi_middleware_events_are_built_once(tracker: ListTracker) -> None:
    outer_tracker = ListTracker()
    app = CDPTrackWSGIMiddleware(WSGIHandler(), outer_tracker)
    headers: list[tuple[str, str]] = []
    environ = wsgi_environ("/products/72354/")
    environ["HTTP_COOKIE"] = ""
    body = app(environ, lambda status, hdrs: headers.extend(hdrs))
    b"".join(body)
    body.close()  # type: ignore[attr-defined]
    assert tracker.events == []
    assert outer_tracker.labels() == ["page", "Product Viewed"]
    assert props(outer_tracker.one("Product Viewed"))["name"] == "Boot"  # Django's context
    assert [v for k, v in headers if k == "Set-Cookie" and v.startswith("sc=")] == [
        f"sc={outer_tracker.events[0].visitor.sc}; Max-Age=63072000; Path=/; SameSite=Lax"]


def test_under_asgi_with_an_async_view(tracker: ListTracker) -> None:
    async def journey() -> tuple[HttpResponseBase, HttpResponseBase]:
        client = AsyncClient()
        client.cookies["sc"] = SC
        first = await client.get("/async/products/9/")
        second = await client.post("/cart/add/sock-1/")
        return first, second

    first, second = asyncio.run(journey())
    assert (first.status_code, second.status_code) == (200, 302)
    assert props(tracker.one("Product Viewed")) == {"product_id": "9", "price": 9}
    assert props(tracker.one("Cart Updated"))["added"] == [{**SOCK, "quantity": 1}]


# --- failures stay in cdptrack; the shop's own errors stay the shop's -------------------


def test_exception_in_a_view_propagates_as_django_would(
        tracker: ListTracker, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="cdptrack"), \
            pytest.raises(RuntimeError, match="view failed"):
        Client().get("/boom/")
    response = Client(raise_request_exception=False).get("/boom/")
    assert response.status_code == 500
    assert sc_cookie(response) is None
    assert tracker.events == []
    assert [r for r in caplog.records if r.name.startswith("cdptrack")] == []
    assert tracking().stats().get("errors", 0) == 0


class ExplodingTracker:
    def capture(self, event: Event) -> None:
        raise RuntimeError("tracker down")


def test_a_failing_tracker_is_counted_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    with override_settings(CDPTRACK={"tracker": ExplodingTracker()}), \
            caplog.at_level(logging.WARNING, logger="cdptrack"):
        response = shopper().get("/products/72354/")
        assert response.status_code == 200
        assert response.content == b"<h1>Boot</h1>"
        assert tracking().stats()["errors_finish"] == 1
    assert any("error in finish" in r.getMessage() for r in caplog.records)


# --- settings -----------------------------------------------------------------------------


def test_settings_dict_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    collected = ListTracker()
    monkeypatch.setenv("CDPTRACK_COOKIE_DOMAIN", "shop.example")
    monkeypatch.setenv("CDPTRACK_COOKIE_NAME", "from-env")
    with override_settings(CDPTRACK={"tracker": collected, "cookie_name": "vid",
                                     "cookie_max_age": 600,
                                     "route_rules": {"home": "category:slug"}}):
        response = Client().get("/")
        assert get_tracker() is collected
        options = tracking().observer.options
    vid = response.cookies["vid"]
    assert vid.output() == (f"Set-Cookie: vid={vid.value}; Domain=shop.example; Max-Age=600; "
                            "Path=/; SameSite=Lax")
    assert options.session_cookie_name == settings.SESSION_COOKIE_NAME
    assert collected.labels() == ["page", "Product List Viewed"]  # the rule on url_name


def test_currency_from_the_environment_and_the_setting_winning(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDPTRACK_CURRENCY", "EUR")
    for setting, expected in (({}, "EUR"), ({"currency": "USD"}, "USD")):
        collected = ListTracker()
        with override_settings(CDPTRACK={"tracker": collected, **setting}):
            shopper().get("/offers/SUMMER/")  # track.product(price=5): no currency
        assert collected.one("Product Viewed").properties["currency"] == expected


def test_settings_mistakes_fail_at_start_up_not_in_requests() -> None:
    with override_settings(CDPTRACK={"cookie_nmae": "x"}), pytest.raises(ConfigError):
        CDPTrackMiddleware(lambda request: HttpResponse())
    with override_settings(CDPTRACK={"tracker": ListTracker(), "yespo_site_id": "1"}), \
            pytest.raises(ValueError, match="yespo_site_id"):
        tracking()


def test_tracker_made_from_settings_is_one_per_process() -> None:
    with override_settings(CDPTRACK={"yespo_site_id": "site-1", "dry_run": True}):
        made = get_tracker()
        assert isinstance(made, Tracker)
        assert made.config.yespo_site_id == "site-1"
        assert tracking().owns_tracker
        Client().get("/")
        Client().get("/")  # a new handler, new middleware instances: the same tracker
        assert get_tracker() is made
        made.shutdown(5)


# --- end to end: the real Tracker to local APIs -----------------------------------------------




def test_a_shopper_journey_reaches_each_api_through_the_real_tracker() -> None:
    with recording_server() as server:
        base = server.url
        with override_settings(CDPTRACK={
            "yespo_site_id": "site-1", "yespo_api_key": "yespo-key",
            "customerio_api_key": "cio-key", "orangepill_api_key": "op-key",
            "yespo_tracker_url": f"{base}/yespo-tracker", "yespo_api_url": f"{base}/yespo-api",
            "customerio_url": f"{base}/cio", "orangepill_url": f"{base}/orangepill",
        }):
            client = Client()
            client.post("/login/", {"username": "jane"})
            client.get("/category/boots/")
            client.get("/products/72354/")
            client.post("/cart/add/72354/")
            client.get("/search/", {"q": "boot"})
            client.post("/checkout/")
            client.get("/checkout/success/")
            client.get("/checkout/success/")
            made = get_tracker()
            assert isinstance(made, Tracker)
            assert made.flush(10)
            apis = by_api(server.snapshot())
            made.shutdown(5)
    tracker_api, cio = apis["yespo_tracker"], apis["customerio"]
    for name in ("CustomerData", "CategoryPage", "ProductPage", "StatusCart",
                 "SearchRequest"):
        assert tracker_api[name] >= 1, (name, tracker_api)
    assert tracker_api["PurchasedItems"] == 1
    assert apis["yespo_events"]["orderCreated"] == 1
    # The shop knows no Orangepill identity: the tracker creates the person first.
    assert apis["orangepill"]["POST person"] == 1
    assert apis["orangepill"]["POST orderCompleted"] == 1
    for name in ("identify", "Product List Viewed", "Product Viewed", "Product Added",
                 "Products Searched"):
        assert cio[name] >= 1, (name, cio)
    assert cio["Order Completed"] == 1
    assert all("key" not in r.path for r in server.snapshot())


def test_the_cdptrack_setting_sets_the_shutdown_budget() -> None:
    with override_settings(CDPTRACK={"flush_at_exit": 3, "handle_signals": False}):
        assert get_tracker().shutdown_budget == 3.0  # type: ignore[attr-defined]
