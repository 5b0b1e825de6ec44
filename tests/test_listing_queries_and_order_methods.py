"""Shapes of ikeman950/tonygram-shop (see tests/shop_data.py), rebuilt as a small
Django shop of our own with the ORM and plain ``render()``, zero cdptrack configuration:

- the home page is the catalogue, filtered by ``?category=<slug>`` and searched with
  ``?q=<text>``: those requests are category and search pages;
- the order has no total column, only ``get_total_cost()``: Order Completed carries it.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import django_project  # noqa: F401 - configures Django's settings on import
import pytest
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.test import Client, override_settings
from django.urls import path
from djshop.models import Category, Product, TotallessOrder, TotallessOrderItem

from cdptrack.config import Config
from cdptrack.integrations.django import tracking
from cdptrack.observe.options import ObserveOptions
from cdptrack.observe.page import query_convention
from cdptrack.sink import Sink

SC = "0D3F2E61-5B0C-4C8E-9D43-7A1E2B9C4F10"
KEYS = {"yespo_site_id": "8A412DC", "customerio_api_key": "cio-SECRET-2"}


def home(request: HttpRequest) -> HttpResponse:
    products = Product.objects.order_by("title")
    if request.GET.get("category"):
        products = products.filter(categories__slug=request.GET["category"])
    if request.GET.get("q"):
        products = products.filter(title__icontains=request.GET["q"])
    return render(request, "shop/home.html", {"products": products,
                                              "categories": Category.objects.all(),
                                              "search_query": request.GET.get("q", "")})


def checkout_success(request: HttpRequest, order_id: int) -> HttpResponse:
    order = get_object_or_404(TotallessOrder, id=order_id)
    return render(request, "shop/success.html", {"order": order})


def admin_users(request: HttpRequest) -> HttpResponse:
    return render(request, "shop/home.html", {"products": []})


urlpatterns = [
    path("", home, name="home"),
    path("checkout/success/<int:order_id>/", checkout_success, name="checkout_success"),
    path("staff/users/", admin_users, name="staff_users"),
]


@pytest.fixture(scope="module")
def shop_db() -> Iterator[dict[str, Any]]:
    models = (Category, Product, TotallessOrder, TotallessOrderItem)
    with connection.schema_editor() as editor:
        for model in models:
            editor.create_model(model)
    phones = Category.objects.create(name="Electronics", slug="electronics")
    iphone = Product.objects.create(title="iphone 13", slug="iphone-13",
                                    price=Decimal("3100.00"), num_in_stock=3)
    iphone.categories.add(phones)
    nike = Product.objects.create(title="Nike", slug="nike", price=Decimal("350.00"),
                                  num_in_stock=5)
    order = TotallessOrder.objects.create(customer_name="Jane Doe", email="jane@example.com")
    TotallessOrderItem.objects.create(order=order, product=iphone, price=Decimal("3100.00"),
                                      quantity=3)
    TotallessOrderItem.objects.create(order=order, product=nike, price=Decimal("350.00"),
                                      quantity=1)
    yield {"iphone": iphone, "nike": nike, "order": order}
    with connection.schema_editor() as editor:
        for model in reversed(models):
            editor.delete_model(model)


@pytest.fixture
def shop(shop_db: dict[str, Any]) -> Iterator[tuple[Client, Sink, dict[str, Any]]]:
    with Sink() as sink:
        config = Config(**KEYS, **sink.config_overrides())
        with override_settings(ROOT_URLCONF=__name__, CDPTRACK={"config": config}):
            client = Client()
            client.cookies["sc"] = SC
            yield client, sink, shop_db
            assert tracking().tracker.flush(20)  # type: ignore[attr-defined]


def visit(client: Client, url: str) -> None:
    response = client.get(url)
    response.close()  # the end of the response: cdptrack builds its events now
    assert response.status_code == 200, url


def settled(sink: Sink) -> dict[str, Any]:
    assert tracking().tracker.flush(20)  # type: ignore[attr-defined]
    summary = sink.summary()
    assert all(entry["invalid"] == 0 for entry in summary.values()), summary
    return summary


def bodies(sink: Sink, api: str, event: str) -> list[Any]:
    return [r["body"] for r in sink.requests(api) if r["event"] == event]


def test_home_filtered_by_category_query_is_a_category_page(shop: Any) -> None:
    client, sink, db = shop
    visit(client, "/?category=electronics")
    settled(sink)
    (listed,) = bodies(sink, "customerio", "Product List Viewed")
    props = listed["properties"]
    assert props["category_id"] == "electronics"
    assert [(p["product_id"], p["name"], p["price"]) for p in props["products"]] == [
        (str(db["iphone"].pk), "iphone 13", 3100)]
    (page,) = bodies(sink, "yespo_tracker", "CategoryPage")
    assert page["CategoryPage"]["Category"]["categoryKey"] == "electronics"


def test_home_with_search_query_is_a_search_page(shop: Any) -> None:
    client, sink, _db = shop
    visit(client, "/?q=nike")
    settled(sink)
    (searched,) = bodies(sink, "customerio", "Products Searched")
    assert (searched["properties"]["query"], searched["properties"]["results"]) == ("nike", 1)
    (request,) = bodies(sink, "yespo_tracker", "SearchRequest")
    assert request["SearchRequest"] == {"search": "nike", "isFound": 1}


def test_home_without_a_filter_and_other_pages_with_one_stay_what_they_were(
        shop: Any) -> None:
    client, sink, _db = shop
    visit(client, "/")
    visit(client, "/?page=2")
    visit(client, "/staff/users/?q=jane")  # not a listing of the catalogue
    summary = settled(sink)
    assert set(summary["customerio"]["by_event"]) == {"page"}
    assert "yespo_tracker" not in summary


def test_order_total_from_get_total_cost_when_the_order_has_no_total_field(
        shop: Any) -> None:
    client, sink, db = shop
    visit(client, f"/checkout/success/{db['order'].pk}/")
    settled(sink)
    (completed,) = bodies(sink, "customerio", "Order Completed")
    props = completed["properties"]
    assert (props["order_id"], props["total"], props["revenue"]) == (
        str(db["order"].pk), 9650, 9650)
    assert sorted((p["product_id"], p["quantity"]) for p in props["products"]) == sorted(
        [(str(db["iphone"].pk), 3), (str(db["nike"].pk), 1)])


def test_query_convention_prefers_a_search_over_a_category_and_ignores_blank_values(
        ) -> None:
    options = ObserveOptions()
    both = query_convention({"category": ["shoes"], "q": ["red"]}, options)
    assert both is not None and (both.kind, both.query_param) == ("search", "q")
    blank = query_convention({"q": [" "], "cat": ["boots"]}, options)
    assert blank is not None and (blank.kind, blank.key) == ("category", "cat")
    assert query_convention({"page": ["2"], "sort": ["price"]}, options) is None
