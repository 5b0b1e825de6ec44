"""With a durable outbox a request's events are committed before the last body chunk
reaches the server: a worker killed after the client got the whole response cannot
lose them."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from support.redis_server import free_port

from cdptrack.asgi import CDPTrackMiddleware
from cdptrack.config import Config
from cdptrack.tracker import Tracker
from cdptrack.wsgi import CDPTrackWSGIMiddleware


def durable_tracker(tmp_path: Path) -> tuple[Tracker, Path]:
    db = tmp_path / "outbox.db"
    # An API nobody listens on: what is committed stays in the file.
    config = Config(customerio_api_key="cio-test-key",
                    customerio_url=f"http://127.0.0.1:{free_port()}/v1")
    return Tracker(config, outbox=f"sqlite:///{db}", handle_signals=False,
                   flush_at_exit=0.1), db


def committed(db: Path, product_id: str) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT body FROM events").fetchall()
    return sum(1 for (body,) in rows if product_id in body)


def test_asgi_commits_before_the_last_body_chunk(tmp_path: Path) -> None:
    tracker, db = durable_tracker(tmp_path)
    seen_at_last_chunk: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/html")]})
        await send({"type": "http.response.body", "body": b"<p>", "more_body": True})
        await send({"type": "http.response.body", "body": b"</p>"})

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body"):
            seen_at_last_chunk.append(committed(db, "sku-9"))

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "method": "GET", "scheme": "http", "path": "/products/sku-9",
             "raw_path": b"/products/sku-9", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"shop.test")], "client": ("203.0.113.9", 1)}
    try:
        asyncio.run(CDPTrackMiddleware(app, tracker)(scope, receive, send))
    finally:
        tracker.shutdown(0.1)
    assert seen_at_last_chunk == [2]  # page + Product Viewed, before the client had it


def test_wsgi_commits_before_the_last_chunk_is_handed_to_the_server(tmp_path: Path) -> None:
    tracker, db = durable_tracker(tmp_path)

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/html")])
        return [b"<p>", b"sku-7", b"</p>"]

    wrapped = CDPTrackWSGIMiddleware(app, tracker)
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/products/sku-7",
               "HTTP_HOST": "shop.test", "wsgi.url_scheme": "http"}
    try:
        body = wrapped(environ, lambda *args: None)
        assert len(body) == 3  # type: ignore[arg-type]  # still a sized list
        counts = [committed(db, "sku-7") for _ in body]
        body.close()  # type: ignore[attr-defined]
        assert committed(db, "sku-7") == 2
    finally:
        tracker.shutdown(0.1)
    assert counts == [0, 0, 2]  # the last chunk left after the commit
