"""The sink's HTTP server: the four APIs under their prefixes, the inspector page, its
JSON and server-sent-events feeds, on one port.

Stdlib ``ThreadingHTTPServer`` keeps the sink dependency-free apart from ``jsonschema``;
each live inspector tab holds one thread for its event stream, which ends when the tab
closes or the sink stops.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .apis import (
    API_NAMES,
    BASE_PATHS,
    CONFIG_NAMES,
    DUMMY_CREDENTIALS,
    ENV_NAMES,
    Answer,
    Incoming,
    SinkApis,
    is_probe,
    split_prefix,
)
from .faults import FailurePlan
from .record import Recorder, build_records, summarize
from .unsent import UnsentBoard

log = logging.getLogger("cdptrack.sink")

MAX_BODY_BYTES = 5 * 1024 * 1024
STREAM_KEEPALIVE_SECONDS = 10.0


class Sink:
    """A local collector answering like the four APIs.

    ``with Sink() as sink: ...`` starts it on an ephemeral port of 127.0.0.1 in a
    background thread; ``sink.env()`` gives the ``CDPTRACK_*_URL`` settings that point a
    shop at it and ``sink.requests()`` what it has received so far.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        record: str | Path | None = None,
        fail: FailurePlan | str | None = None,
        *,
        limit: int = 5000,
    ) -> None:
        self.host = host
        self.port = port
        self.failures = FailurePlan.parse(fail) if isinstance(fail, str) else fail
        self.recorder = Recorder(limit=limit, path=record)
        self.apis = SinkApis()
        # What the shop's trackers did not send and why (see .unsent).
        self.unsent = UnsentBoard()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        # The shop's route table (``cdptrack routes --json``'s document), shown on the
        # inspector page when whoever runs the sink knows the shop (``cdptrack demo``).
        self.routes: dict[str, Any] | None = None

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> Sink:
        if self._server is not None:
            return self
        server = _Server((self.host, self.port), _Handler)
        server.sink = self
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"cdptrack-sink:{self.port}", daemon=True,
        )
        self._thread.start()
        log.debug("sink listening on %s", self.url)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self.recorder.close()  # ends open event streams
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def serve_forever(self) -> None:
        """Run in the calling thread until interrupted (the ``cdptrack sink`` command)."""
        self.start()
        try:
            while self._thread is not None and self._thread.is_alive():
                self._thread.join(0.5)
        finally:
            self.stop()

    def __enter__(self) -> Sink:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- where it is ------------------------------------------------------------------

    @property
    def url(self) -> str:
        host = self.host
        if host in ("0.0.0.0", "", "::"):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def base_urls(self) -> dict[str, str]:
        """API name -> the base URL a shop configures to send that API here."""
        return {api: self.url + BASE_PATHS[api] for api in API_NAMES}

    def env(self) -> dict[str, str]:
        """The ``CDPTRACK_*_URL`` environment variables pointing at this sink."""
        return {ENV_NAMES[api]: url for api, url in self.base_urls().items()}

    def shop_env(self) -> dict[str, str]:
        """Everything a shop needs to send each API here: the ``CDPTRACK_*_URL``
        variables and dummy credentials (an API whose key is unset gets nothing)."""
        return {**self.env(), **DUMMY_CREDENTIALS}

    def config_overrides(self) -> dict[str, str]:
        """``Config`` keyword arguments pointing at this sink."""
        return {CONFIG_NAMES[api]: url for api, url in self.base_urls().items()}

    # -- what it saw ------------------------------------------------------------------

    def requests(self, api: str | None = None) -> list[dict[str, Any]]:
        """The records so far (one per event; batches share a ``request_id``)."""
        records = self.recorder.all()
        return [r for r in records if api is None or r["api"] == api]

    def summary(self) -> dict[str, dict[str, Any]]:
        return summarize(self.recorder.all())

    def clear(self) -> None:
        self.recorder.clear()
        self.apis.reset()
        self.unsent.clear()

    def watch_tracker(self, tracker: Any) -> None:
        """Show ``tracker``'s skipped and dropped counts on the inspector page (a tracker
        in this process; one elsewhere reports them with :func:`.unsent.report_stats`)."""
        self.unsent.watch(tracker.stats)

    def wait_for(self, count: int, timeout: float = 10.0, api: str | None = None) -> bool:
        """Block until at least ``count`` records (for ``api``) arrived, or timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.requests(api)) >= count:
                return True
            time.sleep(0.02)
        return len(self.requests(api)) >= count


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    sink: Sink

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("sink connection error from %s", client_address, exc_info=True)


def _inspector_page() -> bytes:
    return resources.files("cdptrack.sink").joinpath("inspector.html").read_bytes()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # Headers and body go out as separate writes: without this, Nagle's algorithm and
    # the client's delayed ACK add ~40 ms to every keep-alive request.
    disable_nagle_algorithm = True
    server_version = "cdptrack-sink"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    # -- dispatch ---------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_HEAD(self) -> None:
        self._reply(200 if self._path() == "/" else 204, b"", "text/plain")

    def do_OPTIONS(self) -> None:
        self._reply(204, b"", "text/plain",
                    {"Allow": "GET, POST, PATCH, HEAD, OPTIONS"})

    def _path(self) -> str:
        return urlsplit(self.path).path

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        path = parts.path
        body = self._read_body()
        if body is None:
            return
        routed = split_prefix(path)
        if routed is not None:
            self._api(method, routed[0], routed[1], body)
            return
        query = parse_qs(parts.query)
        sink = self.server.sink
        if method == "GET" and path in ("/", "/index.html"):
            self._reply(200, _inspector_page(), "text/html; charset=utf-8",
                        {"Cache-Control": "no-store"})
        elif method == "GET" and path == "/api/requests":
            after = _int(query.get("after", ["0"])[0])
            self._json(200, {"records": sink.recorder.since(after),
                             "last_id": sink.recorder.last_id,
                             "generation": sink.recorder.generation})
        elif method == "GET" and path == "/api/routes":
            self._json(200, {"routes": sink.routes})
        elif method == "GET" and path == "/api/unsent":
            self._json(200, sink.unsent.view())
        elif method == "POST" and path == "/api/tracker-stats":
            try:
                report = json.loads(body)
                source = report.get("source", "shop") if isinstance(report, dict) else None
                if not isinstance(source, str):
                    raise ValueError("source must be a string")
                sink.unsent.report(source, report.get("stats"))
            except ValueError as err:
                self._json(400, {"error": str(err)})
            else:
                self._json(200, {"ok": True})
        elif method == "GET" and path == "/api/summary":
            self._json(200, sink.summary())
        elif method == "GET" and path == "/api/config":
            self._json(200, {"base_urls": sink.base_urls(), "env": sink.env(),
                             "failures": sink.failures.describe() if sink.failures else None})
        elif method in ("POST", "DELETE") and path in ("/api/clear", "/api/requests"):
            sink.clear()
            self._json(200, {"cleared": True})
        elif method == "GET" and path == "/events/stream":
            # A reconnecting EventSource says where it stopped in Last-Event-ID.
            after = max(_int(query.get("after", ["0"])[0]),
                        _int(self.headers.get("Last-Event-ID") or "0"))
            self._stream(after)
        elif method == "GET" and path == "/healthz":
            self._json(200, {"ok": True})
        else:
            self._json(404, {"error": f"nothing at {method} {path}"})

    # -- the APIs ---------------------------------------------------------------------

    def _api(self, method: str, api: str, subpath: str, body: bytes) -> None:
        sink = self.server.sink
        headers = {k.lower(): v for k, v in self.headers.items()}
        incoming = Incoming(method, self._path(), headers, body, urlsplit(self.path).query)
        if is_probe(api, subpath, method, body):
            # doctor --live checking URL and key: answer as the API would, record nothing.
            answer = sink.apis.answer(api, subpath, incoming)
            self._reply(answer.status, answer.body, answer.content_type, answer.headers)
            return
        if method not in ("POST", "PATCH"):
            # A probe (doctor --live) or a stray browser: answer, record nothing.
            self._json(405, {"error": f"{api} takes POST/PATCH here",
                             "base_url": sink.url + BASE_PATHS[api]},
                       {"Allow": "POST, PATCH"})
            return
        fault = sink.failures.next() if sink.failures else None
        request_id = sink.recorder.new_request_id()
        if fault is not None and fault.mode == "refuse":
            preview = _validated_only(api, subpath, incoming)
            sink.recorder.add(build_records(request_id, api, incoming, preview,
                                            fault="refuse", status=0))
            self.close_connection = True
            self._drop_connection()
            return
        if fault is not None and fault.status is not None:
            preview = _validated_only(api, subpath, incoming)
            headers_out = {}
            if fault.status in (429, 503):
                headers_out["Retry-After"] = str(fault.retry_after)
            payload = json.dumps({"error": f"injected failure {fault.status}"}).encode()
            sink.recorder.add(build_records(request_id, api, incoming, preview,
                                            fault=fault.mode, status=fault.status))
            self._reply(fault.status, payload, "application/json", headers_out)
            return
        if fault is not None and fault.mode == "slow":
            time.sleep(fault.slow_seconds)
        answer = sink.apis.answer(api, subpath, incoming)
        sink.recorder.add(build_records(request_id, api, incoming, answer,
                                        fault=fault.mode if fault else None))
        self._reply(answer.status, answer.body, answer.content_type, answer.headers)

    def _drop_connection(self) -> None:
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       b"\x01\x00\x00\x00\x00\x00\x00\x00")
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    # -- the live feed ----------------------------------------------------------------

    def _stream(self, after: int) -> None:
        recorder = self.server.sink.recorder
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.send_header("X-Accel-Buffering", "no")
        self.end_headers()
        self.close_connection = True
        generation = recorder.generation
        try:
            self._write_event("hello", {"last_id": recorder.last_id}, None)
            while True:
                records = recorder.wait(after, generation, STREAM_KEEPALIVE_SECONDS)
                if records is None:
                    if recorder.closed:
                        return
                    generation = recorder.generation
                    after = 0
                    self._write_event("reset", {}, None)
                    continue
                if not records:
                    self.wfile.write(b": keep-alive\n\n")
                    self.wfile.flush()
                    continue
                for record in records:
                    self._write_event("request", record, record["id"])
                    after = record["id"]
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, OSError):
            return

    def _write_event(self, name: str, data: Any, event_id: int | None) -> None:
        chunk = f"event: {name}\n"
        if event_id is not None:
            chunk += f"id: {event_id}\n"
        chunk += "data: " + json.dumps(data, ensure_ascii=False) + "\n\n"
        self.wfile.write(chunk.encode("utf-8"))
        self.wfile.flush()

    # -- plumbing ---------------------------------------------------------------------

    def _read_body(self) -> bytes | None:
        length_header = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked()
        if not length_header:
            return b""
        length = _int(length_header)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._json(413, {"error": f"body over {MAX_BODY_BYTES} bytes"})
            return None
        if length <= 0:
            return b""
        body = self.rfile.read(length)
        if len(body) < length:
            # The client went away mid-request (a killed process): no request to answer,
            # record or remember under an idempotency key.
            self.close_connection = True
            return None
        return body

    def _read_chunked(self) -> bytes | None:
        chunks: list[bytes] = []
        total = 0
        while True:
            size_line = self.rfile.readline(1024).split(b";")[0].strip()
            size = int(size_line or b"0", 16)
            if size == 0:
                self.rfile.readline(1024)
                return b"".join(chunks)
            total += size
            if total > MAX_BODY_BYTES:
                self.close_connection = True
                self._json(413, {"error": f"body over {MAX_BODY_BYTES} bytes"})
                return None
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _json(self, status: int, value: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(value, ensure_ascii=False).encode("utf-8")
        self._reply(status, body, "application/json", headers)

    def _reply(
        self, status: int, body: bytes, content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)


def _validated_only(api: str, subpath: str, incoming: Incoming) -> Answer:
    """Validate a request the sink then fails on purpose, without the API's side effects
    (an injected failure must not store an Orangepill idempotency key)."""
    return SinkApis().answer(api, subpath, incoming)


def _int(text: str) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        return 0
