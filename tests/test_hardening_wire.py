"""The response on the wire is what the server sends without cdptrack: real wsgiref and
waitress (Content-Length from a one-item list, no switch to chunked) and real gunicorn
(``sendfile()`` for Flask's ``send_file``, counted with strace; a percent-encoded path
reported as requested)."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import waitress
from support import wire_apps
from support.servers import free_port, wait_port, wsgiref_server

from cdptrack.wsgi import CDPTrackWSGIMiddleware

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


@contextmanager
def waitress_server(app: Any) -> Iterator[int]:
    server = waitress.create_server(app, host="127.0.0.1", port=0, threads=2)
    closing = threading.Event()

    def run() -> None:
        try:
            server.run()
        except (OSError, ValueError):
            if not closing.is_set():  # closing the sockets ends the poll loop this way
                raise

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield int(server.effective_port)  # type: ignore[union-attr]
    finally:
        closing.set()
        server.close()
        thread.join(5)


def get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        headers = {k.lower(): v for k, v in response.getheaders()}
        return response.status, headers, body
    finally:
        connection.close()


ServerFactory = Callable[[Any], Any]


@pytest.mark.parametrize("serve", [wsgiref_server, waitress_server], ids=["wsgiref", "waitress"])
def test_one_item_list_keeps_its_content_length_and_framing(serve: ServerFactory) -> None:
    tracker = wire_apps.FileTracker(None)
    seen: list[dict[str, str]] = []
    for app in (wire_apps.one_item, CDPTrackWSGIMiddleware(wire_apps.one_item, tracker)):
        with serve(app) as port:
            status, headers, body = get(port, "/")
        assert (status, body) == (200, b"<p>hello</p>")
        seen.append(headers)
    plain, tracked = seen
    assert plain.get("content-length") == "12"
    assert tracked.get("content-length") == "12"
    assert "transfer-encoding" not in tracked and tracked.get("connection") == plain.get(
        "connection")
    drop = {"date", "set-cookie"}
    assert {k: v for k, v in tracked.items() if k not in drop} == {
        k: v for k, v in plain.items() if k not in drop}
    assert tracked["set-cookie"].startswith("sc=")


def test_a_file_wrapper_is_handed_back_as_itself_with_close_hooked() -> None:
    events: list[Any] = []

    class Tracker:
        def capture(self, event: Any) -> None:
            events.append(event)

    class FileWrapper:
        def __init__(self, f: Any, size: int = 8192) -> None:
            self.f, self.closed = f, False

        def __iter__(self) -> Iterator[bytes]:
            return iter([self.f.read()])

        def close(self) -> None:
            self.closed = True

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [("Content-Type", "text/html")])
        return environ["wsgi.file_wrapper"](open(__file__, "rb"))

    wrapped = CDPTrackWSGIMiddleware(app, Tracker())
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "HTTP_HOST": "shop.test",
               "wsgi.url_scheme": "http", "wsgi.file_wrapper": FileWrapper}
    body = wrapped(environ, lambda status, headers, exc_info=None: None)
    assert isinstance(body, FileWrapper)
    assert events == []
    body.close()
    body.close()
    assert body.closed and [e.label for e in events] == ["page"]
    body.f.close()


@contextmanager
def gunicorn(app: str, env: dict[str, str], prefix: list[str] | None = None
             ) -> Iterator[int]:
    port = free_port()
    args = [*(prefix or []), sys.executable, "-m", "gunicorn", "-w", "1", "-b",
            f"127.0.0.1:{port}", "--control-socket", str(Path(env["WIRE_DIR"]) / "ctl"),
            app]
    full_env = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{ROOT}", **env}
    process = subprocess.Popen(args, env=full_env, cwd=TESTS, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_port(port, process)
        yield port
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


def _events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def _strace_works() -> bool:
    strace = shutil.which("strace")
    if strace is None:
        return False
    probe = subprocess.run([strace, "-qq", "-e", "trace=none", "true"], capture_output=True,
                           timeout=10)
    return probe.returncode == 0


@pytest.mark.skipif(not _strace_works(), reason="strace is not installed or not permitted")
def test_gunicorn_sends_flask_send_file_with_sendfile(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(4 << 20))
    trace = tmp_path / "trace.txt"
    events = tmp_path / "events.jsonl"
    env = {"WIRE_TRACKED": "1", "WIRE_FILE": str(big), "WIRE_EVENTS": str(events),
           "WIRE_DIR": str(tmp_path)}
    strace = ["strace", "-f", "-qq", "-e", "trace=sendfile,sendto", "-o", str(trace)]
    with gunicorn("support.wire_apps:flask_app", env, strace) as port:
        status, headers, body = get(port, "/file")
        assert status == 200 and body == big.read_bytes()
        deadline = time.monotonic() + 20  # the events are written when close() runs
        while not _events(events) and time.monotonic() < deadline:
            time.sleep(0.05)
    calls = trace.read_text().splitlines()
    sendfile = [c for c in calls if "sendfile(" in c]
    sendto = [c for c in calls if "sendto(" in c]
    assert sendfile, "gunicorn did not use sendfile()"
    assert len(sendto) < 20, f"{len(sendto)} sendto() calls: the body was copied"
    assert [e["event"] for e in _events(events)] == ["Download Started"]
    assert headers.get("set-cookie", "").startswith("sc=")


def test_gunicorn_percent_encoded_path_reported_as_requested(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    env = {"WIRE_TRACKED": "1", "WIRE_EVENTS": str(events), "WIRE_DIR": str(tmp_path),
           "WIRE_FILE": str(tmp_path / "none")}
    with gunicorn("support.wire_apps:flask_app", env) as port:
        status, _, body = get(port, "/category/%D1%87%D0%B0%D0%B9")
        assert status == 200 and body == "<p>чай</p>".encode()
        deadline = time.monotonic() + 20
        while len(_events(events)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    found = {e.get("event", e["type"]): e for e in _events(events)}
    url = f"http://127.0.0.1:{port}/category/%D1%87%D0%B0%D0%B9"
    assert found["page"]["properties"]["url"] == url
    assert found["Product List Viewed"]["context"]["url"] == url
    assert found["Product List Viewed"]["properties"]["category"] == "чай"
