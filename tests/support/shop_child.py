"""The Flask storefront in a process of its own, with a SQLite outbox, saying which events
it accepted.

Run as ``python shop_child.py OUTBOX CONFIG_JSON ACCEPTED_FILE``.  It serves the shop on
a free port of 127.0.0.1 and prints ``port N``; after ``capture`` returned for an event
(that is the durability promise's "accepted") it appends the canonical event as one JSON
line to ACCEPTED_FILE.  It runs until it is killed.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from werkzeug.serving import make_server

from cdptrack.config import Config
from cdptrack.delivery.deferred import as_deferred
from cdptrack.events import Event
from cdptrack.examples.flask_shop.app import create_app
from cdptrack.tracker import Tracker


class AcceptingTracker(Tracker):
    """The real tracker; each event ``capture`` returned for is written down (one
    ``write`` on an ``O_APPEND`` file: it survives the process being killed)."""

    def __init__(self, accepted: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._accepted = os.open(accepted, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def capture(self, event: Any) -> None:
        super().capture(event)
        self._write(event)

    def capture_deferred(self, job: Any) -> None:
        # The SQLite outbox builds a request's record inside this call and commits its
        # events before returning: they are accepted once it returned.
        built: list[Any] = []
        deferred = as_deferred(job)

        def build() -> list[Any]:
            events = list(deferred.build())
            built.extend(events)
            return events

        super().capture_deferred(build)
        for event in built:
            self._write(event)

    def _write(self, event: Any) -> None:
        data = event.to_dict() if isinstance(event, Event) else dict(event)
        os.write(self._accepted, (json.dumps(data, default=str) + "\n").encode())


def main() -> None:
    outbox, config_json, accepted = sys.argv[1], sys.argv[2], sys.argv[3]
    tracker = AcceptingTracker(accepted, Config(**json.loads(config_json)), outbox=outbox,
                               max_retry_time=120, timeout=2, backoff=0.01, max_backoff=0.1)
    server = make_server("127.0.0.1", 0, create_app(tracker=tracker), threaded=True)
    print(f"port {server.server_port}", flush=True)
    server.serve_forever(poll_interval=0.1)


if __name__ == "__main__":
    main()
