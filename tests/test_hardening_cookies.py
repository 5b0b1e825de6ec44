"""A visitor whose ``Cookie`` header comes in two fields keeps its id on real WSGI
servers, which join repeated fields with a comma (gunicorn, wsgiref and werkzeug's
server with ``","``, waitress with ``", "``), and on Django's ASGI handler under uvicorn,
which builds ``META`` the same way.  Each server is first shown to join with a comma
(the app echoes the ``Cookie`` it was given), so the test cannot pass by accident."""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from observe_support import ListTracker
from support import wire_apps
from support.api_server import ApiServer
from support.redis_server import free_port
from test_hardening_shutdown import _env, serving
from test_hardening_wire import gunicorn, waitress_server, wsgiref_server
from werkzeug.serving import make_server

from cdptrack.observe.visitor import parse_cookies, split_joined_cookie_fields
from cdptrack.wsgi import CDPTrackWSGIMiddleware

SC = "CDA68358-94FB-4D83-9655-3FEB3C4114A3"
FIELDS = ["theme=dark", f"sc={SC}"]


def get_with_cookie_fields(port: int, path: str, fields: list[str]
                           ) -> tuple[int, list[str], bytes]:
    """GET ``path`` with one ``Cookie`` header field per item of ``fields``; the status,
    the ``Set-Cookie`` values and the body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.putrequest("GET", path)
        for field in fields:
            connection.putheader("Cookie", field)
        connection.endheaders()
        response = connection.getresponse()
        body = response.read()
        cookies = [v for k, v in response.getheaders() if k.lower() == "set-cookie"]
        return response.status, cookies, body
    finally:
        connection.close()


@contextmanager
def werkzeug_server(app: Any) -> Iterator[int]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_port)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


Serve = Callable[[Any], Any]


@pytest.mark.parametrize("serve", [wsgiref_server, waitress_server, werkzeug_server],
                         ids=["wsgiref", "waitress", "werkzeug"])
def test_repeated_cookie_fields_keep_the_visitor_on_threaded_wsgi_servers(
        serve: Serve) -> None:
    tracker = ListTracker()
    with serve(CDPTrackWSGIMiddleware(wire_apps.echo_cookie, tracker)) as port:
        status, set_cookies, body = get_with_cookie_fields(port, "/products/p-1", FIELDS)
    assert status == 200
    assert body.decode().replace(" ", "") == ",".join(FIELDS)  # the server's comma-join
    assert set_cookies == []  # the browser's id is kept, not overwritten
    assert {e.visitor.sc for e in tracker.events} == {SC}


def test_repeated_cookie_fields_keep_the_visitor_on_gunicorn(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    env = {"WIRE_EVENTS": str(events), "WIRE_DIR": str(tmp_path)}
    with gunicorn("support.wire_apps:cookie_app", env) as port:
        status, set_cookies, body = get_with_cookie_fields(port, "/products/p-1", FIELDS)
        deadline = time.monotonic() + 20  # written when the worker closes the body
        while not events.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    assert status == 200 and body == ",".join(FIELDS).encode()
    assert set_cookies == []
    captured = [json.loads(line) for line in events.read_text().splitlines()]
    assert captured and {e["visitor"]["sc"] for e in captured} == {SC}


def test_repeated_cookie_fields_keep_the_visitor_in_django_asgi_on_uvicorn(
        tmp_path: Path) -> None:
    api = ApiServer().start()
    try:
        port = free_port()
        args = [sys.executable, "-m", "uvicorn", "--port", str(port), "--host",
                "127.0.0.1", "support.shutdown_django:application"]
        with serving(args, _env(api), port, tmp_path / "server.log"):
            status, set_cookies, _ = get_with_cookie_fields(port, "/products/p-1/", FIELDS)
            assert status == 200 and set_cookies == []
            assert api.wait_until(lambda s: any(
                m.get("event") == "Product Viewed" for _, m in s.accepted_messages("/v1")))
        viewed = [m for _, m in api.accepted_messages("/v1")
                  if m.get("event") == "Product Viewed"]
        assert [m["anonymousId"] for m in viewed] == [SC]
    finally:
        api.stop()


@pytest.mark.parametrize(("header", "expected"), [
    ("theme=dark,sc=A1", {"sc": "A1", "theme": "dark"}),  # gunicorn, wsgiref, werkzeug
    ("theme=dark, sc=A1", {"sc": "A1", "theme": "dark"}),  # waitress
    ("sc=A1,theme=dark", {"sc": "A1", "theme": "dark"}),
    ("sc=A1, sc=B2", {"sc": "A1"}),  # the first field still wins
    ('prefs={"a":1,"b":2},sc=A1', {"prefs": '{"a":1,"b":2}', "sc": "A1"}),
    ("ids=1,2,3; sc=A1", {"ids": "1,2,3", "sc": "A1"}),
    ("sc=A1,", {"sc": "A1"}),  # an empty last field
    (",sc=A1", {"sc": "A1"}),  # an empty first field
    ("sc=A1,,", {"sc": "A1"}),  # two empty fields after it (wsgiref)
    ("sc=A1, , ", {"sc": "A1"}),  # the same, joined by waitress
    ("theme=dark,,sc=A1", {"sc": "A1", "theme": "dark"}),  # an empty field between
])
def test_commas_split_cookies_only_where_a_cookie_name_follows(
        header: str, expected: dict[str, str]) -> None:
    assert parse_cookies(split_joined_cookie_fields(header),
                         ("sc", "theme", "prefs", "ids", "q")) == expected


def test_a_header_without_commas_is_returned_as_it_is() -> None:
    header = "sc=A1; theme=dark"
    assert split_joined_cookie_fields(header) is header
