"""WSGI apps for tests that run real servers (gunicorn, waitress, wsgiref), with or
without cdptrack, chosen by environment variables so a server process can import them:

* ``WIRE_TRACKED=1``: wrap the app in cdptrack;
* ``WIRE_EVENTS=path``: each captured event is appended to ``path`` as one JSON line
  (one ``write`` on an ``O_APPEND`` file);
* ``WIRE_FILE=path``: the file ``/file`` sends with Flask's ``send_file``.

``cookie_app`` is always tracked: it answers with the ``Cookie`` header as the server
passed it in the environ.
"""

from __future__ import annotations

import json
import os
from typing import Any

from flask import Flask, send_file

from cdptrack.events import Event
from cdptrack.integrations.flask import CDPTrack
from cdptrack.observe.declare import track
from cdptrack.wsgi import CDPTrackWSGIMiddleware


class FileTracker:
    """``capture`` appends the event to a file as a JSON line."""

    def __init__(self, path: str | None) -> None:
        self.path = path

    def capture(self, event: Any) -> None:
        if not self.path:
            return
        data = event.to_dict() if isinstance(event, Event) else dict(event)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, (json.dumps(data, default=str) + "\n").encode())
        finally:
            os.close(fd)


def tracked() -> bool:
    return os.environ.get("WIRE_TRACKED") == "1"


def one_item(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """A one-item list without Content-Length: wsgiref and waitress add it from len()."""
    start_response("200 OK", [("Content-Type", "text/html")])
    return [b"<p>hello</p>"]


def echo_cookie(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """The ``Cookie`` header as the server put it in the environ, as the body."""
    start_response("200 OK", [("Content-Type", "text/html")])
    return [environ.get("HTTP_COOKIE", "").encode("latin-1")]


def make_plain_app() -> Any:
    if tracked():
        return CDPTrackWSGIMiddleware(one_item, FileTracker(os.environ.get("WIRE_EVENTS")))
    return one_item


def make_flask_app() -> Flask:
    app = Flask(__name__)

    @app.get("/file")
    def a_file() -> Any:
        track.event("Download Started", {"name": os.path.basename(os.environ["WIRE_FILE"])})
        return send_file(os.environ["WIRE_FILE"], mimetype="application/octet-stream")

    @app.get("/category/<slug>")
    def category(slug: str) -> str:
        return f"<p>{slug}</p>"

    if tracked():
        CDPTrack(app, tracker=FileTracker(os.environ.get("WIRE_EVENTS")))
    return app


plain_app = make_plain_app()
cookie_app = CDPTrackWSGIMiddleware(echo_cookie, FileTracker(os.environ.get("WIRE_EVENTS")))
flask_app = make_flask_app()
