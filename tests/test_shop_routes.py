"""Conventions measured on the route tables of real open-source shops.

``tests/data/shop_routes.json`` holds routes of public Flask, FastAPI and Django shops
(each row names its repository) with the page kind each should get.  The hit rate is
the share of routes whose convention gives that kind (and key, where one is named); the
floor below is what the README reports, so a change that makes conventions worse fails.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cdptrack.integrations.django import route_template
from cdptrack.observe.page import convention

DATA = json.loads((Path(__file__).parent / "data" / "shop_routes.json").read_text())
ROUTES: list[dict[str, Any]] = DATA["routes"]
HIT_RATE_FLOOR = 0.90


def template_of(row: dict[str, Any]) -> str:
    """The template the framework's adapter reports for a row: Django's re_path regex
    read as cdptrack's Django adapter reads it, under its include() prefix."""
    prefix, route = row["prefix"], row["route"]
    if row["framework"] == "django":
        return "/" + (prefix.strip("/") + "/" + route_template(route)).lstrip("/")
    return prefix.rstrip("/") + route if route else prefix or "/"


def hit(row: dict[str, Any]) -> bool:
    found = convention(template_of(row), row["endpoint"], row["method"])
    kind = found.kind if found is not None else None
    if kind != row["expected"]:
        return False
    return "key" not in row or (found is not None and found.key == row["key"])


def test_the_data_covers_ten_shops_of_three_frameworks() -> None:
    assert len({r["repository"] for r in ROUTES}) >= 10
    assert {r["framework"] for r in ROUTES} == {"django", "flask", "fastapi"}


def test_conventions_hit_rate_on_real_shops() -> None:
    misses = [f'{r["method"]} {template_of(r)} ({r["repository"]}): want {r["expected"]}'
              for r in ROUTES if not hit(r)]
    rate = 1 - len(misses) / len(ROUTES)
    assert rate >= HIT_RATE_FLOOR, f"hit rate {rate:.0%}; misses:\n" + "\n".join(misses)


@pytest.mark.parametrize(("template", "method", "kind", "key"), [
    # Oscar's product detail under its catalogue mount: not a category
    ("/catalogue/{product_slug}_{pk}/", "GET", "product", "pk"),
    ("/catalogue/category/{category_slug}_{pk}/", "GET", "category", "pk"),
    # DELETE removes; a POST under a wishlist that adds to the cart is a cart change
    ("/wishlist/{product_id}", "DELETE", None, None),
    ("/wishlist/{product_id}", "POST", "wishlist", "product_id"),
    ("/wishlist/{id}/add-to-cart", "POST", "cart", "id"),
    ("/wishlists/{key}/update/", "POST", None, None),
    ("/cart/items/{item_id}", "DELETE", "cart", "item_id"),
    ("/cart/items/{item_id}", "PATCH", "cart", "item_id"),
    ("/cart/items", "POST", "cart", None),
    ("/products/{id}", "DELETE", None, None),
    # placing an order from the cart is a checkout; reading or changing one is not
    ("/api/v1/orders/", "POST", "checkout", None),
    ("/orders", "POST", "checkout", None),
    ("/orders/", "GET", None, None),
    ("/orders/{order_id}", "POST", None, None),
    # a last path parameter naming a category makes a category page
    ("/book/{category}", "GET", "category", "category"),
    ("/shop/{category_slug}", "GET", "category", "category_slug"),
    ("/book/{category}", "DELETE", None, None),
    ("/admin/{category_id}/edit", "GET", None, None),
])
def test_method_aware_conventions(template: str, method: str, kind: str | None,
                                  key: str | None) -> None:
    found = convention(template, None, method)
    assert (found.kind if found else None, found.key if found else None) == (kind, key)


@pytest.mark.parametrize("prefix", ["", "/en-gb", "/de", "/api/v1", "/api", "/{lang}",
                                    "/en-gb/api/v2"])
@pytest.mark.parametrize(("route", "method", "kind"), [
    ("/catalogue/{product_slug}_{pk}/", "GET", "product"),
    ("/category/{slug}", "GET", "category"),
    ("/basket/add/{pk}/", "POST", "cart"),
    ("/checkout/thank-you/", "GET", "order"),
    ("/accounts/login/", "POST", "sign_in"),
    ("/search", "GET", "search"),
])
def test_language_and_api_prefixes_do_not_change_the_kind(
        prefix: str, route: str, method: str, kind: str) -> None:
    found = convention(prefix + route, None, method)
    assert found is not None and found.kind == kind
