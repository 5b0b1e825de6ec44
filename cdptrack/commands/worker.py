"""``cdptrack worker``: drain a shared Redis outbox; run as many as the fleet needs.

Web processes with ``CDPTRACK_OUTBOX=redis://...`` only append events to Redis; workers
(any number, on any host, each with the destinations' credentials from ``CDPTRACK_*``)
render and send them through the same sender an app uses: one lane per destination,
batching, retries, dead letters (kept in Redis for ``cdptrack replay``).  Consumer
groups give each event to one worker; a worker that dies has its unfinished entries
taken over by the others after ``claim_idle`` seconds (``?claim_idle=`` in the URL).

SIGTERM or SIGINT stops gracefully: take nothing more, let in-flight requests finish
(at most ``--grace`` seconds), hand everything else back to the group at once.  A second
signal skips the wait.  ``--once`` drains what is in the outbox (the whole fleet's
backlog) and exits.  Exit status: 0 on a clean stop, or with ``--once`` when everything
was delivered or dead-lettered; 1 when ``--once`` gave up after ``--timeout`` seconds or
Redis cannot be reached at start; 2 for a configuration error (no Redis URL, no
destination).  Logs show the URL without its password and never an API key.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING, Any

from ..config import Config, ConfigError
from ..delivery.callbacks import Callbacks
from ..delivery.counters import Counters
from ..delivery.retry import RetryPolicy
from ..delivery.sender import Sender

if TYPE_CHECKING:
    from ..delivery.outbox_redis import RedisOutbox

logger = logging.getLogger("cdptrack")

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--outbox", help="redis://[:password@]host:port/db[?prefix=...] "
                                         "(default: CDPTRACK_OUTBOX)")
    parser.add_argument("--concurrency", type=int, default=4,
                        help="requests in flight per destination (default 4)")
    parser.add_argument("--once", action="store_true",
                        help="drain what is queued, then exit")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="with --once: give up after this many seconds (default 300)")
    parser.add_argument("--grace", type=float, default=30.0,
                        help="on SIGTERM/SIGINT: seconds to let in-flight requests finish "
                             "(default 30)")
    parser.add_argument("--max-retry-time", type=float, default=600.0,
                        help="seconds one request may be retried before it is "
                             "dead-lettered (default 600)")
    parser.add_argument("--claim-idle", type=float, default=None,
                        help="seconds after which a silent worker's entries are taken "
                             "over (default: the URL's claim_idle, else 30)")


def run(args: argparse.Namespace) -> int:
    err = sys.stderr
    try:
        config = Config.from_env(outbox=args.outbox)
    except ConfigError as error:
        print(f"cdptrack worker: configuration error: {error}", file=err)
        return 2
    url = (config.outbox or "").strip()
    if not url.startswith(REDIS_SCHEMES):
        print("cdptrack worker: needs a Redis outbox: pass --outbox redis://host:port/db "
              "or set CDPTRACK_OUTBOX=redis://host:port/db (web processes append there, "
              f"workers send); got {_shown(url)!r}", file=err)
        return 2
    if args.concurrency < 1:
        print("cdptrack worker: --concurrency must be at least 1", file=err)
        return 2
    from ..delivery.outbox_redis import RedisOutbox

    try:
        outbox = RedisOutbox.from_url(url, role="worker", claim_idle=args.claim_idle)
    except ConfigError as error:
        print(f"cdptrack worker: configuration error: {error}", file=err)
        return 2
    destinations = config.enabled()
    if not destinations:
        print("cdptrack worker: no destination is configured (set CDPTRACK_YESPO_SITE_ID, "
              "CDPTRACK_YESPO_API_KEY, CDPTRACK_CUSTOMERIO_API_KEY or "
              "CDPTRACK_ORANGEPILL_API_KEY)", file=err)
        return 2
    try:
        outbox.remaining(destinations)  # reachable, password accepted
    except Exception as error:  # redis errors: the client is imported lazily
        print(f"cdptrack worker: cannot use {outbox.url}: {outbox.scrub(error)}", file=err)
        outbox.close()
        return 1
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    return _Worker(config, outbox, args).run()


def _rows(reply: Any) -> list[tuple[str, list[Any]]]:
    """``XREAD``'s answer as (stream, entries) pairs (RESP2 gives a list, RESP3 a map)."""
    if isinstance(reply, dict):
        return list(reply.items())
    return [(row[0], row[1]) for row in reply]


def _shown(url: str) -> str:
    from ..delivery.outbox_redis import redact_url

    return redact_url(url) if "://" in url else url


