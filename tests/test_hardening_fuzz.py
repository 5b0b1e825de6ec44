"""Whatever a client sends (cookie fields, raw paths, header bytes, forged session
cookies), the served response is the app's own, except at most one clean ``sc``
``Set-Cookie``: the ASGI middleware driven directly, the WSGI one through a real
wsgiref server loop."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
from collections.abc import Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from observe_support import ListTracker

from cdptrack.asgi import CDPTrackMiddleware
from cdptrack.wsgi import CDPTrackWSGIMiddleware

CLEAN_SC = re.compile(
    r"^sc=[0-9A-F]{8}-[0-9A-F]{4}-4[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}; "
    r"Max-Age=\d+; Path=/; (Secure; )?SameSite=Lax$")
FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

# Header value bytes a client can send: no CR, LF or NUL (a server refuses those).
header_byte = st.integers(0x20, 0xFF).filter(lambda b: b != 0x7F)
header_value = st.lists(header_byte, max_size=60).map(bytes)
token = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.",
                min_size=1, max_size=12)
cookie_value = st.one_of(
    st.just("CDA68358-94FB-4D83-9655-3FEB3C4114A3"),
    st.text("0123456789ABCDEF-", max_size=70),
    header_value.map(lambda b: b.decode("latin-1").replace(";", "")),
)
cookie_pair = st.tuples(st.one_of(st.sampled_from(["sc", "session", "theme"]), token),
                        cookie_value).map(lambda p: f"{p[0]}={p[1]}")
cookie_field = st.lists(cookie_pair, max_size=4).map("; ".join)
forged_session = st.one_of(
    st.binary(max_size=80).map(lambda b: b.hex()),
    st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.", max_size=120),
).map(lambda v: f"session={v}")
path_segment = st.one_of(
    token, st.binary(min_size=1, max_size=10).map(lambda b: "".join(f"%{c:02X}" for c in b)),
    st.sampled_from(["..", ".", "products", "category", "static", "%2F", "%25", "x y"]))
raw_path = st.lists(path_segment, max_size=5).map(lambda parts: "/" + "/".join(parts))
other_headers = st.lists(st.tuples(
    st.sampled_from([b"user-agent", b"x-forwarded-for", b"referer", b"sec-gpc", b"host",
                     b"x-forwarded-proto", b"x-forwarded-host", b"x-custom"]),
    header_value), max_size=4)


def shop_headers() -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"text/html; charset=utf-8"), (b"x-shop", b"1"),
            (b"set-cookie", b"theme=light; Path=/")]


async def asgi_shop(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": shop_headers()})
    await send({"type": "http.response.body", "body": b"<p>a</p>", "more_body": True})
    await send({"type": "http.response.body", "body": b"<p>b</p>"})


def drive(app: Any, path: str, headers: list[tuple[bytes, bytes]]) -> list[dict[str, Any]]:
    from urllib.parse import unquote

    sent: list[dict[str, Any]] = []
    scope = {"type": "http", "http_version": "2", "method": "GET", "scheme": "https",
             "path": unquote(path, errors="surrogateescape"),
             "raw_path": path.replace(" ", "%20").encode(), "query_string": b"q=1",
             "root_path": "", "headers": headers, "client": ("203.0.113.9", 1),
             "server": ("shop.test", 443)}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


VALID_SC = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


def visitor_kept(cookie_fields: list[str]) -> bool:
    """Whether the request carries a usable ``sc`` (the first one, all fields joined)."""
    for part in "; ".join(cookie_fields).split(";"):
        name, sep, value = part.partition("=")
        if sep and name.strip() == "sc":
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            return bool(VALID_SC.match(value))
    return False


def assert_only_a_clean_sc_added(plain: list[tuple[str, str]],
                                 tracked: list[tuple[str, str]], kept: bool = False) -> None:
    """``tracked`` is ``plain`` plus at most one clean ``sc`` cookie, and none when
    the request already had a usable visitor id (``kept``)."""
    extra = list(tracked)
    for header in plain:
        assert header in extra, (header, tracked)
        extra.remove(header)
    assert len(extra) <= (0 if kept else 1), extra
    for name, value in extra:
        assert name.lower() == "set-cookie" and CLEAN_SC.match(value), (name, value)


@FUZZ
@given(path=raw_path, cookies=st.lists(st.one_of(cookie_field, forged_session), max_size=3),
       others=other_headers)
def test_asgi_response_is_the_apps_own_plus_one_clean_cookie(
        path: str, cookies: list[str], others: list[tuple[bytes, bytes]]) -> None:
    headers = [(b"cookie", c.encode("latin-1")) for c in cookies] + others
    tracked_app = CDPTrackMiddleware(asgi_shop, ListTracker(), session_secret="s3cret",
                                     trust_forwarded=True)
    plain = drive(asgi_shop, path, headers)
    tracked = drive(tracked_app, path, headers)
    assert tracked[1:] == plain[1:]
    assert tracked[0]["status"] == plain[0]["status"]

    def text(message: dict[str, Any]) -> list[tuple[str, str]]:
        return [(n.decode("latin-1"), v.decode("latin-1")) for n, v in message["headers"]]

    assert_only_a_clean_sc_added(text(plain[0]), text(tracked[0]), visitor_kept(cookies))


# --- WSGI through wsgiref -------------------------------------------------------------------


def wsgi_shop(environ: dict[str, Any], start_response: Any) -> Any:
    start_response("200 OK", [(n.decode(), v.decode()) for n, v in shop_headers()])

    def body() -> Iterator[bytes]:
        yield b"<p>a</p>"
        yield environ.get("PATH_INFO", "").encode("latin-1")
    return body()


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module", name="servers")
def servers_fixture() -> Iterator[tuple[int, int]]:
    plain = make_server("127.0.0.1", 0, wsgi_shop, handler_class=_Quiet)
    tracked = make_server("127.0.0.1", 0, CDPTrackWSGIMiddleware(
        wsgi_shop, ListTracker(), session_secret="s3cret", trust_forwarded=2),
        handler_class=_Quiet)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (plain, tracked)]
    for thread in threads:
        thread.start()
    try:
        yield int(plain.server_address[1]), int(tracked.server_address[1])
    finally:
        for server in (plain, tracked):
            server.shutdown()
            server.server_close()
        for thread in threads:
            thread.join(5)


def raw_get(port: int, path: str, headers: list[tuple[bytes, bytes]]
            ) -> tuple[bytes, list[tuple[str, str]], bytes]:
    request = b"GET " + path.replace(" ", "%20").encode() + b" HTTP/1.0\r\n"
    request += b"Host: shop.test\r\n"
    for name, value in headers:
        request += name + b": " + value + b"\r\n"
    request += b"\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=20) as connection:
        connection.sendall(request)
        data = b""
        while True:
            chunk = connection.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    parsed = [tuple(line.split(": ", 1)) for line in lines]
    return status.encode(), [(n, v) for n, v in parsed if n.lower() != "date"], body


@FUZZ
@given(path=raw_path, cookies=st.lists(st.one_of(cookie_field, forged_session), max_size=3),
       others=other_headers)
def test_wsgi_response_through_wsgiref_is_the_apps_own_plus_one_clean_cookie(
        servers: tuple[int, int], path: str, cookies: list[str],
        others: list[tuple[bytes, bytes]]) -> None:
    headers = [(b"Cookie", c.encode("latin-1")) for c in cookies] + [
        (n.title(), v) for n, v in others if n != b"host"]
    plain_port, tracked_port = servers
    plain = raw_get(plain_port, path, headers)
    tracked = raw_get(tracked_port, path, headers)
    assert tracked[0] == plain[0]
    assert tracked[2] == plain[2]
    # wsgiref joins repeated header fields with "," (as gunicorn does); cdptrack splits
    # them again where a cookie name follows, so the visitor is kept as on ASGI.  A
    # field whose own values hold a comma is ambiguous once joined: then only "at most
    # one clean sc" is checked.
    ambiguous = len(cookies) > 1 and any("," in c for c in cookies)
    assert_only_a_clean_sc_added(plain[1], tracked[1],
                                 not ambiguous and visitor_kept(cookies))
