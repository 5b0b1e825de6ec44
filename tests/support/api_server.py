"""A real HTTP server on 127.0.0.1 that plays an API, scripted to fail in the ways real
APIs fail: refusing connections (``stop()`` closes the port; ``start()`` opens the same
port again), answering 503, answering 429 with ``Retry-After``, answering slowly, and
recovering.  Every request that reached it is recorded (method, path, headers, body).

    server = ApiServer().start()
    server.script("/batch", Reply(503), Reply(429, headers={"Retry-After": "0"}))
    server.default = Reply(200)
    ...
    server.close()

Replies are consumed in order per path prefix; when a prefix's script is used up, the
``default`` reply answers.  ``delay`` makes a reply slow (the request is recorded first,
so a client that times out and retries produces a recorded duplicate: useful to check
that duplicates carry the same id).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: str = "{}"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # what the server answered (or was about to answer)

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def messages(self) -> list[Any]:
        """The JSON messages in this request: a Customer.io batch's items, else the body."""
        data = self.json
        if isinstance(data, dict) and isinstance(data.get("batch"), list):
            return list(data["batch"])
        return [data]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: ApiServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # One write per response and no Nagle: otherwise delayed ACKs add ~40 ms per request.
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True
    server: _Server

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        api = self.server.owner
        reply = (api.responder and api.responder(self.path, body)) or api._next_reply(self.path)
        api._record(Recorded(self.command, self.path, dict(self.headers.items()), body,
                             reply.status))
        if reply.delay:
            time.sleep(reply.delay)
        payload = reply.body.encode()
        try:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            self.wfile.flush()
        except OSError:
            pass  # the client gave up (timeout): fine

    do_POST = do_PATCH = do_PUT = do_GET = _handle

    def log_message(self, format: str, *args: Any) -> None:
        pass


class ApiServer:
    def __init__(self) -> None:
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.default = Reply(200)
        # Optional: decide a reply from the request itself (None: use the script/default).
        self.responder: Callable[[str, bytes], Reply | None] | None = None
        self.requests: list[Recorded] = []
        self._scripts: dict[str, list[Reply]] = {}
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ApiServer:
        """Listen (again) on the same port."""
        if self._server is None:
            server = _Server(("127.0.0.1", self.port), _Handler)
            server.owner = self
            self._server = server
            self._thread = threading.Thread(target=server.serve_forever,
                                            kwargs={"poll_interval": 0.05}, daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Close the port: connections are refused until ``start()``."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    close = stop

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- behaviour -----------------------------------------------------------------------

    def script(self, prefix: str, *replies: Reply) -> None:
        """Answer requests whose path starts with ``prefix`` with ``replies``, in order."""
        with self._lock:
            self._scripts.setdefault(prefix, []).extend(replies)

    def fail_next(self, n: int, reply: Reply, prefix: str = "/") -> None:
        self.script(prefix, *([reply] * n))

    def _next_reply(self, path: str) -> Reply:
        with self._lock:
            for prefix in sorted(self._scripts, key=len, reverse=True):
                if path.startswith(prefix) and self._scripts[prefix]:
                    return self._scripts[prefix].pop(0)
            return self.default

    def _record(self, recorded: Recorded) -> None:
        with self._cond:
            self.requests.append(recorded)
            self._cond.notify_all()

    # -- reading -------------------------------------------------------------------------

    def received_messages(self, prefix: str = "/") -> Iterator[tuple[Recorded, Any]]:
        """Every message that reached the server, whatever it answered."""
        for request in self.received(prefix):
            for message in request.messages():
                yield request, message

    def received(self, prefix: str = "/") -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.path.startswith(prefix)]

    def accepted(self, prefix: str = "/") -> list[Recorded]:
        """Requests answered with 2xx."""
        return [r for r in self.received(prefix) if 200 <= r.status < 300]

    def accepted_messages(self, prefix: str = "/") -> Iterator[tuple[Recorded, Any]]:
        for request in self.accepted(prefix):
            for message in request.messages():
                yield request, message

    def wait_until(self, predicate: Callable[[ApiServer], bool], timeout: float = 20.0
                   ) -> bool:
        """Wait (generously: this is a liveness bound, not a timing assertion)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                self._lock.release()
                try:
                    if predicate(self):
                        return True
                finally:
                    self._lock.acquire()
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))


@pytest.fixture(name="api")
def api_fixture() -> Iterator[ApiServer]:
    """One local API; import ``api_fixture`` into a test module to get the ``api``
    fixture."""
    server = ApiServer().start()
    try:
        yield server
    finally:
        server.stop()
