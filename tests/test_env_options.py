"""The middleware's options from ``CDPTRACK_*`` environment variables, read the same way
by every adapter: the Flask extension, FastAPI/Starlette ``setup()``, and the bare ASGI
and WSGI middlewares (Django: ``tests/test_django_adapter.py``).  Options given in code
win over the environment.

Each shop is a real app with a product page whose view declares a price and no currency;
``CDPTRACK_CURRENCY`` must put the currency on its Product Viewed event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.testclient import TestClient
from flask import Flask
from observe_support import ListTracker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse as StarletteHTML
from starlette.routing import Route
from werkzeug.test import Client

from cdptrack.asgi import CDPTrackMiddleware
from cdptrack.config import ConfigError
from cdptrack.integrations.fastapi import setup
from cdptrack.integrations.flask import CDPTrack
from cdptrack.observe.declare import track
from cdptrack.observe.options import ObserveOptions
from cdptrack.wsgi import CDPTrackWSGIMiddleware

PATH = "/products/72354"


def flask_shop(tracker: ListTracker, **options: Any) -> Callable[[], str | None]:
    app = Flask(__name__)
    app.secret_key = "test"

    @app.get("/products/<product_id>")
    def product(product_id: str) -> str:
        track.product(price=754, name="Boot")
        return "<h1>Boot</h1>"

    CDPTrack(app, tracker=tracker, **options)
    return lambda: _visit_wsgi(app, tracker)


def fastapi_shop(tracker: ListTracker, **options: Any) -> Callable[[], str | None]:
    app = FastAPI()

    @app.get("/products/{product_id}", response_class=HTMLResponse)
    def product(product_id: str) -> str:
        track.product(price=754, name="Boot")
        return "<h1>Boot</h1>"

    setup(app, tracker=tracker, **options)

    def visit() -> str | None:
        with TestClient(app) as client:
            assert client.get(PATH).status_code == 200
        return _currency(tracker)
    return visit


def asgi_shop(tracker: ListTracker, **options: Any) -> Callable[[], str | None]:
    async def product(request: Request) -> StarletteHTML:
        track.product(price=754, name="Boot")
        return StarletteHTML("<h1>Boot</h1>")

    app = CDPTrackMiddleware(Starlette(routes=[Route("/products/{product_id}", product)]),
                             tracker, **options)

    def visit() -> str | None:
        with TestClient(app) as client:
            assert client.get(PATH).status_code == 200
        return _currency(tracker)
    return visit


def wsgi_shop(tracker: ListTracker, **options: Any) -> Callable[[], str | None]:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        track.product(product_id="72354", price=754, name="Boot")  # no route to read
        start_response("200 OK", [("Content-Type", "text/html")])
        return [b"<h1>Boot</h1>"]

    wrapped = CDPTrackWSGIMiddleware(app, tracker, **options)
    return lambda: _visit_wsgi(wrapped, tracker)


def _visit_wsgi(app: Any, tracker: ListTracker) -> str | None:
    response = Client(app).get(PATH)
    assert response.status_code == 200
    response.close()  # events are built when the response iterable is closed
    return _currency(tracker)


def _currency(tracker: ListTracker) -> str | None:
    props = tracker.one("Product Viewed").properties
    assert props["price"] == 754
    currency = props.get("currency")
    return str(currency) if currency is not None else None


SHOPS = {"flask": flask_shop, "fastapi_setup": fastapi_shop, "asgi_middleware": asgi_shop,
         "wsgi_middleware": wsgi_shop}


@pytest.mark.parametrize("shop", sorted(SHOPS))
def test_no_currency_anywhere_sends_none(shop: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CDPTRACK_CURRENCY", raising=False)
    assert SHOPS[shop](ListTracker())() is None


@pytest.mark.parametrize("shop", sorted(SHOPS))
def test_currency_from_the_environment(shop: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDPTRACK_CURRENCY", "EUR")
    assert SHOPS[shop](ListTracker())() == "EUR"


@pytest.mark.parametrize("shop", sorted(SHOPS))
def test_an_option_given_in_code_wins_over_the_environment(
        shop: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDPTRACK_CURRENCY", "EUR")
    assert SHOPS[shop](ListTracker(), currency="USD")() == "USD"


def test_a_ready_options_object_is_taken_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDPTRACK_CURRENCY", "EUR")
    tracker = ListTracker()
    visit = wsgi_shop(tracker, options=ObserveOptions(currency="GBP"))
    assert visit() == "GBP"


def test_environment_values_are_read_as_their_types(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDPTRACK_COOKIE_MAX_AGE", "600")
    monkeypatch.setenv("CDPTRACK_TRACK_PAGES", "0")
    monkeypatch.setenv("CDPTRACK_IGNORE_PATHS", "/admin/, /health")
    monkeypatch.setenv("CDPTRACK_ROUTE_RULES", '{"/p/<sku>": "product:sku"}')
    monkeypatch.setenv("CDPTRACK_CATALOGUE", "test_env_options:catalogue")
    options = ObserveOptions.from_env()
    assert options.cookie_max_age == 600
    assert options.track_pages is False
    assert options.ignore_paths == ("/admin/", "/health")
    assert options.route_rules["/p/<sku>"].key == "sku"
    assert options.catalogue is catalogue


def catalogue(product_id: str) -> dict[str, Any]:
    return {"price": 1}


def test_a_bad_environment_value_fails_at_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDPTRACK_COOKIE_MAX_AGE", "two years")
    with pytest.raises(ConfigError, match="CDPTRACK_COOKIE_MAX_AGE"):
        wsgi_shop(ListTracker())
    monkeypatch.setenv("CDPTRACK_COOKIE_MAX_AGE", "600")
    monkeypatch.setenv("CDPTRACK_CATALOGUE", "no_such_module_here:load")
    with pytest.raises(ConfigError, match="CDPTRACK_CATALOGUE"):
        fastapi_shop(ListTracker())
