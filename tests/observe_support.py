"""Helpers for the observe-layer tests: a list-collecting tracker and a recording server.

The recording server is a real HTTP server on 127.0.0.1 (a thread, ephemeral port) that
answers 200 to everything and keeps each request (method, path, headers, JSON body), so
end-to-end tests can check what reached each API through the real ``Tracker``.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cdptrack.events import Event


class ListTracker:
    """The smallest tracker: ``capture`` appends to a list."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def capture(self, event: Event) -> None:
        self.events.append(event)

    def labels(self) -> list[str]:
        return [e.label for e in self.events]

    def named(self, label: str) -> list[Event]:
        return [e for e in self.events if e.label == label]

    def one(self, label: str) -> Event:
        found = self.named(label)
        assert len(found) == 1, (label, self.labels())
        return found[0]

    def clear(self) -> None:
        self.events.clear()


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class RecordingServer:
    url: str
    requests: list[Recorded] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def paths(self) -> list[str]:
        with self.lock:
            return [r.path for r in self.requests]

    def snapshot(self) -> list[Recorded]:
        with self.lock:
            return list(self.requests)


@contextmanager
def recording_server() -> Iterator[RecordingServer]:
    """A local HTTP server recording every request; answers ``{"ok": true}`` (an
    Orangepill identity to ``POST .../identities/person``)."""
    holder: list[RecordingServer] = []

    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body: Any = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
            server = holder[0]
            with server.lock:
                server.requests.append(
                    Recorded(self.command, self.path, dict(self.headers.items()), body))
            payload = b'{"ok": true}'
            if self.command == "POST" and self.path.endswith("/identities/person"):
                # Orangepill's create answers with the new identity (spec 000).
                payload = b'{"id": "634b56217f6a7b0be52dffbd", "type": "person"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_POST = do_PUT = do_PATCH = do_GET = _record

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    port = httpd.server_address[1]
    holder.append(RecordingServer(f"http://127.0.0.1:{port}"))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder[0]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def by_api(recorded: list[Recorded]) -> dict[str, Counter[str]]:
    """What each API received, by event name."""
    out: dict[str, Counter[str]] = {k: Counter() for k in
                                    ("yespo_tracker", "yespo_events", "customerio", "orangepill")}
    for r in recorded:
        if r.path.startswith("/yespo-tracker"):
            out["yespo_tracker"][r.body["GeneralInfo"]["eventName"]] += 1
        elif r.path.startswith("/yespo-api"):
            out["yespo_events"][r.body["eventTypeKey"]] += 1
        elif r.path.startswith("/cio"):
            for message in r.body.get("batch", [r.body]):
                out["customerio"][message.get("event") or message["type"]] += 1
        elif r.path.startswith("/orangepill"):
            out["orangepill"][f"{r.method} {r.path.rsplit('/', 1)[-1]}"] += 1
    return out
