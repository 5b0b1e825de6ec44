"""A Flask shop for the crash test: served by gunicorn ``--preload`` with several
workers and the SQLite outbox, configured from the ``CDPTRACK_*`` environment
(``CDPTRACK_OUTBOX=sqlite:///...`` and a local Customer.io).  Each product page is a
few kilobytes of HTML, as a real page is, so the body goes out in more than one chunk;
its ``X-Worker`` header names the worker that served it (the client kills that one).

``CRASH_LATE=1`` commits the events when the body is closed, after its last chunk, as
cdptrack once did: the crash test must then fail (this is how it was checked that it
can)."""

from __future__ import annotations

import os

from flask import Flask, Response, session

from cdptrack.integrations.flask import CDPTrack

app = Flask(__name__)
app.secret_key = "crash-test-only"

FILLER = "<p>" + "Lorem ipsum dolor sit amet. " * 40 + "</p>\n"


@app.get("/products/<product_id>")
def product(product_id: str) -> Response:
    session["seen"] = session.get("seen", 0) + 1

    def chunks():  # type: ignore[no-untyped-def]
        yield f"<html><body><h1>{product_id}</h1>"
        for _ in range(4):
            yield FILLER
        yield f"<footer>{product_id}</footer></body></html>"

    return Response(chunks(), mimetype="text/html", headers={"X-Worker": str(os.getpid())})


CDPTrack(app)
if os.environ.get("CRASH_LATE") == "1":
    app.wsgi_app.observer.commit_first = False  # type: ignore[attr-defined]
