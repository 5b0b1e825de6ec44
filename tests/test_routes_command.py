"""``cdptrack routes``: the route table of real Flask, FastAPI and Django apps, checked
against what the middleware really sends for the same routes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from flask import Blueprint, Flask
from observe_support import ListTracker
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from cdptrack import track
from cdptrack.config import Config
from cdptrack.integrations.flask import CDPTrack
from cdptrack.integrations.flask import app_routes as flask_routes
from cdptrack.integrations.starlette import app_routes as starlette_routes
from cdptrack.integrations.starlette import setup as starlette_setup
from cdptrack.route_table import route_table

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
CONFIG = Config.from_env({"CDPTRACK_YESPO_SITE_ID": "S1",
                          "CDPTRACK_CUSTOMERIO_API_KEY": "routes-secret-key"})


def cli(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith("CDPTRACK_") and k != "DJANGO_SETTINGS_MODULE"}
    environ.update(env or {})
    return subprocess.run([sys.executable, "-m", "cdptrack.cli", "routes", *args],
                          capture_output=True, text=True, cwd=cwd, env=environ, timeout=60)


def row(document: dict[str, Any], route: str) -> dict[str, Any]:
    found = [r for r in document["routes"] if r["route"] == route]
    assert len(found) == 1, [r["route"] for r in document["routes"]]
    return found[0]


def events(plan: dict[str, Any], *, html: bool) -> tuple[list[str], list[str]]:
    """(events always sent, events that may be sent) for a 2xx answer."""
    sure = [e["event"] for e in plan["events"]
            if e["when"] is None or (e["when"] == "html" and html)]
    maybe = [e["event"] for e in plan["events"] if e["when"] != "html" or html]
    return sure, maybe


def agrees(plan: dict[str, Any], labels: list[str], *, html: bool) -> None:
    sure, maybe = events(plan, html=html)
    assert set(sure) <= set(labels) <= set(maybe), (plan, labels)


# --- the example shops, through the command ------------------------------------------


def test_flask_example_json_matches_what_a_real_get_sends() -> None:
    result = cli("cdptrack.examples.flask_shop:create_app()", "--json",
                 env={"CDPTRACK_YESPO_SITE_ID": "S1"})
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert (document["format"], document["framework"], document["installed"]) == (
        "cdptrack-routes/1", "flask", True)
    assert document["destinations"] == {"yespo_tracker": True, "yespo_events": False,
                                        "customerio": False, "orangepill": False}
    product = row(document, "/product/<product_id>")
    assert (product["kind"], product["key"], product["source"]) == (
        "product", "product_id", "convention")
    viewed = product["requests"]["GET"]["events"][1]
    assert viewed["event"] == "Product Viewed" and viewed["when"] is None
    assert viewed["destinations"]["yespo_tracker"] == "sent"
    assert viewed["destinations"]["customerio"] == "not_configured"
    assert row(document, "/static/<path:filename>")["tracked"] is False
    login = row(document, "/login")["requests"]
    assert (login["GET"]["kind"], login["POST"]["kind"]) == (None, "sign_in")

    from cdptrack.examples.flask_shop import create_app

    for path, route in [("/product/101", "/product/<product_id>"),
                        ("/category/shoes", "/category/<slug>"), ("/", "/"),
                        ("/search?q=boot", "/search")]:
        tracker = ListTracker()
        response = create_app(tracker=tracker, defer_events=False).test_client().get(path)
        assert response.status_code == 200
        response.close()  # events are built when the WSGI response is closed
        agrees(row(document, route)["requests"]["GET"], tracker.labels(), html=True)


def test_fastapi_example_with_a_router_prefix_matches_real_requests() -> None:
    result = cli("cdptrack.examples.fastapi_shop.app:create_app()", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["framework"] == "fastapi"
    product = row(document, "/api/products/{product_id}")
    assert (product["kind"], product["key"], product["source"]) == (
        "product", "product_id", "declaration")
    remove = row(document, "/api/cart/items/{product_id}")
    assert remove["methods"] == ["DELETE"]
    assert remove["requests"]["DELETE"]["kind"] == "cart"
    assert [e["event"] for e in remove["requests"]["DELETE"]["events"]] == ["Cart Updated"]

    from cdptrack.examples.fastapi_shop.app import create_app

    for path, route in [("/api/products/101", "/api/products/{product_id}"),
                        ("/api/categories/shoes", "/api/categories/{slug}")]:
        tracker = ListTracker()
        with TestClient(create_app(tracker=tracker, defer_events=False)) as client:
            assert client.get(path).status_code == 200
        agrees(row(document, route)["requests"]["GET"], tracker.labels(), html=False)


def test_the_table_on_a_terminal_names_routes_kinds_and_destinations() -> None:
    result = cli("cdptrack.examples.flask_shop:create_app()",
                 env={"CDPTRACK_CUSTOMERIO_API_KEY": "routes-secret-key"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].split() == ["METHOD", "ROUTE", "KIND", "KEY", "FROM", "SENDS"]
    product = next(line for line in lines if "/product/<product_id>" in line).split()
    assert product[:5] == ["GET", "/product/<product_id>", "product", "product_id",
                           "convention"]
    assert "Product Viewed" in " ".join(product[5:])
    wishes = next(line for line in lines if line.startswith("  Product Added to Wishlist"))
    assert wishes.split()[-4:] == ["not_configured", "not_configured", "sent",
                                   "not_configured"]
    assert "routes-secret-key" not in result.stdout + result.stderr


# --- prefixes, rules with converters, declarations ------------------------------------


def blueprint_shop(tracker: ListTracker) -> Flask:
    app = Flask(__name__)
    shop = Blueprint("shop", __name__, url_prefix="/en/shop")

    @shop.get("/goods/<int:gid>/<slug>")
    def goods(gid: int, slug: str) -> str:
        return "<h1>goods</h1>"

    @shop.get("/look/<code>")
    @track.product_page(key="code")
    def look(code: str) -> str:
        track.product(price=3)
        return "<h1>look</h1>"

    @shop.get("/about")
    def about() -> str:
        return "<p>about</p>"

    app.register_blueprint(shop)
    CDPTrack(app, tracker=tracker, defer_events=False,
             route_rules={"/en/shop/goods/<gid>/<string:name>": "product:gid"})
    return app


def test_blueprint_prefix_rule_with_converters_and_a_declared_view() -> None:
    tracker = ListTracker()
    app = blueprint_shop(tracker)
    document = route_table(flask_routes(app), CONFIG, app="test")
    goods = row(document, "/en/shop/goods/<int:gid>/<slug>")
    assert (goods["kind"], goods["key"], goods["source"]) == ("product", "gid", "rule")
    look = row(document, "/en/shop/look/<code>")
    assert (look["kind"], look["key"], look["source"]) == ("product", "code", "declaration")
    about = row(document, "/en/shop/about")
    assert (about["kind"], about["source"]) == (None, "none")
    client = app.test_client()
    for path, route in [("/en/shop/goods/7/tea", goods), ("/en/shop/look/L1", look),
                        ("/en/shop/about", about)]:
        tracker.clear()
        response = client.get(path)
        assert response.status_code == 200
        response.close()
        agrees(route["requests"]["GET"], tracker.labels(), html=True)
    tracker.clear()
    client.get("/en/shop/goods/7/tea").close()
    assert tracker.one("Product Viewed").properties["product_id"] == "7"


async def mounted_product(request: Any) -> HTMLResponse:
    return HTMLResponse("<h1>p</h1>")


async def mounted_about(request: Any) -> HTMLResponse:
    return HTMLResponse("<p>about</p>")


def test_starlette_mount_and_fastapi_include_router_show_full_paths() -> None:
    from fastapi import APIRouter, FastAPI

    tracker = ListTracker()
    inner = APIRouter(prefix="/v1")

    @inner.get("/goods/{gid}", response_class=HTMLResponse)
    def goods(gid: str) -> str:
        return "<h1>goods</h1>"

    outer = APIRouter(prefix="/api")
    outer.include_router(inner, prefix="/x")
    api = FastAPI()
    api.include_router(outer, prefix="/shop")
    app = Starlette(routes=[
        Mount("/eu", routes=[Route("/item/{sku}", mounted_product),
                             Route("/about", mounted_about)]),
        Mount("/store", app=api),
    ])
    starlette_setup(app, tracker=tracker, defer_events=False,
                    route_rules={"/store/shop/api/x/v1/goods/{gid:str}": "product:gid"})
    document = route_table(starlette_routes(app), CONFIG, app="test")
    item = row(document, "/eu/item/{sku}")
    assert (item["kind"], item["key"], item["source"]) == ("product", "sku", "convention")
    deep = row(document, "/store/shop/api/x/v1/goods/{gid}")
    assert (deep["kind"], deep["key"], deep["source"]) == ("product", "gid", "rule")
    with TestClient(app) as client:
        for path, route in [("/eu/item/S1", item), ("/store/shop/api/x/v1/goods/G1", deep),
                            ("/eu/about", row(document, "/eu/about"))]:
            tracker.clear()
            assert client.get(path).status_code == 200
            agrees(route["requests"]["GET"], tracker.labels(), html=True)
    tracker.clear()
    TestClient(app).get("/store/shop/api/x/v1/goods/G1")
    assert tracker.one("Product Viewed").properties["product_id"] == "G1"


# --- Django -------------------------------------------------------------------------


def test_django_project_through_its_settings() -> None:
    result = cli("--django-settings", "djroutes.settings", "--json", cwd=TESTS)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert (document["framework"], document["installed"]) == ("django", True)
    assert document["destinations"]["customerio"] is True
    product = row(document, "/en-gb/shop/catalogue/<slug:product_slug>_<int:pk>/")
    assert (product["kind"], product["key"], product["source"]) == (
        "product", "pk", "convention")
    assert product["methods_known"] is False
    category = row(document, "/en-gb/shop/catalogue/category/<slug:category_slug>_<int:pk>/")
    assert category["kind"] == "category"
    deal = row(document, "/en-gb/shop/deals/<slug:slug>/")
    assert (deal["kind"], deal["key"], deal["source"]) == ("category", "slug", "rule")
    item = row(document, "/en-gb/shop/item/(?P<code>[A-Z0-9]+)/$")
    assert (item["methods"], item["kind"], item["key"], item["source"]) == (
        ["GET"], "product", "code", "declaration")
    basket = row(document, "/en-gb/shop/basket/")
    assert basket["methods"] == ["GET", "POST"] and basket["methods_known"] is True
    assert [e["event"] for e in basket["requests"]["POST"]["events"]] == ["Cart Updated"]
    assert "routes-test-key" not in result.stdout


def test_django_settings_from_the_environment_and_a_missing_settings_module() -> None:
    result = cli("--json", cwd=TESTS, env={"DJANGO_SETTINGS_MODULE": "djroutes.settings"})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["app"] == "djroutes.settings"
    missing = cli("--django-settings", "nowhere.settings", cwd=TESTS)
    assert missing.returncode == 2
    assert "nowhere" in missing.stderr and "Traceback" not in missing.stderr


# --- mistakes -----------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "message"), [
    ("shop", "is not module:attribute"),
    ("shop:app:x", "is not module:attribute"),
    ("no_such_module_here:app", "no module named 'no_such_module_here'"),
    ("json:nothing", "has no attribute 'nothing'"),
    ("json:dumps", "not a Flask, Starlette, FastAPI or Django application"),
    ("json:dumps(open('x'))", "arguments must be literals"),
])
def test_a_bad_app_spec_is_a_clear_error_with_status_2(spec: str, message: str) -> None:
    result = cli(spec)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_an_app_that_fails_to_import_or_build_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "broken_shop.py").write_text(textwrap.dedent("""
        import missing_dependency_of_the_shop
        app = None
    """))
    (tmp_path / "failing_factory.py").write_text(textwrap.dedent("""
        def create_app():
            raise RuntimeError("DATABASE_URL is not set")
    """))
    result = cli("broken_shop:app", "--app-dir", str(tmp_path))
    assert result.returncode == 1
    assert "importing broken_shop failed: ModuleNotFoundError" in result.stderr
    assert "broken_shop.py:2" in result.stderr and "Traceback" not in result.stderr
    result = cli("failing_factory:create_app()", cwd=tmp_path)
    assert result.returncode == 1
    assert "RuntimeError: DATABASE_URL is not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_orangepill_person_events_are_shown_as_sent_once_the_visitor_is_known() -> None:
    """With Orangepill configured, a signed-in visitor's identity is created on the fly,
    so the table says Product Viewed reaches it once the visitor is known (and, with
    creation turned off, only once they have an Orangepill identity)."""
    env = {"CDPTRACK_ORANGEPILL_API_KEY": "op-key-for-the-table"}
    result = cli("cdptrack.examples.flask_shop:create_app()", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert "op-key-for-the-table" not in result.stdout + result.stderr
    product = row(json.loads(result.stdout), "/product/<product_id>")
    viewed = product["requests"]["GET"]["events"][1]
    assert viewed["destinations"]["orangepill"] == "known_visitor"
    off = cli("cdptrack.examples.flask_shop:create_app()", "--json",
              env={**env, "CDPTRACK_ORANGEPILL_CREATE_IDENTITIES": "0"})
    assert off.returncode == 0, off.stderr
    product = row(json.loads(off.stdout), "/product/<product_id>")
    assert product["requests"]["GET"]["events"][1]["destinations"]["orangepill"] == (
        "orangepill_identity")


# --- FastAPI's documentation pages, the route count, where an import failed -----------

FASTAPI_SHOP = """
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse
    from cdptrack.integrations.fastapi import setup

    app = FastAPI(docs_url="/api-docs")

    @app.get("/products/{product_id}", response_class=HTMLResponse)
    def product(product_id: str) -> str:
        return "<h1>product</h1>"

    @app.api_route("/cart", methods=["GET", "POST"], response_class=HTMLResponse)
    def cart() -> str:
        return "<h1>cart</h1>"

    setup(app, tracker=TRACKER)
