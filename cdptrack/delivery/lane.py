"""One destination's lane: its own queue position, HTTP client, workers and retries.

Each destination gets a lane so that a dead or slow API only ever delays itself: the
lane's ``concurrency`` workers take that destination's deliveries from the outbox, send
them with one keep-alive :class:`~.http.HTTPClient`, retry with backoff within the
request's deadline, and settle them (sent, or dead-lettered with the API's answer).

Batching: requests that carry a ``batch_url`` (Customer.io) are coalesced into
``POST {base}/batch`` with ``{"batch": [msg, ...]}``.  When a batch gets a final 4xx
other than 401/403, the lane **splits it and sends each message singly** to its own
endpoint, so one malformed message cannot take its neighbours to the dead-letter store;
only the messages refused singly are dead-lettered.  A 401/403 (bad credentials) or a
batch that runs out of retry time dead-letters each of its messages directly.

Per-visitor order: a visitor's deliveries leave in the order the lane took them from
the outbox (the order they were accepted).  While a worker holds a delivery of visitor
V (in flight, waiting for a retry, or for V's Orangepill identity), a later delivery of V
that another worker takes is parked behind it, and the worker holding V sends it next
(:mod:`.ordering`); other visitors' deliveries go on in parallel.  A batch carries a
visitor's messages in order, and a visitor's next batch waits for the one before.  So a
visitor waits behind its own earlier delivery at most until that one is sent or
dead-lettered (its retry deadline), never behind another visitor.

Every retry re-sends the same bytes, so Customer.io's ``messageId`` and Orangepill's
``idempotency-key`` header are the same on every attempt.

A delivery the dispatcher could not render yet (:class:`~cdptrack.destinations.base.
Deferred`: an Orangepill event of a user whose identity id is not known) is prepared by
the lane's :class:`~.identities.IdentityProvisioner` first, which may send requests of
its own through :meth:`Lane.exchange`; when it cannot get the id, the event is
dead-lettered with its reason.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from ..config import Config
from ..destinations import render_event
from ..destinations.base import WireRequest
from .batching import batch_body, pack
from .callbacks import Callbacks
from .counters import Counters
from .http import HTTPClient, HTTPError
from .identities import IdentityProvisioner, IdentityUnavailable
from .ordering import VisitorGate
from .outbox import DeadLetter, Delivery, Outbox, truncate
from .retry import RetryPolicy, classify, parse_retry_after, wait_event
from .skips import record_skips

logger = logging.getLogger("cdptrack")
# One INFO line per HTTP answer, as httpx logs them (the CLI shows them with -v only).
request_log = logging.getLogger("cdptrack.http")

BATCH_PULL = 200  # deliveries a worker takes at once once the lane is known to batch
# Deliveries a worker takes at once from a durable outbox for an API without a batch
# form (sent one after another): one read and one settle per 4 instead of per delivery,
# each a SQLite transaction or a Redis round trip.  The memory outbox takes one.
DURABLE_PULL = 4
IDLE_RECHECK = 5.0  # seconds; a safety net, lanes are woken explicitly


def ssl_context() -> ssl.SSLContext:
    """One verified TLS context shared by every lane (building one costs milliseconds)."""
    return ssl.create_default_context()


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


@dataclass(slots=True)
class Outcome:
    ok: bool
    status: int | None
    response: str
    attempts: int
    reason: str  # "sent", "rejected", "retry_time_exceeded"


class Lane:
    def __init__(
        self,
        destination: str,
        *,
        outbox: Outbox,
        config: Config,
        counters: Counters,
        policy: RetryPolicy,
        callbacks: Callbacks,
        concurrency: int,
        timeout: float,
        tls: ssl.SSLContext | None = None,
        identities: IdentityProvisioner | None = None,
    ) -> None:
        self.destination = destination
        self._identities = identities
        self._outbox = outbox
        self._config = config
        self._counters = counters
        self._policy = policy
        self._callbacks = callbacks
        self._concurrency = max(1, concurrency)
        self._timeout = timeout
        self._tls = tls
        self._secrets = config.secrets()
        self._pull = DURABLE_PULL if outbox.durable else 1
        # Idle workers, each parked on its own future: ``wake(n)`` starts exactly the
        # workers there is work for, instead of every worker of the lane each time.
        self._sleepers: deque[asyncio.Future[None]] = deque()
        self._tasks: list[asyncio.Task[None]] = []
        self._client: HTTPClient | None = None
        self.busy = 0  # workers holding deliveries right now
        # Per-visitor order (see :mod:`.ordering`), and a signal that parked deliveries
        # went below the outbox's park limit again.
        self._gate = VisitorGate()
        self._park_limit = max(1, outbox.park_limit)
        # Whether the API's last answer was a failure to retry (no answer, 5xx, 429):
        # told to the outbox on changes, which then keeps this lane's waiting work
        # compact (see :meth:`.Outbox.set_failing`).
        self._failing = False
        self._room = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        if not self._config.dry_run:
            # Never follows redirects (credentials are not re-sent elsewhere); the
            # timeout bounds each attempt as a whole, connect to the answer's last byte.
            self._client = HTTPClient(timeout=self._timeout, tls=self._tls,
                                      max_idle=self._concurrency)
        self._tasks = [
            asyncio.create_task(self._worker(), name=f"cdptrack-{self.destination}-{i}")
            for i in range(self._concurrency)
        ]

    def wake(self, n: int | None = None) -> None:
        """Start idle workers for ``n`` new deliveries (every idle worker when ``n`` is
        None); a batching lane needs one worker per ``BATCH_PULL`` deliveries."""
        sleepers = self._sleepers
        if n is not None:
            n = -(-n // self._pull)
        while sleepers and (n is None or n > 0):
            waiter = sleepers.popleft()
            if not waiter.done():
                waiter.set_result(None)
                if n is not None:
                    n -= 1

    async def _sleep(self) -> None:
        """Park until :meth:`wake` (or ``IDLE_RECHECK`` seconds, a safety net)."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._sleepers.append(waiter)
        timer = loop.call_later(IDLE_RECHECK, _resolve, waiter)
        try:
            await waiter
        finally:
            timer.cancel()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        parked = self._gate.drain()
        if parked:  # taken from the outbox, never sent: handed back like the rest
            self._outbox.release(parked)
            if not self._outbox.durable:
                self._counters.drop(self.destination, "shutdown", len(parked))
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- the worker loop ---------------------------------------------------------------

    async def _worker(self) -> None:
        gate = self._gate
        while True:
            if gate.parked >= self._park_limit:
                # Enough waits behind busy visitors; take more once some of it left.
                self._room.clear()
                await wait_event(self._room, IDLE_RECHECK)
                continue
            deliveries = self._outbox.next_for(self.destination, self._pull)
            if not deliveries:
                await self._sleep()
                continue
            # Per-visitor order: what another worker's visitor owns waits behind it.
            ready, held = gate.admit(deliveries)
            self.busy += 1
            try:
                while True:
                    if ready:
                        await self._deliver_guarded(ready)
                    if not held:
                        break
                    if not self._outbox.taking():
                        # A graceful stop: what waited behind was never started; it goes
                        # back to the outbox with the rest of the unstarted work.
                        self._outbox.release(gate.release_all(held))
                        break
                    # Then what waited behind this worker's visitors, in order.
                    ready, held = gate.release(held, self._pull)
                if gate.parked < self._park_limit:
                    self._room.set()
            finally:
                self.busy -= 1

    async def _deliver_guarded(self, deliveries: Sequence[Delivery]) -> None:
        """Deliver and settle; on shutdown hand the deliveries back; on a bug, drop
        them (counted), never killing the worker nor looping on the same rows."""
        try:
            await self._deliver(deliveries)
        except asyncio.CancelledError:
            self._outbox.release(deliveries)
            if not self._outbox.durable:
                self._counters.drop(self.destination, "shutdown", len(deliveries))
            raise
        except Exception:
            logger.exception("%s lane failed on %d deliveries",
                             self.destination, len(deliveries))
            self._counters.drop(self.destination, "error", len(deliveries))
            self._outbox.settle(deliveries)

    async def _deliver(self, deliveries: Sequence[Delivery]) -> None:
        batchable: list[tuple[WireRequest, Delivery]] = []
        singles: list[tuple[WireRequest, Delivery]] = []
        letters: list[DeadLetter] = []
        for delivery in deliveries:
            for request in await self._requests_for(delivery, letters):
                if request.batch_url:
                    batchable.append((request, delivery))
                    self._pull = BATCH_PULL
                else:
                    singles.append((request, delivery))
        for batch in pack(batchable):
            letters.extend(await self._send_batch(batch))
        for request, delivery in singles:
            letters.extend(await self._send_single(request, delivery))
        self._outbox.settle(deliveries, letters)
        for letter in letters:
            self._callbacks.error(letter)

    async def _requests_for(self, delivery: Delivery, letters: list[DeadLetter]
                            ) -> list[WireRequest]:
        requests = delivery.requests
        if requests is None:
            event = delivery.event
            if self._identities is not None and self._identities.needs(event):
                try:
                    event = await self._identities.prepare(event, self.exchange)
                except IdentityUnavailable as why:
                    letters.append(self._identity_letter(delivery, why))
                    delivery.requests = []
                    return []
            try:
                rendered = render_event(event, self._config, [self.destination])
            except Exception:
                # One event the renderer cannot take costs only that event, not the
                # other deliveries this worker holds.
                logger.exception("rendering %s for %s failed", delivery.event.label,
                                 self.destination)
                self._counters.drop(self.destination, "render_error")
                delivery.requests = []
                return []
            record_skips(rendered, delivery.event, self._counters, self._callbacks)
            for destination, reason in rendered.deferred:  # still no identity: counted
                self._counters.drop(destination, reason)
                self._callbacks.drop(delivery.event, destination, reason)
            requests = rendered.requests
            # Kept while the delivery is in flight (settled right after): what was sent.
            delivery.requests = requests
        if delivery.only is not None:
            requests = [r for r in requests if r.message_id in delivery.only]
        self._counters.add(self.destination, "enqueued", len(requests))
        return requests

    # -- sending -----------------------------------------------------------------------

    async def _send_batch(self, batch: list[tuple[WireRequest, Delivery]]
                          ) -> list[DeadLetter]:
        if len(batch) == 1:
            return await self._send_single(*batch[0])
        requests = [request for request, _ in batch]
        first = requests[0]
        url = first.batch_url or first.url
        if self._config.dry_run:
            for request in requests:
                self._dry_run(request)
            return []
        outcome = await self._attempts("POST", url, first.headers, batch_body(requests),
                                       len(requests), f"batch of {len(requests)}")
        if outcome.ok:
            self._counters.add(self.destination, "sent", len(requests))
            return []
        if outcome.reason == "rejected" and outcome.status not in (401, 403):
            logger.warning("%s refused a batch of %d (%s); sending them singly",
                           self.destination, len(requests), outcome.status)
            letters: list[DeadLetter] = []
            for request, delivery in batch:
                letters.extend(await self._send_single(request, delivery))
            return letters
        return [self._letter(request, delivery, outcome) for request, delivery in batch]

    async def _send_single(self, request: WireRequest, delivery: Delivery
                           ) -> list[DeadLetter]:
        if self._config.dry_run:
            self._dry_run(request)
            return []
        # The request itself describes it in log lines: its repr is built only if one is
        # written (a failure), not for every request sent.
        outcome = await self._attempts(request.method, request.url, request.headers,
                                       request.body_bytes(), 1, request)
        if outcome.ok:
            self._counters.add(self.destination, "sent")
            return []
        return [self._letter(request, delivery, outcome)]

    async def exchange(self, request: WireRequest, max_time: float) -> Outcome:
        """Send a request the lane needs an answer from (an identity create or lookup):
        retried like any other for at most ``max_time`` seconds; on success the
        outcome's ``response`` is the answer's body.  Its retries are counted under
        ``retried``; ``enqueued`` and ``sent`` stay the events' requests (the caller counts
        what the exchange achieved) and nothing is dead-lettered here (the caller decides
        what a failure means)."""
        body = b"" if request.json is None else request.body_bytes()
        return await self._attempts(request.method, request.url, request.headers, body,
                                    1, request, max_time=max_time, keep_body=True)

    def _identity_letter(self, delivery: Delivery, why: IdentityUnavailable
                         ) -> DeadLetter:
        """A waiting event that got no identity id: dead-lettered with the reason and the
        create (or lookup) request's answer; replay prepares it again."""
        self._counters.add(self.destination, "dead")
        request = why.request
        return DeadLetter(
            destination=self.destination,
            message_id=delivery.event.message_id,
            method=request.method,
            url=request.url,
            status=why.status,
            response=truncate(why.response, self._secrets),
            reason=why.reason,
            attempts=why.attempts,
            event=delivery.event.to_dict(),
            request=request.to_public_dict(),
        )

    async def _attempts(self, method: str, url: str, headers: dict[str, str], body: bytes,
                        messages: int, what: object, *, max_time: float | None = None,
                        keep_body: bool = False) -> Outcome:
        """Send one HTTP request until it succeeds, is refused for good, or its
        deadline passes (``max_time`` seconds, default the retry policy's).  The body is
        the same bytes on every attempt.  ``what`` names the request in log lines
        (``%s``-formatted only when a line is written); ``keep_body``: a success's
        outcome carries the answer's body."""
        assert self._client is not None
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            retry_after: float | None = None
            try:
                response = await self._client.request(method, url, headers=headers,
                                                       content=body)
            except HTTPError as exc:
                status: int | None = None
                answer = truncate(f"{type(exc).__name__}: {exc}", self._secrets)
                verdict = "retry"
            else:
                status = response.status_code
                if request_log.isEnabledFor(logging.INFO):
                    request_log.info('HTTP Request: %s %s "%s"', method, url, status)
                verdict = classify(status)
                if verdict == "ok":
                    if self._failing:
                        self._set_failing(False)
                    self._counters.observe_latency(self.destination,
                                                   time.monotonic() - started)
                    return Outcome(True, status, response.text if keep_body else "",
                                   attempt, "sent")
                answer = truncate(response.text, self._secrets)
                retry_after = parse_retry_after(response.headers.get("retry-after"))
            if verdict == "dead":
                logger.warning("%s answered %s to %s; dead-lettered: %s",
                               self.destination, status, what, answer[:200])
                return Outcome(False, status, answer, attempt, "rejected")
            if not self._failing:
                self._set_failing(True)
            delay = self._policy.delay(attempt, retry_after)
            elapsed = time.monotonic() - started
            if not self._policy.allows(elapsed, delay) or (
                    max_time is not None and elapsed + delay > max_time):
                logger.warning("%s: %s still failing after %d attempts (%s); "
                               "dead-lettered: %s", self.destination, what, attempt,
                               status or "no answer", answer[:200])
                return Outcome(False, status, answer, attempt, "retry_time_exceeded")
            logger.debug("%s: %s failed (%s), retry in %.2fs",
                         self.destination, what, status or answer, delay)
            self._counters.add(self.destination, "retried", messages)
            await asyncio.sleep(delay)

    def _set_failing(self, failing: bool) -> None:
        self._failing = failing
        self._outbox.set_failing(self.destination, failing)

    def _letter(self, request: WireRequest, delivery: Delivery, outcome: Outcome
                ) -> DeadLetter:
        self._counters.add(self.destination, "dead")
        return DeadLetter(
            destination=self.destination,
            message_id=request.message_id,
            method=request.method,
            url=request.url,
            status=outcome.status,
            response=outcome.response,
            reason=outcome.reason,
            attempts=outcome.attempts,
            event=delivery.event.to_dict(),
            request=request.to_public_dict(),
        )

    def _dry_run(self, request: WireRequest) -> None:
        logger.info("dry run: %s", json.dumps(request.to_public_dict(),
                                                       ensure_ascii=False))
        self._counters.add(self.destination, "dry_run")
