"""A Django shop written the way public ones are (tests/djshop: UUID primary keys,
``DecimalField`` money, many-to-many categories, order lines as a related manager),
with views that call plain ``render()``, zero cdptrack configuration apart from the
destinations, and the real Tracker sending to the sink: every product page, category
page, cart change and order reaches every API complete and spec-valid."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import django_project  # noqa: F401 - configures Django's settings on import
import pytest
from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.test import Client, override_settings
from django.urls import path
from djshop.models import Category, Line, Order, Product
from shop_data import ORDER_STATUSES

from cdptrack.config import Config
from cdptrack.integrations.django import tracking
from cdptrack.sink import Sink

SC = "CDA68358-94FB-4D83-9655-3FEB3C4114A3"
EMAIL = "jane@example.com"
KEYS = {"yespo_site_id": "8A412DC", "yespo_api_key": "yespo-SECRET-1",
        "customerio_api_key": "cio-SECRET-2"}


# --- the shop's views: plain render(), the ORM, nothing for cdptrack -------------------


def product_detail(request: HttpRequest, slug: str) -> HttpResponse:
    product = get_object_or_404(Product, slug=slug)
    return render(request, "shop/product.html", {"product": product})


def category_detail(request: HttpRequest, slug: str) -> HttpResponse:
    category = get_object_or_404(Category, slug=slug)
    return render(request, "shop/category.html",
                  {"category": category, "products": category.products.order_by("title")})


def basket_add(request: HttpRequest, product_id: str) -> HttpResponse:
    basket = dict(request.session.get("cart", {}))
    basket[product_id] = basket.get(product_id, 0) + 1  # {product_id: quantity}
    request.session["cart"] = basket
    return HttpResponseRedirect("/shop/cart/")


def thank_you(request: HttpRequest, order_number: str) -> HttpResponse:
    order = get_object_or_404(Order, number=order_number)
    return render(request, "shop/thanks.html", {"order": order})


urlpatterns = [
    path("shop/products/<slug:slug>/", product_detail, name="product_detail"),
    path("shop/category/<slug:slug>/", category_detail, name="category_detail"),
    path("shop/cart/add/<str:product_id>/", basket_add, name="basket_add"),
    path("shop/checkout/success/<str:order_number>/", thank_you, name="thank_you"),
]


# --- the database ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def catalogue_db() -> Iterator[dict[str, Any]]:
    with connection.schema_editor() as editor:
        for model in (Category, Product, Order, Line):
            editor.create_model(model)
    boots = Category.objects.create(name="Boots", slug="boots")
    sale = Category.objects.create(name="Sale", slug="sale")
    chelsea = Product.objects.create(title="Chelsea Boot", slug="chelsea-boot",
                                     upc="9780141187761", price=Decimal("129.90"),
                                     num_in_stock=4)
    chelsea.categories.add(boots, sale)
    hiker = Product.objects.create(title="Hiking Boot", slug="hiking-boot",
                                   price=Decimal("1299.00"), num_in_stock=0)
    hiker.categories.add(boots)
    unpriced = Product.objects.create(title="Coming Soon", slug="coming-soon", price=None)
    order = Order.objects.create(number="100042", total=Decimal("259.80"), email=EMAIL,
                                 status="Pending")
    Line.objects.create(order=order, product=chelsea, title=chelsea.title, quantity=2,
                        unit_price_incl_tax=Decimal("129.90"))
    yield {"chelsea": chelsea, "hiker": hiker, "unpriced": unpriced, "order": order}
    with connection.schema_editor() as editor:
        for model in (Line, Order, Product, Category):
            editor.delete_model(model)


def orm_catalogue(product_id: str) -> Any:
    """The shop's catalogue loader: the ORM, as a shop would write it."""
    return Product.objects.filter(pk=product_id).first()


@pytest.fixture
def shop(catalogue_db: dict[str, Any]) -> Iterator[tuple[Client, Sink, dict[str, Any]]]:
    with Sink() as sink:
        config = Config(**KEYS, **sink.config_overrides())
        with override_settings(ROOT_URLCONF=__name__,
                               CDPTRACK={"config": config, "catalogue": orm_catalogue}):
            client = Client()
            client.cookies["sc"] = SC
            yield client, sink, catalogue_db
            tracker = tracking().tracker
            assert tracker.flush(20)  # type: ignore[attr-defined]


