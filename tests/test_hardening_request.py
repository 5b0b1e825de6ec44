"""What a request says, read the way it was meant: forwarded headers a client cannot
forge, cookies split over several header fields, percent-encoded paths, and a visitor
cookie the shop's own view sets."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from flask import Flask, make_response
from observe_support import ListTracker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route
from test_observe_middleware import UUID_SC, call_asgi, make_asgi_app, start_headers
from werkzeug.test import Client

from cdptrack.asgi import CDPTrackMiddleware
from cdptrack.config import ConfigError
from cdptrack.integrations.flask import CDPTrack
from cdptrack.integrations.starlette import setup
from cdptrack.observe.core import forwarded_value
from cdptrack.observe.options import ObserveOptions
from cdptrack.wsgi import CDPTrackWSGIMiddleware

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

APP_SC = "AAAAAAAA-1111-4222-8333-444444444444"


def _context(tracker: ListTracker) -> dict[str, Any]:
    return dict(tracker.one("page").context)


# --- item 3: X-Forwarded-* ------------------------------------------------------------------


@pytest.mark.parametrize(("header", "hops", "expected"), [
    ("6.6.6.6, 203.0.113.9", 1, "203.0.113.9"),   # the client typed 6.6.6.6
    ("6.6.6.6, 203.0.113.9, 10.0.0.2", 2, "203.0.113.9"),
    ("203.0.113.9", 2, None),                      # fewer values than proxies: forged
    ("", 1, None),
    (" ,", 1, None),
])
def test_forwarded_value_takes_what_the_trusted_proxy_appended(
        header: str, hops: int, expected: str | None) -> None:
    assert forwarded_value(header, hops) == expected


def test_trust_forwarded_true_means_one_proxy_and_ignores_what_the_client_wrote() -> None:
    tracker = ListTracker()
    app = CDPTrackMiddleware(make_asgi_app(), tracker, trust_forwarded=True)
    call_asgi(app, "/", headers=[
        (b"x-forwarded-for", b"6.6.6.6, 203.0.113.9"),
        (b"x-forwarded-proto", b"http, https"),
        (b"x-forwarded-host", b"evil.example, shop.example")])
    context = _context(tracker)
    assert context["ip"] == "203.0.113.9"
    assert context["url"] == "https://shop.example/"


def test_two_proxies_and_separate_counts_for_proto_and_host() -> None:
    tracker = ListTracker()
    app = CDPTrackMiddleware(make_asgi_app(), tracker, trust_forwarded=2,
                             trust_forwarded_host=0)
    call_asgi(app, "/", headers=[
        (b"x-forwarded-for", b"6.6.6.6, 198.51.100.7, 10.0.0.2"),
        (b"x-forwarded-proto", b"https, http"),
        (b"x-forwarded-host", b"evil.example")])
    context = _context(tracker)
    assert context["ip"] == "198.51.100.7"
    assert context["url"] == "https://shop.test/"  # host header kept: 0 hops trusted


def test_repeated_forwarded_fields_are_joined_before_counting() -> None:
    tracker = ListTracker()
    app = CDPTrackMiddleware(make_asgi_app(), tracker, trust_forwarded=True)
    call_asgi(app, "/", headers=[(b"x-forwarded-for", b"6.6.6.6"),
                                 (b"x-forwarded-for", b"203.0.113.9")])
    assert _context(tracker)["ip"] == "203.0.113.9"


def test_forwarded_headers_ignored_by_default_and_on_wsgi_too() -> None:
    def shop(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/html")])
        return [b"ok"]

    plain, trusted = ListTracker(), ListTracker()
    for tracker, opts in ((plain, {}), (trusted, {"trust_forwarded": "1"})):
        client = Client(CDPTrackWSGIMiddleware(shop, tracker, **opts))
        client.get("/", headers={"X-Forwarded-For": "6.6.6.6, 203.0.113.9"},
                   environ_base={"REMOTE_ADDR": "10.0.0.1"}).close()
    assert _context(plain)["ip"] == "10.0.0.1"
    assert _context(trusted)["ip"] == "203.0.113.9"


@pytest.mark.parametrize("bad", [-1, "many", 1.5j])
def test_a_bad_proxy_count_is_a_config_error(bad: Any) -> None:
    with pytest.raises(ConfigError, match="trust_forwarded"):
        ObserveOptions(trust_forwarded=bad)


# --- item 4: several Cookie fields ----------------------------------------------------------


def test_cookie_split_over_two_fields_keeps_the_visitor() -> None:
    tracker = ListTracker()
    app = CDPTrackMiddleware(make_asgi_app(), tracker)
    sent, _ = call_asgi(app, "/", headers=[(b"cookie", b"theme=dark"),
                                           (b"cookie", f"sc={UUID_SC}".encode())])
    assert tracker.one("page").visitor.sc == UUID_SC
    assert all(name != b"set-cookie" for name, _ in start_headers(sent))


# --- item 5: percent-encoded paths ------------------------------------------------------------

TEA = "/category/%D1%87%D0%B0%D0%B9"


def test_asgi_reports_the_path_as_requested_and_decodes_parameters() -> None:
    tracker = ListTracker()

    async def category(request: Request) -> HTMLResponse:
        return HTMLResponse("<p>tea</p>")

    app = Starlette(routes=[Route("/category/{slug}", category)])
    setup(app, tracker=tracker)
    with TestClient(app) as client:
        assert client.get(TEA).status_code == 200
    assert tracker.one("page").properties["url"] == "http://testserver" + TEA
    assert _context(tracker)["url"] == "http://testserver" + TEA
    listed = tracker.one("Product List Viewed").properties
    assert "чай" in (listed.get("category"), listed.get("category_id"), listed.get("list_id"))


def test_asgi_without_raw_path_encodes_the_decoded_path() -> None:
    tracker = ListTracker()
    app = CDPTrackMiddleware(make_asgi_app(), tracker)
    call_asgi(app, "/category/чай x", scope_extra={"raw_path": None})
    assert _context(tracker)["url"] == "http://shop.test/category/%D1%87%D0%B0%D0%B9%20x"


def test_wsgi_latin1_environ_path_is_reported_as_requested() -> None:
    tracker = ListTracker()

    def shop(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/html")])
        return [b"ok"]

    client = Client(CDPTrackWSGIMiddleware(shop, tracker))
    client.get(TEA).close()  # werkzeug's client puts latin-1 strings in PATH_INFO (PEP 3333)
    assert _context(tracker)["url"] == "http://localhost" + TEA
    assert tracker.one("page").properties["path"] == "/category/чай"


def test_wsgi_prefers_the_raw_request_target_when_it_names_the_same_path() -> None:
    tracker = ListTracker()

    def shop(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/html")])
        return [b"ok"]

    client = Client(CDPTrackWSGIMiddleware(shop, tracker))
    # lower-case escapes as the client sent them, as gunicorn's RAW_URI keeps them
    raw = "/category/%d1%87%d0%b0%d0%b9"
    client.get(TEA, environ_overrides={"RAW_URI": raw + "?a=1"}).close()
    client.get(TEA, environ_overrides={"RAW_URI": "/rewritten/elsewhere"}).close()
    urls = [e.context["url"] for e in tracker.named("page")]
    assert urls == ["http://localhost" + raw, "http://localhost" + TEA]


# --- item 6: the shop sets sc itself ----------------------------------------------------------


def _sc_cookies(headers: list[tuple[str, str]]) -> list[str]:
    return [v for k, v in headers if k.lower() == "set-cookie" and v.startswith("sc=")]


def test_flask_view_setting_sc_gets_no_second_cookie_and_events_use_its_value() -> None:
    app = Flask(__name__)
    tracker = ListTracker()
    CDPTrack(app, tracker=tracker)

    @app.get("/")
    def home() -> Any:
        response = make_response("<p>home</p>")
        response.set_cookie("sc", APP_SC)
        return response

    response = app.test_client().get("/")
    response.close()
    assert _sc_cookies(response.headers.to_wsgi_list()) == [f"sc={APP_SC}; Path=/"]
    assert tracker.one("page").visitor.sc == APP_SC


def test_starlette_view_setting_sc_gets_no_second_cookie_and_events_use_its_value() -> None:
    tracker = ListTracker()

    async def home(request: Request) -> HTMLResponse:
        response = HTMLResponse("<p>home</p>")
        response.set_cookie("sc", APP_SC)
        return response

    app = Starlette(routes=[Route("/", home)])
    setup(app, tracker=tracker)
    with TestClient(app) as client:
        response = client.get("/", headers={"cookie": f"sc={UUID_SC}"})
    cookies = [v for k, v in response.headers.multi_items() if k == "set-cookie"]
    assert len(cookies) == 1 and cookies[0].startswith(f"sc={APP_SC};")
    assert tracker.one("page").visitor.sc == APP_SC


def test_a_deleted_or_malformed_app_cookie_keeps_the_request_id_and_adds_nothing() -> None:
    tracker = ListTracker()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/html"),
                                (b"set-cookie", b'sc=""; Max-Age=0; Path=/')]})
        await send({"type": "http.response.body", "body": b"bye"})

    sent, _ = call_asgi(CDPTrackMiddleware(app, tracker), "/",
                        headers=[(b"cookie", f"sc={UUID_SC}".encode())])
    assert [v for n, v in start_headers(sent) if n == b"set-cookie"] == [
        b'sc=""; Max-Age=0; Path=/']
    assert tracker.one("page").visitor.sc == UUID_SC


# --- item 7: a session only inside cdptrack ---------------------------------------------------


def _cart_app() -> Starlette:
    async def add(request: Request) -> HTMLResponse:
        cart = dict(request.session.get("cart") or {})
        cart["P1"] = cart.get("P1", 0) + 1
        request.session["cart"] = cart
        return HTMLResponse("<p>added</p>")

    return Starlette(routes=[Route("/cart/add", add, methods=["POST"])])


def test_session_middleware_inside_cdptrack_is_reported_once(
        caplog: pytest.LogCaptureFixture) -> None:
    from starlette.middleware.sessions import SessionMiddleware

    tracker = ListTracker()
    app = _cart_app()
    app.add_middleware(SessionMiddleware, secret_key="s3")
    app.add_middleware(CDPTrackMiddleware, tracker=tracker)  # outermost: sees no session
    with caplog.at_level("WARNING", logger="cdptrack.observe"), TestClient(app) as client:
        client.post("/cart/add")
        client.post("/cart/add")
    warnings_seen = [r for r in caplog.records if "appears only inside" in r.getMessage()]
    assert len(warnings_seen) == 1
    middleware = app.middleware_stack
    while not isinstance(middleware, CDPTrackMiddleware):
        middleware = middleware.app  # type: ignore[attr-defined]
    assert middleware.observer.stats()["warning_session_inside"] == 2


def test_setup_puts_cdptrack_inside_the_session_and_warns_nothing(
        caplog: pytest.LogCaptureFixture) -> None:
    from starlette.middleware.sessions import SessionMiddleware

    tracker = ListTracker()
    app = _cart_app()
    app.add_middleware(SessionMiddleware, secret_key="s3")
    setup(app, tracker=tracker)
    with caplog.at_level("WARNING", logger="cdptrack.observe"), TestClient(app) as client:
        client.post("/cart/add")
        client.post("/cart/add")
    assert "appears only inside" not in caplog.text
    assert len(tracker.named("Cart Updated")) == 2


# --- items 5 and 6 on Django, served by a real gunicorn -------------------------------------


def test_django_on_gunicorn_keeps_the_shops_sc_and_reports_the_path_as_requested(
        tmp_path: Any) -> None:
    import http.client
    import sys

    from support.api_server import ApiServer
    from support.redis_server import free_port
    from test_hardening_shutdown import _env, serving

    app_sc = "0F0E0D0C-0B0A-4908-8706-050403020100"  # what /own-sc/ sets (not imported:
    api = ApiServer().start()                    # that module configures Django)
    try:
        port = free_port()
        args = [sys.executable, "-m", "gunicorn", "-w", "1", "-b", f"127.0.0.1:{port}",
                "--control-socket", str(tmp_path / "ctl"),
                "support.shutdown_django:wsgi_application"]
        answers = {}
        with serving(args, _env(api), port, tmp_path / "server.log"):
            for path in ("/own-sc/", "/category/%D1%87%D0%B0%D0%B9/"):
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                connection.request("GET", path)
                response = connection.getresponse()
                response.read()
                answers[path] = [v for k, v in response.getheaders()
                                 if k.lower() == "set-cookie" and v.startswith("sc=")]
                connection.close()
            assert api.wait_until(lambda s: len(list(s.accepted_messages("/v1"))) >= 3)
        messages = [m for _, m in api.accepted_messages("/v1")]
    finally:
        api.stop()
    assert len(answers["/own-sc/"]) == 1 and answers["/own-sc/"][0].startswith(
        f"sc={app_sc};")  # the shop's cookie, and no second one
    pages = {m["properties"]["path"]: m for m in messages if m.get("type") == "page"}
    assert pages["/own-sc/"]["anonymousId"] == app_sc  # events use the shop's id
    url = f"http://127.0.0.1:{port}/category/%D1%87%D0%B0%D0%B9/"
    assert pages["/category/чай/"]["properties"]["url"] == url
    listed = [m for m in messages if m.get("event") == "Product List Viewed"]
    assert [m["properties"].get("category") for m in listed] == ["чай"]