"""
DOCS = ("/openapi.json", "/api-docs", "/docs/oauth2-redirect", "/redoc")


def fastapi_shop(folder: Path, tracker: str = "None") -> None:
    (folder / "docs_shop.py").write_text(
        textwrap.dedent(FASTAPI_SHOP).replace("TRACKER", tracker))


def test_fastapi_documentation_pages_are_never_tracked(tmp_path: Path) -> None:
    fastapi_shop(tmp_path)
    result = cli("docs_shop:app", "--app-dir", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    for path in DOCS:
        found = row(document, path)
        assert found["tracked"] is False, found
        assert all(not plan["tracked"] for plan in found["requests"].values())
    assert row(document, "/products/{product_id}")["tracked"] is True
    text = cli("docs_shop:app", "--app-dir", str(tmp_path)).stdout
    docs_line = next(line for line in text.splitlines() if " /redoc " in line)
    assert "nothing" in docs_line and "page" not in docs_line

    # At request time too: the pages answer, nothing is sent and no cookie is set.
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse

    from cdptrack.integrations.fastapi import setup

    tracker = ListTracker()
    app = FastAPI(docs_url="/api-docs")

    @app.get("/products/{product_id}", response_class=HTMLResponse)
    def product(product_id: str) -> str:
        return "<h1>product</h1>"

    setup(app, tracker=tracker, defer_events=False)
    with TestClient(app) as client:
        for path in DOCS:
            response = client.get(path + ("?state=x" if "oauth2" in path else ""))
            assert response.status_code == 200, path
            assert "sc" not in response.cookies, path
        assert tracker.events == []
        client.get("/products/7")
    assert "Product Viewed" in tracker.labels()


def test_the_header_counts_routes_and_method_route_pairs(tmp_path: Path) -> None:
    fastapi_shop(tmp_path)
    result = cli("docs_shop:app", "--app-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    table = [line for line in lines[2:] if line.startswith(("GET ", "POST "))]
    # Six routes (two of the shop, four of FastAPI's docs), /cart with GET and POST.
    assert lines[0] == "fastapi app docs_shop:app: 6 routes (7 method/route pairs)"
    assert len(table) == 7


def test_an_import_failure_names_the_shops_own_line(tmp_path: Path) -> None:
    (tmp_path / "env_shop.py").write_text(textwrap.dedent("""
        import json
        import os

        SECRET = os.environ["SHOP_SECRET_THAT_IS_NOT_SET"]
    """))
    (tmp_path / "parse_shop.py").write_text(textwrap.dedent("""
        import json

        SETTINGS = json.loads("{not json")
    """))
    result = cli("env_shop:app", "--app-dir", str(tmp_path))
    assert result.returncode == 1
    assert "KeyError" in result.stderr
    assert f"(at {tmp_path / 'env_shop.py'}:5)" in result.stderr, result.stderr
    assert "frozen" not in result.stderr
    result = cli("parse_shop:app", "--app-dir", str(tmp_path))
    assert result.returncode == 1
    assert "JSONDecodeError" in result.stderr
    assert f"(at {tmp_path / 'parse_shop.py'}:4)" in result.stderr, result.stderr