class _Worker:
    def __init__(self, config: Config, outbox: RedisOutbox, args: argparse.Namespace) -> None:
        self.config = config
        self.outbox = outbox
        self.args = args
        self.counters = Counters()
        self.stopping = threading.Event()
        self.hurry = threading.Event()
        self.sender = Sender(
            config=config, outbox=outbox, counters=self.counters,
            policy=RetryPolicy(max_retry_time=max(0.0, args.max_retry_time)),
            callbacks=Callbacks(), concurrency=args.concurrency, timeout=10.0,
        )

    def _signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping.is_set():
            self.hurry.set()
        self.stopping.set()

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._signal)
                    for sig in (signal.SIGTERM, signal.SIGINT)}
        destinations = self.config.enabled()
        logger.info("cdptrack worker %s: draining %s for %s (prefix %s)",
                    self.outbox.consumer, self.outbox.url, ", ".join(destinations),
                    self.outbox.prefix)
        self.sender.start()
        self.sender.wait_ready(10.0)
        waker = threading.Thread(target=self._wake_on_new_entries, args=(destinations,),
                                 name="cdptrack-worker-waker", daemon=True)
        waker.start()
        status = 0
        try:
            if self.args.once:
                status = self._drain(destinations)
            else:
                while not self.stopping.wait(0.5):
                    if not self.sender.running():
                        logger.error("cdptrack worker: the sender stopped; exiting")
                        status = 1
                        break
        finally:
            self._stop()
            self.stopping.set()
            waker.join(3.0)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self._report()
        return status

    def _drain(self, destinations: tuple[str, ...]) -> int:
        deadline = time.monotonic() + max(0.0, self.args.timeout)
        while not self.stopping.is_set():
            try:
                left = self.outbox.remaining(destinations)
            except Exception as error:
                logger.warning("cdptrack worker: %s", self.outbox.scrub(error))
                left = {"?": 1}
            if not any(left.values()) and self.outbox.in_flight() == 0:
                return 0
            if time.monotonic() >= deadline:
                print(f"cdptrack worker: not drained within {self.args.timeout:g}s; left: "
                      + ", ".join(f"{k} {n}" for k, n in left.items() if n), file=sys.stderr)
                return 1
            self.stopping.wait(0.05)
        return 1

    def _stop(self) -> None:
        """Take nothing more, let in-flight requests finish, hand the rest back."""
        self.outbox.stop_taking()
        deadline = time.monotonic() + max(0.0, self.args.grace)
        while (self.outbox.in_flight() and time.monotonic() < deadline
               and not self.hurry.is_set() and self.sender.running()):
            time.sleep(0.02)
        self.sender.stop(5.0)  # cancels what is still in flight: released to the group

    def _wake_on_new_entries(self, destinations: tuple[str, ...]) -> None:
        """Block on Redis for new entries, so work is picked up within milliseconds
        instead of at the sender's next poll.  A new event wakes the dispatcher; a
        delivery wakes the lanes unless this worker added it itself (it took those
        ahead when it routed them: nothing to read)."""
        outbox = self.outbox
        streams = outbox.stream_keys(destinations)
        client: Any = None
        while not self.stopping.is_set():
            try:
                if client is None:
                    client = outbox.blocking_client(timeout=3.0)
                reply = client.xread({s: "$" for s in streams}, count=1, block=500)
                if not reply:
                    continue
                # At most ~100 wake-ups a second; and by then the routing that added
                # this worker's own entries has recorded them.
                self.stopping.wait(0.01)
                seen = [(stream, entries[0][0]) for stream, entries in _rows(reply)
                        if entries]
                if any(stream != outbox.events_key and outbox.notice(stream, entry)
                       for stream, entry in seen):
                    self.sender.poke()
                elif any(stream == outbox.events_key for stream, _ in seen):
                    self.sender.notify()
            except Exception:  # Redis away: the sender's own polling covers it
                client = None
                self.stopping.wait(1.0)
        if client is not None:
            client.close()

    def _report(self) -> None:
        for destination, row in sorted(self.counters.snapshot().items()):
            parts = [f"{key} {row[key]}" for key in ("sent", "retried", "dead")
                     if row.get(key)]
            parts += [f"{key} {n}" for key, n in sorted(row.items())
                      if key.startswith("dropped:") and n]
            print(f"cdptrack worker: {destination}: {', '.join(parts) or 'nothing sent'}",
                  file=sys.stderr)
        for destination, n in sorted(self.outbox.poisoned().items()):
            print(f"cdptrack worker: {destination}: {n} entr{'y' if n == 1 else 'ies'} "
                  "dead-lettered after too many deliveries (too_many_deliveries)",
                  file=sys.stderr)
