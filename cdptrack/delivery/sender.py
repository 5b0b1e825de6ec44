"""The sender: a background thread running its own asyncio loop, with a dispatcher that
renders new events and one :class:`~.lane.Lane` per destination.

Why a thread with its own loop, also for ASGI apps: the sender then never competes with
the app's request handling for its event loop, SQLite calls never block the app's loop,
and the same code serves WSGI apps, scripts and ASGI apps.  The app-facing side is just
``Outbox.put`` plus a cheap wake-up.

Rendering (``render_event``) and JSON encoding happen here, not in ``capture``; so does
building the events of a deferred build (:mod:`.deferred`): the middleware's per-request
record becomes canonical events here, just before it is rendered.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from ..config import Config
from ..destinations import render_event
from ..destinations.base import WireRequest
from ..events import Event, EventError
from .callbacks import Callbacks
from .counters import Counters
from .deferred import DeferredBuild, run_build
from .identities import IdentityProvisioner
from .identity_store import MemoryIdentityStore
from .lane import Lane, ssl_context
from .outbox import Outbox, Payload, Routing
from .outbox_memory import MemoryOutbox
from .retry import RetryPolicy, wait_event
from .skips import record_skips

logger = logging.getLogger("cdptrack")

TAKE = 256  # new events rendered per dispatcher round
# After waking up, wait this long before rendering: the app thread that woke us usually
# captures a few more events right away, and this way it does not have to fight the
# sender for the GIL while it does (events wait a few milliseconds; nobody notices).
LINGER = 0.005
# While events keep coming, the dispatcher looks for new ones every POLL seconds on its
# own timer instead of being woken by each capture: one wake-up per burst, not per page
# view (a cross-thread wake costs the app thread a write and the loop a full round).  It
# goes back to sleeping until woken after QUIET_POLLS looks that found nothing.
POLL = 0.02
QUIET_POLLS = 3
MAINTAIN_EVERY = 5.0  # seconds between outbox housekeeping rounds


def name_os_thread(name: str) -> None:
    """Give the calling thread ``name`` (at most 15 bytes) where the OS shows it too:
    ``top -H``, ``ps -L`` and profilers then tell cdptrack's sender from the app's
    threads.  Linux only; elsewhere, or on failure, nothing happens."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(15, name.encode("ascii")[:15], 0, 0, 0)  # PR_SET_NAME


