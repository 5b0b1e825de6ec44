"""Both example shops driven like a shopper would: the exact canonical events per step,
nothing for 404s, HEAD, static files, bots or a visitor without consent, unchanged
responses, and (with the real Tracker and a local recording server) the requests that
reach each API, in-process and from a real server process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from observe_support import ListTracker, by_api, recording_server
from support.servers import free_port

from cdptrack.config import Config
from cdptrack.examples.fastapi_shop.app import create_app as create_fastapi_shop
from cdptrack.examples.flask_shop.app import create_app as create_flask_shop
from cdptrack.integrations.flask import CDPTrack

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

EMAIL = "jane@example.com"
BOT = "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"


# --- Flask storefront -----------------------------------------------------------------------


class FlaskShopper:
    def __init__(self, app: Any, tracker: ListTracker | None = None) -> None:
        self.client = app.test_client()
        self.tracker = tracker

    def __call__(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.client.open(path, method=method, **kwargs)
        response.close()  # the end of the WSGI response: events are built now
        return response

    def step(self, method: str, path: str, **kwargs: Any) -> list[str] | None:
        if self.tracker is not None:
            self.tracker.clear()
        self(method, path, **kwargs)
        return self.tracker.labels() if self.tracker is not None else None


def flask_journey(shop: FlaskShopper) -> dict[str, Any]:
    """Walk the storefront; returns the events of each step (with a ListTracker)."""
    steps: dict[str, Any] = {}
    steps["home"] = shop.step("GET", "/")
    steps["category"] = shop.step("GET", "/category/shoes")
    steps["product"] = shop.step("GET", "/product/101")
    steps["add 101 x2"] = shop.step("POST", "/cart/add", data={"product_id": "101",
                                                               "quantity": "2"})
    steps["add 201"] = shop.step("POST", "/cart/add", data={"product_id": "201"})
    steps["remove 101"] = shop.step("POST", "/cart/remove", data={"product_id": "101"})
    steps["cart"] = shop.step("GET", "/cart")
    steps["search"] = shop.step("GET", "/search?q=leather")
    steps["wishlist"] = shop.step("POST", "/wishlist/add/302")
    steps["login form"] = shop.step("GET", "/login")
    steps["login"] = shop.step("POST", "/login", data={"email": EMAIL, "name": "Jane"})
    if shop.tracker is not None:
        shop.tracker.clear()
    response = shop("POST", "/checkout", data={"email": EMAIL})
    steps["checkout"] = shop.tracker.labels() if shop.tracker else None
    thank_you = response.headers["Location"]
    steps["thank you"] = shop.step("GET", thank_you)
    steps["thank you again"] = shop.step("GET", thank_you)
    steps["add 303"] = shop.step("POST", "/cart/add", data={"product_id": "303"})
    steps["empty"] = shop.step("POST", "/cart/clear")
    steps["order_id"] = thank_you.rsplit("/", 1)[-1]
    return steps


def test_flask_shop_journey_gives_exactly_the_expected_events() -> None:
    tracker = ListTracker()
    shop = FlaskShopper(create_flask_shop(tracker=tracker), tracker)
    steps = flask_journey(shop)
    assert {k: v for k, v in steps.items() if k != "order_id"} == {
        "home": ["page"],
        "category": ["page", "Product List Viewed"],
        "product": ["page", "Product Viewed"],
        "add 101 x2": ["Cart Updated"],
        "add 201": ["Cart Updated"],
        "remove 101": ["Cart Updated"],
        "cart": ["page"],
        "search": ["page", "Products Searched"],
        "wishlist": ["Product Added to Wishlist"],
        "login form": ["page"],
        "login": ["identify"],
        "checkout": ["identify", "Cart Updated"],
        "thank you": ["page", "Order Completed"],
        "thank you again": ["page"],
        "add 303": ["Cart Updated"],
        "empty": ["Cart Updated"],
    }


def test_flask_shop_event_details() -> None:
    tracker = ListTracker()
    shop = FlaskShopper(create_flask_shop(tracker=tracker), tracker)
    shop.step("GET", "/product/103")
    assert tracker.one("Product Viewed").properties == {
        "product_id": "103", "sku": "SKU-103", "name": "Leather Boot", "price": 149.0,
        "currency": "USD", "category": "Shoes", "brand": "Hollis", "in_stock": True}
    shop.step("GET", "/category/bags")
    listed = tracker.one("Product List Viewed").properties
    assert (listed["category"], listed["category_id"], listed["list_id"]) == (
        "Bags", "bags", "bags")
    assert [p["product_id"] for p in listed["products"]] == ["301", "302", "303", "304"]
    shop.step("POST", "/cart/add", data={"product_id": "103", "quantity": "3"})
    shop.step("POST", "/cart/add", data={"product_id": "301"})
    shop.step("POST", "/cart/remove", data={"product_id": "103"})
    cart = tracker.one("Cart Updated").properties
    assert cart["products"] == [{"product_id": "301", "name": "Daypack 20L", "price": 59.0,
                                 "quantity": 1}]
    assert cart["added"] == []
    assert cart["removed"] == [{"product_id": "103", "name": "Leather Boot", "price": 149.0,
                                "quantity": 3}]
    assert cart["currency"] == "USD" and cart["cart_id"] == tracker.events[0].visitor.sc
    shop.step("POST", "/cart/clear")
    assert tracker.one("Cart Updated").properties["products"] == []
    shop.step("POST", "/cart/add", data={"product_id": "301"})
    shop("POST", "/login", data={"email": EMAIL})
    response = shop("POST", "/checkout", data={"email": EMAIL})
    shop.step("GET", response.headers["Location"])
    order = tracker.one("Order Completed")
    assert order.properties["order_id"] == response.headers["Location"].rsplit("/", 1)[-1]
    assert (order.properties["total"], order.properties["revenue"]) == (59.0, 59.0)
    assert order.properties["products"][0]["product_id"] == "301"
    assert (order.visitor.email, order.visitor.user_id) == (EMAIL, "u-jane")
    # The shop keeps no Orangepill identity: the tracker creates one when it delivers.
    assert order.visitor.orangepill_identity is None


def test_flask_shop_guest_checkout_identifies_by_email() -> None:
    tracker = ListTracker()
    shop = FlaskShopper(create_flask_shop(tracker=tracker), tracker)
    shop("POST", "/cart/add", data={"product_id": "201"})
    labels = shop.step("POST", "/checkout", data={"email": "guest@example.com"})
    assert labels == ["identify", "Cart Updated"]
    assert tracker.one("identify").traits == {"email": "guest@example.com"}
    # The cart emptied because it was bought, not because lines were removed.
    cart = tracker.one("Cart Updated").properties
    assert (cart["products"], cart["added"], cart["removed"]) == ([], [], [])


@pytest.mark.parametrize(("method", "path", "headers"), [
    ("GET", "/product/999", {}),
    ("GET", "/nowhere", {}),
    ("HEAD", "/product/101", {}),
    ("GET", "/static/style.css", {}),
    ("GET", "/product/101", {"User-Agent": BOT}),
    ("GET", "/product/101", {"Sec-Purpose": "prefetch"}),
    ("GET", "/product/101", {"Sec-GPC": "1"}),
])
def test_flask_shop_sends_nothing_for(method: str, path: str, headers: dict[str, str]) -> None:
    tracker = ListTracker()
    shop = FlaskShopper(create_flask_shop(tracker=tracker), tracker)
    response = shop(method, path, headers=headers)
    assert tracker.events == []
    assert "sc=" not in " ".join(response.headers.getlist("Set-Cookie"))


def test_flask_shop_without_consent_cookie_sends_nothing() -> None:
    tracker = ListTracker()
    shop = FlaskShopper(create_flask_shop(tracker=tracker, consent_cookie="cookie_consent"),
                        tracker)
    assert shop.step("GET", "/product/101") == []
    shop.client.set_cookie("cookie_consent", "granted")
    assert shop.step("GET", "/product/101") == ["page", "Product Viewed"]


def test_flask_shop_responses_unchanged_except_sc_cookie() -> None:
    from werkzeug.test import Client
    app = create_flask_shop(tracker=ListTracker())
    tracked, plain = Client(app), Client(app.wsgi_app.app)
    for path in ("/", "/category/shoes", "/product/101", "/search?q=boot", "/cart"):
        a, b = tracked.get(path), plain.get(path)
        assert a.get_data() == b.get_data()
        extra = [h for h in a.headers.to_wsgi_list() if h not in b.headers.to_wsgi_list()]
        assert all(name == "Set-Cookie" and value.startswith("sc=") for name, value in extra)
        a.close()
        b.close()


# --- FastAPI shop ---------------------------------------------------------------------------


def fastapi_journey(client: Any, tracker: ListTracker | None) -> dict[str, Any]:
    steps: dict[str, Any] = {}

    def step(name: str, method: str, path: str, **kwargs: Any) -> Any:
        if tracker is not None:
            tracker.clear()
        response = client.request(method, path, **kwargs)
        steps[name] = tracker.labels() if tracker is not None else None
        return response

    step("home", "GET", "/")
    step("category", "GET", "/api/categories/jackets")
    step("product", "GET", "/api/products/202")
    step("add 202", "POST", "/api/cart/items", json={"product_id": "202", "quantity": 2})
    step("add 301", "POST", "/api/cart/items", json={"product_id": "301"})
    step("remove 202", "DELETE", "/api/cart/items/202")
    step("cart", "GET", "/api/cart")
    step("search", "GET", "/api/search", params={"q": "bag"})
    step("wishlist", "POST", "/api/wishlist/add/101")
    step("login", "POST", "/api/login", json={"email": EMAIL})
    confirmation = step("checkout", "POST", "/api/checkout", json={}).json()["confirmation_url"]
    step("thank you", "GET", confirmation)
    step("thank you again", "GET", confirmation)
    step("add 101", "POST", "/api/cart/items", json={"product_id": "101"})
    step("empty", "DELETE", "/api/cart")
    step("missing", "GET", "/api/products/999")
    step("head", "HEAD", "/api/products/101")
    step("bot", "GET", "/api/products/101", headers={"User-Agent": BOT})
    step("gpc", "GET", "/api/products/101", headers={"Sec-GPC": "1"})
    return steps


FASTAPI_EXPECTED = {
    "home": [],  # JSON, not a tracked page kind with an event; no HTML page view
    "category": ["Product List Viewed"],
    "product": ["Product Viewed"],
    "add 202": ["Cart Updated"],
    "add 301": ["Cart Updated"],
    "remove 202": ["Cart Updated"],
    "cart": [],
    "search": ["Products Searched"],
    "wishlist": ["Product Added to Wishlist"],
    "login": ["identify"],
    # The checkout answers with the order id: the order is reported when placed (its
    # total and lines from the session's last order), the confirmation page adds none.
    "checkout": ["identify", "Order Completed", "Cart Updated"],
    "thank you": [],
    "thank you again": [],
    "add 101": ["Cart Updated"],
    "empty": ["Cart Updated"],
    "missing": [],
    "head": [],
    "bot": [],
    "gpc": [],
}


def test_fastapi_shop_journey_gives_exactly_the_expected_events() -> None:
    tracker = ListTracker()
    with TestClient(create_fastapi_shop(tracker=tracker)) as client:
        steps = fastapi_journey(client, tracker)
    assert steps == FASTAPI_EXPECTED


def test_fastapi_shop_event_details() -> None:
    tracker = ListTracker()
    client = TestClient(create_fastapi_shop(tracker=tracker))
    client.get("/api/products/202")
    assert tracker.one("Product Viewed").properties == {
        "product_id": "202", "name": "Down Parka", "price": 249.0, "currency": "USD",
        "category": "Jackets", "brand": "Hollis", "in_stock": True}
    tracker.clear()
    client.get("/api/search", params={"q": "leather"})
    assert tracker.one("Products Searched").properties == {"query": "leather", "results": 2}
    tracker.clear()
    client.post("/api/cart/items", json={"product_id": "301", "quantity": 2})
    cart = tracker.one("Cart Updated").properties
    assert cart["added"][0]["quantity"] == 2 and cart["added"][0]["name"] == "Daypack 20L"
    assert cart["added"][0]["price"] == 59.0  # from the catalogue loader


def test_fastapi_shop_responses_unchanged_except_sc_cookie() -> None:
    tracked_app = create_fastapi_shop(tracker=ListTracker())
    plain_app = create_fastapi_shop(tracker=ListTracker())
    plain_app.user_middleware = [m for m in plain_app.user_middleware
                                 if "CDPTrack" not in repr(m.cls)]
    tracked, plain = TestClient(tracked_app), TestClient(plain_app)
    for path in ("/", "/api/categories/bags", "/api/products/101", "/api/search?q=bag"):
        a, b = tracked.get(path), plain.get(path)
        assert a.content == b.content
        extra = [h for h in a.headers.multi_items() if h not in b.headers.multi_items()]
        assert all(k == "set-cookie" and v.startswith("sc=") for k, v in extra)


# --- with the real Tracker and local APIs ----------------------------------------------------


def api_config(base: str) -> Config:
    return Config(yespo_site_id="site-1", yespo_api_key="yespo-key", customerio_api_key="cio-key",
                  orangepill_api_key="op-key", yespo_tracker_url=f"{base}/yespo-tracker",
                  yespo_api_url=f"{base}/yespo-api", customerio_url=f"{base}/cio",
                  orangepill_url=f"{base}/orangepill")




def check_api_traffic(apis: dict[str, Counter[str]]) -> None:
    # Exactly one order everywhere, however often the thank-you page was loaded.
    assert apis["yespo_tracker"]["PurchasedItems"] == 1
    assert apis["yespo_events"]["orderCreated"] == 1
    assert apis["customerio"]["Order Completed"] == 1
    assert apis["orangepill"]["POST orderCompleted"] == 1
    tracker = apis["yespo_tracker"]
    for name in ("CategoryPage", "ProductPage", "StatusCart", "SearchRequest",
                 "AddToWishlist", "CustomerData"):
        assert tracker[name] >= 1, (name, tracker)
    cio = apis["customerio"]
    for name in ("Product List Viewed", "Product Viewed", "Product Added", "Product Removed",
                 "Products Searched", "Product Added to Wishlist", "identify"):
        assert cio[name] >= 1, (name, cio)


def test_flask_shop_with_the_real_tracker_reaches_each_api() -> None:
    with recording_server() as server:
        app = create_flask_shop(api_config(server.url))
        shop = FlaskShopper(app)
        flask_journey(shop)
        tracker = CDPTrack.state(app).tracker
        assert tracker.flush(10)  # type: ignore[attr-defined]
        apis = by_api(server.snapshot())
        tracker.shutdown(5)  # type: ignore[attr-defined]
    check_api_traffic(apis)
    assert apis["yespo_tracker"]["PurchasedItems"] == 1
    # the Flask shop's HTML pages are page views for the contact-keyed APIs once signed in
    assert apis["customerio"]["page"] >= 1
    assert all(r.headers.get("Authorization", "").startswith("Basic")
               for r in server.snapshot() if r.path.startswith(("/cio", "/yespo-api")))


@pytest.fixture
def fastapi_server() -> Iterator[tuple[str, Any]]:
    with recording_server() as server:
        config = api_config(server.url)
        env = {**os.environ, "CDPTRACK_YESPO_SITE_ID": "site-1",
               "CDPTRACK_YESPO_API_KEY": "yespo-key", "CDPTRACK_CUSTOMERIO_API_KEY": "cio-key",
               "CDPTRACK_ORANGEPILL_API_KEY": "op-key",
               "CDPTRACK_YESPO_TRACKER_URL": config.yespo_tracker_url,
               "CDPTRACK_YESPO_API_URL": config.yespo_api_url,
               "CDPTRACK_CUSTOMERIO_URL": config.customerio_base_url,
               "CDPTRACK_ORANGEPILL_URL": config.orangepill_url}
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "cdptrack.examples.fastapi_shop", "--port", str(port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    httpx.get(base + "/", timeout=1)
                    break
                except httpx.TransportError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(process.stderr.read().decode()  # type: ignore[union-attr]
                                           ) from None
                    time.sleep(0.1)
            yield base, (process, server)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(10)
            if process.stderr is not None:
                process.stderr.close()


def test_fastapi_shop_in_a_real_uvicorn_process_reaches_each_api(
        fastapi_server: tuple[str, Any]) -> None:
    base, (process, server) = fastapi_server
    with httpx.Client(base_url=base) as client:
        fastapi_journey(client, None)
        assert client.cookies.get("sc") is not None
    process.send_signal(signal.SIGINT)  # uvicorn runs the lifespan shutdown: a bounded flush
    assert process.wait(20) == 0
    check_api_traffic(by_api(server.snapshot()))
