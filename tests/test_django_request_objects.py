"""A Django shop that keeps its objects where django-oscar keeps them, through a real
Django project with the ORM and the real Tracker sending to the sink:

* a basket model on ``request.basket`` (set lazily by a middleware, as Oscar's
  ``BasketMiddleware`` does) with lines of product, quantity and ``Decimal`` price;
* the placed order on ``request.order`` (a checkout view sets it, a thank-you view's
  decorator sets it);
* product pages rendered with ``render()`` through the Jinja2 template backend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import django_project  # noqa: F401 - configures Django's settings on import
import jinja2
import pytest
from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.test import Client, override_settings
from django.urls import path
from django.utils.functional import SimpleLazyObject
from djshop.models import Basket, BasketLine, Category, Line, Order, Product

from cdptrack.config import Config
from cdptrack.integrations.django import tracking
from cdptrack.sink import Sink

SC = "CDA68358-94FB-4D83-9655-3FEB3C4114A3"
OTHER_SC = "0F0E4C2A-1B7D-4C55-9A0B-7A4A2B1C9D33"
EMAIL = "jane@example.com"
KEYS = {"yespo_site_id": "8A412DC", "yespo_api_key": "yespo-SECRET-1",
        "customerio_api_key": "cio-SECRET-2"}

JINJA_TEMPLATES = {
    "product.html": "<h1>{{ product.title }}</h1><p>{{ product.price }}</p>",
    "thanks.html": "<p>Thank you</p>",
}


# --- the shop: a basket middleware, views that know nothing of cdptrack ----------------


class BasketMiddleware:
    """Puts the visitor's basket on ``request.basket``, lazily (a page that never
    touches it costs no query), keyed here by the ``sc`` cookie for brevity."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        owner = request.COOKIES.get("sc", "anonymous")
        request.basket = SimpleLazyObject(  # type: ignore[attr-defined]
            lambda: Basket.objects.get_or_create(owner_key=owner)[0])
        return self.get_response(request)


def basket_add(request: HttpRequest, product_id: str) -> HttpResponse:
    product = get_object_or_404(Product, pk=product_id)
    basket = request.basket  # type: ignore[attr-defined]
    line, made = BasketLine.objects.get_or_create(
        basket=basket, product=product,
        defaults={"quantity": 1, "price_incl_tax": product.price})
    if not made:
        line.quantity += 1
        line.save()
    return HttpResponseRedirect("/basket/")


def basket_remove(request: HttpRequest, product_id: str) -> HttpResponse:
    request.basket.lines.filter(product_id=product_id).delete()  # type: ignore[attr-defined]
    return HttpResponseRedirect("/basket/")


def basket_page(request: HttpRequest) -> HttpResponse:
    return HttpResponse("<p>basket</p>")


def place_order(request: HttpRequest) -> HttpResponse:
    """The checkout's last step: the basket becomes an order, put on the request."""
    basket = request.basket  # type: ignore[attr-defined]
    order = Order.objects.create(number="200001", total=Decimal("64.40"), email=EMAIL,
                                 status="Pending")
    for line in basket.lines.all():
        Line.objects.create(order=order, product=line.product, title=line.product.title,
                            quantity=line.quantity, unit_price_incl_tax=line.price_incl_tax)
    request.order = order  # type: ignore[attr-defined]
    return HttpResponseRedirect(f"/checkout/thank-you/{order.number}/")


def with_order(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A shop's decorator that loads the order a thank-you URL names onto the request."""

    def wrapped(request: HttpRequest, number: str) -> HttpResponse:
        request.order = get_object_or_404(Order, number=number)  # type: ignore[attr-defined]
        return view(request, number)

    return wrapped


@with_order
def thank_you(request: HttpRequest, number: str) -> HttpResponse:
    return HttpResponse("<p>Thank you</p>", content_type="text/html")


def product_detail(request: HttpRequest, slug: str) -> HttpResponse:
    product = get_object_or_404(Product, slug=slug)
    return render(request, "product.html", {"product": product})


urlpatterns = [
    path("basket/add/<str:product_id>/", basket_add, name="basket_add"),
    path("basket/remove/<str:product_id>/", basket_remove, name="basket_remove"),
    path("basket/", basket_page, name="basket"),
    path("checkout/place-order/", place_order, name="checkout_place_order"),
    path("checkout/thank-you/<str:number>/", thank_you, name="thank_you"),
    path("products/<slug:slug>/", product_detail, name="product_detail"),
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    f"{__name__}.BasketMiddleware",
    "cdptrack.integrations.django.CDPTrackMiddleware",
]
JINJA2 = [{
    "BACKEND": "django.template.backends.jinja2.Jinja2",
    "OPTIONS": {"loader": jinja2.DictLoader(JINJA_TEMPLATES)},
}]


# --- the database ---------------------------------------------------------------------

MODELS = (Category, Product, Order, Line, Basket, BasketLine)


@pytest.fixture
def db() -> Iterator[dict[str, Any]]:
    with connection.schema_editor() as editor:
        for model in MODELS:
            editor.create_model(model)
    boot = Product.objects.create(title="Chelsea Boot", slug="chelsea-boot",
                                  price=Decimal("59.90"), num_in_stock=3)
    sock = Product.objects.create(title="Wool Sock", slug="wool-sock",
                                  price=Decimal("4.50"), num_in_stock=9)
    yield {"boot": boot, "sock": sock}
    with connection.schema_editor() as editor:
        for model in reversed(MODELS):
            editor.delete_model(model)


@pytest.fixture
def shop(db: dict[str, Any]) -> Iterator[tuple[Sink, dict[str, Any]]]:
    with Sink() as sink:
        config = Config(**KEYS, **sink.config_overrides())
        with override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=MIDDLEWARE, TEMPLATES=JINJA2,
                               CDPTRACK={"config": config, "currency": "EUR"}):
            yield sink, db
            assert tracking().tracker.flush(20)  # type: ignore[attr-defined]


