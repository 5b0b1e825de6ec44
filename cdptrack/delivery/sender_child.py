"""The sender process's own side (``python -m cdptrack.delivery.sender_child``): see
:mod:`cdptrack.delivery.sender_process`.

It reads lines of JSON from its standard input: first ``{"op": "start", "config",
"options", "relay"}``, then ``events`` (each canonical event is captured by an ordinary
:class:`~cdptrack.tracker.Tracker` with the memory outbox), ``flush``, ``stats`` and
``shutdown`` (each answered with ``{"op": "reply", "id", ...}`` on its standard output).
The callbacks named in ``relay`` are sent back as ``error``, ``drop`` and ``identity``
lines.  At the end of its input (the web process closed the pipe or died) it drains for
``flush_at_exit`` seconds and exits; SIGINT and SIGTERM are ignored (see the module
above).  Exit status 0, or 2 when the first line is not a usable configuration.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import IO, Any

from ..config import Config, ConfigError
from ..tracker import Tracker
from .outbox import DeadLetter
from .sender import name_os_thread

logger = logging.getLogger("cdptrack")

READ_SIZE = 1 << 16  # bytes read from the pipe at once
BURST_PAUSE = 0.005  # seconds slept after a read that emptied the pipe


class _Answers:
    """Lines to the web process, whole, from any thread; a closed pipe ends nothing."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self.open = True

    def send(self, message: dict[str, Any]) -> None:
        line = json.dumps(message, ensure_ascii=False, default=str).encode("utf-8") + b"\n"
        with self._lock:
            if not self.open:
                return
            try:
                self._stream.write(line)
                self._stream.flush()
            except (OSError, ValueError):  # the web process is gone: keep draining
                self.open = False


def _tracker(start: dict[str, Any], answers: _Answers) -> Tracker:
    config = Config(**start["config"])
    relay = set(start.get("relay") or ())
    options = dict(start.get("options") or {})

    def on_error(letter: DeadLetter) -> None:
        answers.send({"op": "error", "letter": dataclasses.asdict(letter)})

    def on_drop(event: Any, destination: str, reason: str) -> None:
        data = event.to_dict() if hasattr(event, "to_dict") else event
        answers.send({"op": "drop", "event": data, "destination": destination,
                      "reason": reason})

    def on_identity(user_id: str, identity_id: str) -> None:
        answers.send({"op": "identity", "user_id": user_id, "identity_id": identity_id})

    return Tracker(config, on_error=on_error if "on_error" in relay else None,
                   on_drop=on_drop if "on_drop" in relay else None,
                   on_identity=on_identity if "on_identity" in relay else None,
                   handle_signals=False, **options)


def _lines(fd: int, pause: float) -> Iterator[bytes]:
    """The lines written to ``fd``, read a burst at a time: after each read the child
    sleeps ``pause`` seconds instead of waiting on the pipe, so the web process's
    writes in between wake nobody (one wake-up per burst, not per request: a write that
    wakes a reader costs the writer a context switch and its cache)."""
    rest = b""
    while True:
        try:
            chunk = os.read(fd, READ_SIZE)
        except InterruptedError:  # pragma: no cover - PEP 475 retries it
            continue
        if not chunk:
            if rest:
                yield rest
            return
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        yield from lines
        if pause and len(chunk) < READ_SIZE:
            time.sleep(pause)


def serve(fd: int, answers: _Answers, pause: float = BURST_PAUSE) -> int:
    """Read the web process's lines until ``shutdown`` or the end of input."""
    lines = _lines(fd, pause)
    try:
        start = json.loads(next(lines, b"{}") or b"{}")
        if start.get("op") != "start":
            raise ConfigError("the first line must start the sender")
        tracker = _tracker(start, answers)
    except (ValueError, TypeError, KeyError) as exc:
        logger.error("cdptrack sender process: unusable start line (%s)",
                     type(exc).__name__)
        return 2
    tracker.start()
    for line in lines:
        if not line:
            continue
        try:
            message = json.loads(line)
            op = message["op"]
        except (ValueError, KeyError, TypeError):
            logger.warning("cdptrack sender process: an unreadable line was skipped")
            continue
        if op == "events":
            for event in message.get("events") or ():
                tracker.capture(event)
        elif op == "flush":
            ok = tracker.flush(float(message.get("timeout", 5.0)))
            answers.send({"op": "reply", "id": message.get("id"), "ok": ok})
        elif op == "stats":
            answers.send({"op": "reply", "id": message.get("id"), "stats": tracker.stats(),
                          "pending": tracker.pending()})
        elif op == "dead_letters":
            letters = tracker.dead_letters(int(message.get("limit", 1000)),
                                           message.get("destination"))
            answers.send({"op": "reply", "id": message.get("id"),
                          "letters": [dataclasses.asdict(letter) for letter in letters]})
        elif op == "replay":
            moved = tracker.replay_dead(message.get("ids"), message.get("destination"))
            answers.send({"op": "reply", "id": message.get("id"), "moved": moved})
        elif op == "shutdown":
            ok = tracker.shutdown(float(message.get("timeout", 5.0)))
            answers.send({"op": "reply", "id": message.get("id"), "ok": ok,
                          "stats": tracker.stats(), "pending": tracker.pending()})
            return 0
    # The end of the pipe: the web process closed it without a shutdown, or died.
    tracker.shutdown(tracker.shutdown_budget)
    return 0


def main() -> int:
    # Lives as long as its pipe (see cdptrack.delivery.sender_process).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    name_os_thread("cdptrack-sender")
    logging.basicConfig(level=logging.WARNING,
                        format="cdptrack sender process %(process)d %(levelname)s "
                               "%(name)s: %(message)s")
    # The table at shutdown is the web process's to log (it asks for the counters).
    logging.getLogger("cdptrack.summary").setLevel(logging.ERROR)
    return serve(sys.stdin.fileno(), _Answers(sys.stdout.buffer))


if __name__ == "__main__":
    sys.exit(main())