class Sender:
    def __init__(
        self,
        *,
        config: Config,
        outbox: Outbox,
        counters: Counters,
        policy: RetryPolicy,
        callbacks: Callbacks,
        concurrency: int,
        timeout: float,
    ) -> None:
        self._config = config
        self._outbox = outbox
        self._counters = counters
        self._policy = policy
        self._callbacks = callbacks
        self._concurrency = concurrency
        self._timeout = timeout
        self._destinations: tuple[str, ...] = config.enabled()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stopped = threading.Event()
        self._idle = False
        self._wake: asyncio.Event | None = None
        self._stop_requested: asyncio.Event | None = None
        self._lanes: dict[str, Lane] = {}

    # -- called from any thread ----------------------------------------------------------

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="cdptrack-sender", daemon=True)
        self._thread.start()  # not waiting for it: capture must stay fast

    def wait_ready(self, timeout: float) -> bool:
        """Wait until the outbox was opened (and a durable one's leftovers taken over)."""
        return self._ready.wait(timeout)

    def notify(self) -> None:
        """New work: wake the dispatcher if it sleeps.  Costs nothing when it is busy."""
        if self._idle:
            self._idle = False
            loop, wake = self._loop, self._wake
            if loop is not None and wake is not None:
                with contextlib.suppress(RuntimeError):  # loop already closed
                    loop.call_soon_threadsafe(wake.set)

    def poke(self) -> None:
        """Wake the dispatcher and every lane (work appeared outside ``capture``)."""
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._wake_all)

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop the lanes (unfinished work: kept by a durable outbox, else counted as
        ``dropped:shutdown``) and the thread.  True when the thread ended in time."""
        loop, stop = self._loop, self._stop_requested
        if self._thread is None:
            return True
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        self._thread.join(max(0.1, timeout))
        return not self._thread.is_alive()

    # -- the sender thread ---------------------------------------------------------------

    def _run(self) -> None:
        name_os_thread("cdptrack-sender")
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._main(loop))
        except Exception:
            logger.exception("the sender stopped unexpectedly")
        finally:
            self._ready.set()
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._loop = None
            self._stopped.set()

    async def _main(self, loop: asyncio.AbstractEventLoop) -> None:
        self._wake = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._loop = loop
        try:
            self._outbox.start()
        except Exception:
            logger.exception("cannot open the outbox %s", self._outbox.url)
            self._ready.set()
            return
        tls = ssl_context()
        identities = self._identities()
        for name in self._destinations:
            self._counters.ensure(name)
            self._lanes[name] = Lane(
                name, outbox=self._outbox, config=self._config, counters=self._counters,
                policy=self._policy, callbacks=self._callbacks,
                concurrency=self._concurrency, timeout=self._timeout, tls=tls,
                identities=identities if name == "orangepill" else None,
            )
        if not self._destinations:
            logger.warning("no destination is configured; events go nowhere")
        for lane in self._lanes.values():
            lane.start()
        dispatcher = asyncio.create_task(self._dispatch(), name="cdptrack-dispatcher")
        upkeep = asyncio.create_task(self._maintain(), name="cdptrack-maintain")
        self._ready.set()
        await self._stop_requested.wait()
        dispatcher.cancel()
        upkeep.cancel()
        await asyncio.gather(dispatcher, upkeep, return_exceptions=True)
        for lane in self._lanes.values():
            await lane.stop()
        if identities is not None:
            await identities.aclose()
        self._count_leftovers()
        try:
            self._outbox.close()
        except Exception:
            logger.exception("closing the outbox failed")

    def _identities(self) -> IdentityProvisioner | None:
        """The Orangepill lane's identity provisioner (see :mod:`.identities`), with the
        outbox's identity store; None when Orangepill is off, provisioning is turned
        off, or in a dry run (nothing is sent, so no id can come back)."""
        config = self._config
        if "orangepill" not in self._destinations or not config.orangepill_create_identities \
                or config.dry_run:
            return None
        try:
            store = self._outbox.identity_store()
        except Exception:
            logger.exception("cannot open the identity store of %s; this process "
                             "remembers identities on its own", self._outbox.url)
            store = MemoryIdentityStore()
        return IdentityProvisioner(
            config=config, store=store, counters=self._counters,
            on_identity=self._callbacks.on_identity or config.on_identity,
            wait=config.orangepill_identity_wait)

    def _count_leftovers(self) -> None:
        outbox = self._outbox
        if isinstance(outbox, MemoryOutbox):
            new = outbox.pending_new()
            lost = 0
            for _, payload in new:
                if isinstance(payload, DeferredBuild):  # count its events, not the record
                    lost += len(run_build(payload) or ())
                else:
                    lost += 1
            for name in self._destinations:
                self._counters.drop(name, "shutdown", lost)
            if new:
                outbox.route([Routing(key, None) for key, _ in new])
            for name, lost in outbox.drain_backlog().items():
                self._counters.drop(name, "shutdown", lost)
        else:
            waiting = outbox.open_count()
            if waiting:
                logger.info("%d events stay in %s for the next start",
                            waiting, outbox.url)

    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(MAINTAIN_EVERY)
            try:
                more = self._outbox.maintain()
            except Exception:
                logger.exception("outbox housekeeping failed")
                continue
            if more:
                self._wake_all()

    def _wake_all(self) -> None:
        if self._wake is not None:
            self._wake.set()
        for lane in self._lanes.values():
            lane.wake()

    async def _dispatch(self) -> None:
        assert self._wake is not None
        outbox = self._outbox
        for lane in self._lanes.values():
            lane.wake()  # a durable outbox may hold deliveries from the last run
        quiet = QUIET_POLLS
        while True:
            items = outbox.take_new(TAKE)
            self._count_refusals()
            if not items and outbox.took_staged():
                quiet = 0  # a producer's burst went on: more captures are coming
            if not items and quiet < QUIET_POLLS:
                quiet += 1
                await asyncio.sleep(POLL)  # still busy lately: look again, unwoken
                continue
            if not items:
                self._idle = True
                items = outbox.take_new(TAKE)  # re-check after announcing the nap
                if not items:
                    await wait_event(self._wake, 1.0)
                    self._wake.clear()
                    self._idle = False
                    await asyncio.sleep(LINGER)
                    continue
                self._idle = False
            quiet = 0
            try:
                self._route(items)
            except Exception:
                logger.exception("routing %d events failed", len(items))
            await asyncio.sleep(0)  # let the lanes run between rounds

    def _count_refusals(self) -> None:
        for reason, n in self._outbox.take_refusals().items():
            for name in self._destinations:
                self._counters.drop(name, reason, n)
                for _ in range(n):
                    self._callbacks.drop(None, name, reason)

    def _route(self, items: Sequence[tuple[int, Payload | str | DeferredBuild]]) -> None:
        routings: list[Routing] = []
        touched: dict[str, int] = {}  # destination -> new deliveries
        for key, payload in items:
            if isinstance(payload, DeferredBuild):
                built = self._build(payload)
                if not built:
                    routings.append(Routing(key, None))  # settles the key
                for one in built:
                    self._render(key, one, routings, touched)
            else:
                self._render(key, payload, routings, touched)
        refused = self._outbox.route(routings)
        if refused:
            # One lookup per refusal (a full lane refuses a whole round: no scan each).
            event_of = {r.key: r.event for r in reversed(routings)}
            for key, destination in refused:
                self._counters.drop(destination, "queue_full")
                self._callbacks.drop(event_of.get(key), destination, "queue_full")
        for name, count in touched.items():
            lane = self._lanes.get(name)
            if lane is not None:
                lane.wake(count)

    def _build(self, job: DeferredBuild) -> list[Any]:
        """A deferred build's events; a build that raises is counted as invalid."""
        built = run_build(job)
        if built is None:
            for name in self._destinations:
                self._counters.drop(name, "invalid")
                self._callbacks.drop(job, name, "invalid")
            return []
        return built

    def _render(self, key: int, payload: Payload | str, routings: list[Routing],
                touched: dict[str, int]) -> None:
        event = self._validate(payload)
        routing = Routing(key, event)
        routings.append(routing)
        if event is None:
            return
        for prop in event.dropped:  # the event goes; these properties could not
            for name in self._destinations:
                self._counters.add(name, f"dropped_property:{prop}")
        if self._outbox.lazy_render:
            # The lane renders when it sends; until then a delivery is just the event.
            routing.requests = dict.fromkeys(self._destinations)
            for name in self._destinations:
                touched[name] = touched.get(name, 0) + 1
            return
        self._render_event(event, routing, touched)

    def _render_event(self, event: Event, routing: Routing, touched: dict[str, int]
                      ) -> None:
        try:
            rendered = render_event(event, self._config, self._destinations)
        except Exception:
            logger.exception("rendering %s failed", event.label)
            for name in self._destinations:
                self._counters.drop(name, "render_error")
            routing.event = None
            return
        record_skips(rendered, event, self._counters, self._callbacks)
        by_destination: dict[str, list[WireRequest] | None] = {}
        for destination, _ in rendered.deferred:
            # Rendered by the lane once what it waits for is known (an identity id).
            by_destination[destination] = None
            touched[destination] = touched.get(destination, 0) + 1
        for request in rendered.requests:
            listed = by_destination.setdefault(request.destination, [])
            assert listed is not None
            listed.append(request)
            touched[request.destination] = touched.get(request.destination, 0) + 1
        routing.requests = by_destination

    def _validate(self, payload: Payload | str) -> Event | None:
        if isinstance(payload, Event):
            return payload
        try:
            data: Any = json.loads(payload) if isinstance(payload, str) else payload
            if not isinstance(data, Mapping):
                raise EventError("event", "must be a JSON object")
            return Event.from_dict(data)
        except (EventError, ValueError, TypeError) as exc:
            logger.warning("invalid event dropped: %s", exc)
            for name in self._destinations:
                self._counters.drop(name, "invalid")
                self._callbacks.drop(payload, name, "invalid")
            return None