def get(client: Client, url: str, method: str = "get") -> Any:
    response = getattr(client, method)(url)
    response.close()  # the end of the response: cdptrack builds its events now
    assert response.status_code in (200, 302), (url, response.status_code)
    return response


def settle(sink: Sink) -> dict[str, Any]:
    tracker = tracking().tracker
    assert tracker.flush(20)  # type: ignore[attr-defined]
    summary = sink.summary()
    assert all(entry["invalid"] == 0 for entry in summary.values()), summary
    return summary


def bodies(sink: Sink, api: str, event: str) -> list[Any]:
    return [r["body"] for r in sink.requests(api) if r["event"] == event]


def test_render_context_of_an_orm_product_page_reaches_every_api(shop: Any) -> None:
    client, sink, db = shop
    get(client, "/shop/products/chelsea-boot/")
    summary = settle(sink)
    assert summary["yespo_tracker"]["by_event"] == {"ProductPage": 1}
    (page,) = bodies(sink, "yespo_tracker", "ProductPage")
    product = page["ProductPage"]["Product"]
    assert product == {"productKey": str(db["chelsea"].pk), "price": "129.90 EUR",
                       "isInStock": "1"}
    (viewed,) = bodies(sink, "customerio", "Product Viewed")
    props = viewed["properties"]
    assert (props["name"], props["price"], props["category"], props["url"]) == (
        "Chelsea Boot", 129.9, "Boots", "/shop/products/chelsea-boot/")
    assert props["product_id"] == str(db["chelsea"].pk)


def test_a_category_page_lists_its_queryset_with_names_not_relations(shop: Any) -> None:
    client, sink, _db = shop
    get(client, "/shop/category/boots/")
    settle(sink)
    (listed,) = bodies(sink, "customerio", "Product List Viewed")
    props = listed["properties"]
    assert props["category"] == "Boots"
    lines = props["products"]
    assert [(p["name"], p["price"], p["category"]) for p in lines] == [
        ("Chelsea Boot", 129.9, "Boots"), ("Hiking Boot", 1299, "Boots")]
    assert all(isinstance(v, (str, int, float, bool)) for p in lines for v in p.values())


def test_a_product_without_price_skips_only_the_tracker_with_a_counted_reason(
        shop: Any, caplog: pytest.LogCaptureFixture) -> None:
    client, sink, _db = shop
    with caplog.at_level("WARNING", logger="cdptrack.observe"):
        get(client, "/shop/products/coming-soon/")
        get(client, "/shop/products/coming-soon/")
    summary = settle(sink)
    assert "yespo_tracker" not in summary  # the tracker answers 400 without a price
    assert summary["customerio"]["by_event"].get("Product Viewed") == 2
    stats = tracking().tracker.stats()  # type: ignore[attr-defined]
    assert stats["yespo_tracker"]["dropped:missing_field:price"] == 2
    warnings = [r for r in caplog.records if "has no price" in r.getMessage()]
    assert len(warnings) == 1 and "catalogue=" in warnings[0].getMessage()


def test_an_orm_catalogue_prices_cart_lines_in_the_request_thread(shop: Any) -> None:
    client, sink, db = shop
    get(client, f"/shop/cart/add/{db['hiker'].pk}/", "post")
    settle(sink)
    (cart,) = bodies(sink, "yespo_tracker", "StatusCart")
    (line,) = cart["StatusCart"]["Products"]
    assert (line["productKey"], line["price"], line["quantity"]) == (
        str(db["hiker"].pk), 1299, 1)
    (added,) = bodies(sink, "customerio", "Product Added")
    assert added["properties"]["name"] == "Hiking Boot"
    assert tracking().observer.stats().get("catalogue_error", 0) == 0


def test_an_orm_order_with_decimal_total_and_shop_status(shop: Any) -> None:
    client, sink, db = shop
    get(client, "/shop/checkout/success/100042/")
    settle(sink)
    (created,) = bodies(sink, "yespo_events", "orderCreated")
    params = {p["name"]: p["value"] for p in created["params"]}
    assert (params["externalOrderId"], params["totalCost"], params["status"]) == (
        "100042", "259.8", ORDER_STATUSES["Pending"])
    (purchased,) = bodies(sink, "yespo_tracker", "PurchasedItems")
    assert purchased["PurchasedItems"]["Products"] == [
        {"product_id": str(db["chelsea"].pk), "unit_price": "129.90", "quantity": 2}]