def visitor(sc: str = SC) -> Client:
    client = Client()
    client.cookies["sc"] = sc
    return client


def call(client: Client, url: str, method: str = "get") -> Any:
    response = getattr(client, method)(url)
    response.close()  # the end of the response: cdptrack builds its events now
    assert response.status_code in (200, 302), (url, response.status_code)
    return response


def settle(sink: Sink) -> dict[str, Any]:
    assert tracking().tracker.flush(20)  # type: ignore[attr-defined]
    summary = sink.summary()
    assert all(entry["invalid"] == 0 for entry in summary.values()), summary
    return summary


def bodies(sink: Sink, api: str, event: str) -> list[Any]:
    return [r["body"] for r in sink.requests(api) if r["event"] == event]


# --- the tests --------------------------------------------------------------------------


def test_a_basket_model_on_the_request_becomes_cart_updated(shop: Any) -> None:
    sink, db = shop
    boot, sock = str(db["boot"].pk), str(db["sock"].pk)
    client = visitor()
    call(client, "/basket/")  # the lazy basket is never evaluated: nothing to say
    call(client, f"/basket/add/{boot}/", "post")
    call(client, f"/basket/add/{sock}/", "post")
    call(client, f"/basket/add/{sock}/", "post")
    call(client, f"/basket/remove/{boot}/", "post")
    settle(sink)
    added = bodies(sink, "customerio", "Product Added")  # lanes may reorder: compare sorted
    assert sorted((b["properties"]["product_id"], b["properties"]["quantity"],
                   b["properties"]["price"]) for b in added) == sorted(
        [(boot, 1, 59.9), (sock, 1, 4.5), (sock, 1, 4.5)])
    (removed,) = bodies(sink, "customerio", "Product Removed")
    assert removed["properties"]["product_id"] == boot
    carts = bodies(sink, "yespo_tracker", "StatusCart")
    contents = sorted(sorted((p["productKey"], p["quantity"], p["price"])
                             for p in cart["StatusCart"]["Products"]) for cart in carts)
    assert contents == sorted([[(boot, 1, 59.9)], sorted([(boot, 1, 59.9), (sock, 1, 4.5)]),
                               sorted([(boot, 1, 59.9), (sock, 2, 4.5)]), [(sock, 2, 4.5)]])
    assert len({cart["StatusCart"]["GUID"] for cart in carts}) == 4  # one per content


def test_an_order_on_the_request_is_completed_once_whoever_reloads(shop: Any) -> None:
    sink, db = shop
    client = visitor()
    call(client, f"/basket/add/{db['boot'].pk}/", "post")
    call(client, "/checkout/place-order/", "post")   # request.order set by the view
    call(client, "/checkout/thank-you/200001/")      # request.order set by a decorator
    call(client, "/checkout/thank-you/200001/")      # a reload
    call(visitor(OTHER_SC), "/checkout/thank-you/200001/")  # the link opened elsewhere
    settle(sink)
    (completed,) = bodies(sink, "customerio", "Order Completed")
    props = completed["properties"]
    assert (props["order_id"], props["total"], props["currency"]) == ("200001", 64.4, "EUR")
    (line,) = props["products"]
    assert (line["product_id"], line["quantity"], line["price"], line["name"]) == (
        str(db["boot"].pk), 1, 59.9, "Chelsea Boot")
    (created,) = bodies(sink, "yespo_events", "orderCreated")
    assert {p["name"]: p["value"] for p in created["params"]}["externalOrderId"] == "200001"
    assert len(bodies(sink, "yespo_tracker", "PurchasedItems")) == 1
    assert tracking().observer.stats()["orders_deduplicated"] == 3  # all three


def test_render_with_the_jinja2_backend_shows_its_context(shop: Any) -> None:
    sink, db = shop
    response = call(visitor(), "/products/chelsea-boot/")
    assert response.content == b"<h1>Chelsea Boot</h1><p>59.90</p>"  # page unchanged
    settle(sink)
    (viewed,) = bodies(sink, "customerio", "Product Viewed")
    props = viewed["properties"]
    assert (props["product_id"], props["name"], props["price"]) == (
        str(db["boot"].pk), "Chelsea Boot", 59.9)
    (page,) = bodies(sink, "yespo_tracker", "ProductPage")
    assert page["ProductPage"]["Product"]["price"] == "59.90 EUR"
