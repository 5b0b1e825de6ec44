"""The bare ASGI and WSGI middlewares: what is tracked, what is not, and that the shop's
response is never changed beyond the ``sc`` cookie."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from typing import Any

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from observe_support import ListTracker
from werkzeug.test import Client

from cdptrack.asgi import CDPTrackMiddleware
from cdptrack.events import Event
from cdptrack.observe.state import STATE_KEY
from cdptrack.wsgi import CDPTrackWSGIMiddleware

UUID_SC = "CDA68358-94FB-4D83-9655-3FEB3C4114A3"


# --- a tiny raw ASGI app and driver ------------------------------------------------------


def make_asgi_app(status: int = 200, body: bytes = b"<h1>hi</h1>", chunks: int = 1,
                  content_type: bytes = b"text/html; charset=utf-8",
                  route_template: str | None = None, path_params: dict[str, Any] | None = None,
                  raise_after_start: bool = False) -> Any:
    class Route:
        def __init__(self, path_format: str) -> None:
            self.path_format = path_format
            self.name = "view"

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if route_template is not None:
            scope["route"] = Route(route_template)
            scope["path_params"] = path_params or {}
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", content_type),
                                (b"content-length", str(len(body) * chunks).encode())]})
        if raise_after_start:
            raise RuntimeError("view failed mid-stream")
        for i in range(chunks):
            await send({"type": "http.response.body", "body": body,
                        "more_body": i < chunks - 1})

    return app


def call_asgi(app: Any, path: str = "/", method: str = "GET",
              headers: list[tuple[bytes, bytes]] | None = None, scheme: str = "http",
              query: bytes = b"", scope_extra: dict[str, Any] | None = None
              ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    scope: dict[str, Any] = {
        "type": "http", "http_version": "1.1", "method": method, "scheme": scheme,
        "path": path, "raw_path": path.encode(), "query_string": query, "root_path": "",
        # extra headers first: the first of a repeated header wins, as in the middleware
        "headers": [*(headers or []), (b"host", b"shop.test"),
                    (b"user-agent", b"Mozilla/5.0 Firefox/120")],
        "client": ("203.0.113.9", 5000), "server": ("shop.test", 80),
        **(scope_extra or {}),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent, scope


def start_headers(sent: list[dict[str, Any]]) -> list[tuple[bytes, bytes]]:
    return list(sent[0]["headers"])


# --- filters ------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "headers"), [
    ("HEAD", "/products/1", []),
    ("OPTIONS", "/products/1", []),
    ("GET", "/static/app.css", []),
    ("GET", "/img/logo.png", []),
    ("GET", "/favicon.ico", []),
    ("GET", "/products/1", [(b"sec-purpose", b"prefetch;prerender")]),
    ("GET", "/products/1", [(b"purpose", b"prefetch")]),
    ("GET", "/products/1", [(b"user-agent", b"Mozilla/5.0 (compatible; Googlebot/2.1)")]),
    ("GET", "/products/1", [(b"user-agent", b"facebookexternalhit/1.1")]),
    ("GET", "/products/1", [(b"sec-gpc", b"1")]),
])
def test_untracked_requests_send_nothing_and_set_no_cookie(
        method: str, path: str, headers: list[tuple[bytes, bytes]]) -> None:
    tracker = ListTracker()
    app = CDPTrackMiddleware(make_asgi_app(route_template="/products/{id}",
                                           path_params={"id": "1"}), tracker)
    sent, _ = call_asgi(app, path, method, headers)
    assert tracker.events == []
    assert all(name != b"set-cookie" for name, _ in start_headers(sent))


def test_product_page_gives_page_and_product_viewed_with_context() -> None:
    tracker = ListTracker()
    app = CDPTrackMiddleware(make_asgi_app(route_template="/products/{id}",
                                           path_params={"id": "72354"}), tracker)
    sent, _ = call_asgi(app, "/products/72354", headers=[(b"cookie", f"sc={UUID_SC}".encode())],
                        query=b"ref=mail")
    assert tracker.labels() == ["page", "Product Viewed"]
    viewed = tracker.one("Product Viewed")
    assert viewed.properties == {"product_id": "72354"}
    assert viewed.visitor.sc == UUID_SC
    assert viewed.context == {"ip": "203.0.113.9", "user_agent": "Mozilla/5.0 Firefox/120",
                              "url": "http://shop.test/products/72354?ref=mail"}
    assert tracker.one("page").properties["search"] == "?ref=mail"
    # a known visitor gets no cookie
    assert all(name != b"set-cookie" for name, _ in start_headers(sent))


def test_page_event_only_for_html() -> None:
    tracker = ListTracker()
    app = CDPTrackMiddleware(make_asgi_app(route_template="/products/{id}",
                                           path_params={"id": "1"},
                                           content_type=b"application/json"), tracker)
    call_asgi(app, "/products/1")
    assert tracker.labels() == ["Product Viewed"]


@pytest.mark.parametrize("status", [301, 302, 404, 500])
def test_no_events_for_errors_or_get_redirects(status: int) -> None:
    tracker = ListTracker()
    app = CDPTrackMiddleware(make_asgi_app(status=status, route_template="/products/{id}",
                                           path_params={"id": "1"}), tracker)
    call_asgi(app, "/products/1")
    assert tracker.events == []


def test_events_wait_for_the_last_body_chunk_of_a_stream() -> None:
    tracker = ListTracker()
    seen_before_last: list[int] = []
    inner = make_asgi_app(chunks=3, route_template="/products/{id}", path_params={"id": "9"})

    async def spy_send_app(scope: Any, receive: Any, send: Any) -> None:
        async def spying(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body" and message.get("more_body"):
                seen_before_last.append(len(tracker.events))
            await send(message)
        await inner(scope, receive, spying)

    app = CDPTrackMiddleware(spy_send_app, tracker)
    sent, _ = call_asgi(app, "/products/9")
    assert seen_before_last == [0, 0]
    assert tracker.labels() == ["page", "Product Viewed"]
    assert b"".join(m.get("body", b"") for m in sent[1:]) == b"<h1>hi</h1>" * 3


def test_exception_in_view_propagates_unchanged_and_sends_nothing() -> None:
    tracker = ListTracker()
    app = CDPTrackMiddleware(make_asgi_app(raise_after_start=True), tracker)
    with pytest.raises(RuntimeError, match="view failed mid-stream"):
        call_asgi(app, "/products/1")
    assert tracker.events == []


# --- the visitor cookie -------------------------------------------------------------------


def _set_cookie(sent: list[dict[str, Any]]) -> str | None:
    values = [v.decode() for n, v in start_headers(sent) if n == b"set-cookie"]
    assert len(values) <= 1
    return values[0] if values else None


def test_new_visitor_gets_an_uppercase_uuid_cookie_used_in_events() -> None:
    tracker = ListTracker()
    app = CDPTrackMiddleware(make_asgi_app(), tracker)
    sent, _ = call_asgi(app, "/")
    cookie = _set_cookie(sent)
    assert cookie is not None
    value = cookie.split(";")[0].split("=", 1)[1]
    assert value == value.upper() and len(value) == 36
    assert cookie.endswith("; Max-Age=63072000; Path=/; SameSite=Lax")
    assert "Secure" not in cookie
    assert tracker.one("page").visitor.sc == value


def test_cookie_options_and_secure_on_https() -> None:
    app = CDPTrackMiddleware(make_asgi_app(), ListTracker(), cookie_name="visitor",
                             cookie_domain=".shop.test", cookie_max_age=3600)
    sent, _ = call_asgi(app, "/", scheme="https")
    cookie = _set_cookie(sent)
    assert cookie is not None and cookie.startswith("visitor=")
    assert "; Max-Age=3600; Path=/; Domain=.shop.test; Secure; SameSite=Lax" in cookie


def test_a_host_outside_the_cookie_domain_is_warned_about_once(
        caplog: pytest.LogCaptureFixture) -> None:
    app = CDPTrackMiddleware(make_asgi_app(), ListTracker(), cookie_domain=".shop.example")
    with caplog.at_level(logging.WARNING, logger="cdptrack.observe"):
        for host in (b"localhost:8000", b"localhost:8000", b"www.shop.example",
                     b"shop.example:443", b"shop.example.evil.test"):
            sent, _ = call_asgi(app, "/", headers=[(b"host", host)])
            assert _set_cookie(sent) is not None  # the cookie is still set
    warned = [r.getMessage() for r in caplog.records if "Domain=.shop.example" in
              r.getMessage()]
    assert len(warned) == 2, warned
    assert "host localhost:8000" in warned[0]
    assert "host shop.example.evil.test" in warned[1]


def test_no_cookie_domain_no_check(caplog: pytest.LogCaptureFixture) -> None:
    app = CDPTrackMiddleware(make_asgi_app(), ListTracker())
    with caplog.at_level(logging.WARNING, logger="cdptrack.observe"):
        call_asgi(app, "/", headers=[(b"host", b"localhost:8000")])
    assert not [r for r in caplog.records if "cookie" in r.getMessage()]


@pytest.mark.parametrize("bad", ["x" * 65, "<script>", "a b", "%00"])
def test_malformed_or_oversized_sc_is_replaced_and_counted(bad: str) -> None:
    tracker = ListTracker()
    app = CDPTrackMiddleware(make_asgi_app(), tracker)
    sent, _ = call_asgi(app, "/", headers=[(b"cookie", f"sc={bad}".encode())])
    cookie = _set_cookie(sent)
    assert cookie is not None and bad not in cookie
    assert tracker.one("page").visitor.sc != bad
    assert app.observer.stats()["sc_rejected"] == 1


def test_consent_cookie_and_callable() -> None:
    tracker = ListTracker()
    app = CDPTrackMiddleware(make_asgi_app(), tracker, consent_cookie="consent",
                             consent_value="yes")
    sent, _ = call_asgi(app, "/")
    assert tracker.events == [] and _set_cookie(sent) is None
    sent, _ = call_asgi(app, "/", headers=[(b"cookie", b"consent=no")])
    assert tracker.events == [] and _set_cookie(sent) is None
    sent, _ = call_asgi(app, "/", headers=[(b"cookie", b"a=1; consent=yes")])
    assert tracker.labels() == ["page"] and _set_cookie(sent) is not None

    tracker2 = ListTracker()
    app2 = CDPTrackMiddleware(make_asgi_app(), tracker2,
                              consent=lambda state: state.cookies.get("sc") is not None)
    call_asgi(app2, "/")
    assert tracker2.events == []
    call_asgi(app2, "/", headers=[(b"cookie", f"sc={UUID_SC}".encode())])
    assert tracker2.labels() == ["page"]


# --- robustness ---------------------------------------------------------------------------


class ExplodingTracker:
    def capture(self, event: Event) -> None:
        raise RuntimeError("tracker broke")


def test_errors_inside_cdptrack_are_counted_and_logged_not_raised(
        caplog: pytest.LogCaptureFixture) -> None:
    app = CDPTrackMiddleware(make_asgi_app(), ExplodingTracker())
    with caplog.at_level(logging.WARNING, logger="cdptrack.observe"):
        sent, _ = call_asgi(app, "/")
    assert sent[-1]["body"] == b"<h1>hi</h1>"
    assert app.observer.stats()["errors"] == 1
    assert "error in finish" in caplog.text


def test_failing_catalogue_loader_costs_only_what_it_would_have_added() -> None:
    def catalogue(product_id: str) -> Any:
        raise LookupError("database down")

    tracker = ListTracker()
    app = CDPTrackMiddleware(make_asgi_app(route_template="/products/{id}",
                                           path_params={"id": "1"}), tracker,
                             catalogue=catalogue)
    sent, _ = call_asgi(app, "/products/1")
    assert sent[-1]["body"] == b"<h1>hi</h1>"
    assert app.observer.stats()["catalogue_error"] == 1
    assert tracker.labels() == ["page", "Product Viewed"]  # the page and its event stay
    assert tracker.one("Product Viewed").properties["product_id"] == "1"


def test_double_installation_tracks_once() -> None:
    tracker = ListTracker()
    inner = CDPTrackMiddleware(make_asgi_app(), tracker)
    outer = CDPTrackMiddleware(inner, tracker)
    sent, _ = call_asgi(outer, "/")
    assert tracker.labels() == ["page"]
    assert sum(1 for n, _ in start_headers(sent) if n == b"set-cookie") == 1


def test_response_unchanged_except_the_cookie() -> None:
    plain, _ = call_asgi(make_asgi_app(chunks=2), "/products/1",
                         headers=[(b"cookie", f"sc={UUID_SC}".encode())])
    tracked, _ = call_asgi(CDPTrackMiddleware(make_asgi_app(chunks=2), ListTracker()),
                           "/products/1", headers=[(b"cookie", f"sc={UUID_SC}".encode())])
    assert tracked == plain
    new_plain, _ = call_asgi(make_asgi_app(chunks=2), "/")
    new_tracked, _ = call_asgi(CDPTrackMiddleware(make_asgi_app(chunks=2), ListTracker()), "/")
    assert new_tracked[1:] == new_plain[1:]
    extra = [h for h in start_headers(new_tracked) if h not in start_headers(new_plain)]
    assert [name for name, _ in extra] == [b"set-cookie"]


def test_concurrent_requests_keep_their_own_state() -> None:
    tracker = ListTracker()

    async def slow_app(scope: Any, receive: Any, send: Any) -> None:
        from cdptrack.observe.declare import track
        pid = scope["path"].rsplit("/", 1)[-1]
        track.product(product_id=pid, price=int(pid))
        await asyncio.sleep(0.01 if pid == "1" else 0)
        await make_asgi_app()(scope, receive, send)

    app = CDPTrackMiddleware(slow_app, tracker)

    async def both() -> None:
        async def one(pid: str) -> None:
            scope = {"type": "http", "method": "GET", "scheme": "http", "path": f"/x/{pid}",
                     "query_string": b"", "root_path": "",
                     "headers": [(b"host", b"shop.test"),
                                 (b"cookie", f"sc=V{pid}".encode())]}

            async def receive() -> dict[str, Any]:
                return {"type": "http.request"}

            async def send(message: dict[str, Any]) -> None:
                pass

            await app(scope, receive, send)

        await asyncio.gather(one("1"), one("2"))

    asyncio.run(both())
    viewed = {e.visitor.sc: e.properties for e in tracker.named("Product Viewed")}
    assert viewed == {"V1": {"product_id": "1", "price": 1},
                      "V2": {"product_id": "2", "price": 2}}


# --- sessions from signed cookies ---------------------------------------------------------


def _starlette_cookie(secret: str, data: dict[str, Any]) -> str:
    payload = __import__("base64").b64encode(json.dumps(data).encode())
    return TimestampSigner(secret).sign(payload).decode()


def _flask_cookie(secret: str, data: dict[str, Any]) -> str:
    serializer = URLSafeTimedSerializer(
        secret, salt="cookie-session",
        signer_kwargs={"key_derivation": "hmac", "digest_method": hashlib.sha1})
    return serializer.dumps(data)


def test_asgi_reads_a_starlette_session_cookie_with_only_the_secret() -> None:
    before = {"cart": [{"product_id": "1", "quantity": 1, "price": 5}],
              "user": {"id": "u-1", "email": "a@example.com"}}
    after = {"cart": [{"product_id": "1", "quantity": 3, "price": 5}],
             "user": {"id": "u-1", "email": "a@example.com"}}

    async def shop(scope: Any, receive: Any, send: Any) -> None:
        cookie = _starlette_cookie("s3cret", after)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"set-cookie", f"session={cookie}; path=/".encode())]})
        await send({"type": "http.response.body", "body": b"{}"})

    tracker = ListTracker()
    app = CDPTrackMiddleware(shop, tracker, session_secret="s3cret")
    call_asgi(app, "/cart/add", "POST", headers=[
        (b"cookie", f"session={_starlette_cookie('s3cret', before)}".encode())])
    event = tracker.one("Cart Updated")
    assert event.properties["added"] == [{"product_id": "1", "quantity": 2, "price": 5}]
    assert event.visitor.email == "a@example.com"

    # a forged cookie (wrong secret) is not trusted
    tracker.clear()
    call_asgi(app, "/cart/add", "POST", headers=[
        (b"cookie", f"session={_starlette_cookie('other', before)}".encode())])
    assert tracker.one("Cart Updated").properties["added"][0]["quantity"] == 3


def wsgi_shop(set_session: dict[str, Any] | None, status: str = "303 See Other") -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        headers = [("Location", "/cart"), ("Content-Type", "text/html")]
        if set_session is not None:
            headers.append(("Set-Cookie", f"session={_flask_cookie('k', set_session)}; "
                                          "HttpOnly; Path=/"))
        start_response(status, headers)
        return [b"redirect"]

    return app


def test_wsgi_reads_a_flask_session_cookie_and_sees_an_emptied_cart() -> None:
    tracker = ListTracker()
    before = {"cart": {"7": 2}, "email": "b@example.com"}
    app = CDPTrackWSGIMiddleware(wsgi_shop({"cart": {}, "email": "b@example.com"}), tracker,
                                 session_secret="k")
    client = Client(app)
    client.set_cookie("session", _flask_cookie("k", before), domain="localhost")
    response = client.post("/cart/clear")
    response.close()
    event = tracker.one("Cart Updated")
    assert event.properties["products"] == []
    assert event.properties["removed"] == [{"product_id": "7", "quantity": 2}]
    assert event.visitor.email == "b@example.com"


def test_wsgi_unchanged_session_means_no_cart_event() -> None:
    tracker = ListTracker()
    app = CDPTrackWSGIMiddleware(wsgi_shop(None), tracker, session_secret="k")
    client = Client(app)
    client.set_cookie("session", _flask_cookie("k", {"cart": {"7": 2}}), domain="localhost")
    client.post("/cart/noop").close()
    assert tracker.events == []


def test_wsgi_body_bytes_and_headers_unchanged_and_state_in_environ() -> None:
    seen: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        seen["state"] = environ.get(STATE_KEY)
        start_response("200 OK", [("Content-Type", "text/html"), ("X-Shop", "1")])

        def body() -> Any:
            yield b"<p>"
            yield b"streamed"
            yield b"</p>"
        return body()

    tracker = ListTracker()
    plain_client, tracked_client = Client(app), Client(CDPTrackWSGIMiddleware(app, tracker))
    for client in (plain_client, tracked_client):
        client.set_cookie("sc", UUID_SC, domain="localhost")
    plain = plain_client.get("/")
    tracked = tracked_client.get("/")
    assert tracked.get_data() == plain.get_data() == b"<p>streamed</p>"
    assert tracked.headers.to_wsgi_list() == plain.headers.to_wsgi_list()
    assert tracker.events == []  # not complete until close()
    tracked.close()
    assert tracker.labels() == ["page"]
    assert seen["state"] is not None


def test_wsgi_bare_paths_use_path_conventions() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/html")])
        return [b"ok"]

    tracker = ListTracker()
    client = Client(CDPTrackWSGIMiddleware(app, tracker))
    client.get("/shop/products/sku-77").close()
    assert tracker.one("Product Viewed").properties["product_id"] == "sku-77"
    assert tracker.one("page").name == "Product"
