"""``Tracker``: the one object an app holds to send canonical events.

``capture`` only appends to the outbox (no rendering, no JSON, no network, no raising);
a background thread renders, batches, sends, retries and dead-letters.  The thread is
started lazily on first use and remembers its process id, and a fork hook gives a child
process fresh locks, a fresh queue, a fresh thread and fresh HTTP clients, so the tracker
works under gunicorn ``--preload`` and uWSGI.  At interpreter exit a bounded flush
(``flush_at_exit`` seconds) runs; with the SQLite outbox, what is not sent by then simply
stays in the file for the next start.

Guarantees (see ``cdptrack/delivery/outbox_*.py`` for the details):

* ``memory`` outbox: bounded by ``max_queue`` (new events, and deliveries waiting per
  destination); when full, the *new* event is dropped and counted as
  ``dropped:queue_full``.  Lost if the process dies.
* ``sqlite:///path`` outbox: ``capture`` commits the event to the file (WAL,
  ``synchronous=NORMAL``) before it returns, so an accepted event survives a crash or
  ``SIGKILL`` of the process and is delivered after the next start, at least once.

``capture_deferred(job)`` accepts work that *becomes* events (the middleware's record of
one request): with the memory outbox it is stored as it is and built on the sender
thread, so the request pays for an append only; with a durable outbox it is built at
once and its events committed in one transaction, so what is accepted is on disk (the
middlewares do it before the response's last chunk is released).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from . import shutdown_hooks
from .config import Config, ConfigError
from .delivery.callbacks import Callbacks
from .delivery.counters import Counters, format_table
from .delivery.deferred import Buildable, as_deferred, run_build
from .delivery.outbox import DeadLetter, Outbox
from .delivery.outbox_url import open_outbox
from .delivery.retry import RetryPolicy
from .delivery.sender import Sender
from .delivery.sender_process import SenderProcess
from .events import Event

logger = logging.getLogger("cdptrack")
# The counters table at shutdown; its own name so a CLI that prints the table can mute it.
summary_logger = logging.getLogger("cdptrack.summary")
# The line saying the sender started and where it sends; its own name so the CLI, which
# prints what it does itself, hears it only with -v.
start_logger = logging.getLogger("cdptrack.start")

_LIVE: weakref.WeakSet[Tracker] = weakref.WeakSet()


def summary_level(stats: Mapping[str, Mapping[str, int]], drained: bool) -> int:
    """The level of the counters table logged at shutdown: INFO when the run was clean,
    WARNING when an event was dropped or dead-lettered, or the drain did not finish (so
    a server that shows only warnings, as gunicorn and uvicorn do for app loggers,
    shows it)."""
    lost = any(row.get("dropped", 0) or row.get("dead", 0) for row in stats.values())
    return logging.WARNING if lost or not drained else logging.INFO


class Tracker:
    """Send canonical events to every configured destination, off the request path.

    ``on_error(dead_letter)`` is called for each request that ends in the dead-letter
    store; ``on_drop(event, destination, reason)`` for each event a destination will not
    get (a renderer's reason such as ``no_contact_key``, or ``invalid``, ``queue_full``,
    ``shutdown``).  ``on_identity(user_id, identity_id)`` (default: the config's) is
    called on the sender thread when the Orangepill identity of a signed-in user was
    created or found (see :mod:`cdptrack.delivery.identities`), so the shop can store
    it.  Exceptions raised by any of them are logged and ignored (``on_identity``'s are
    also counted as ``on_identity_error`` under ``orangepill``).

    ``flush_at_exit`` (seconds, default 5) is the drain budget when the process stops
    without an explicit ``shutdown()``: at interpreter exit, on SIGTERM/SIGINT and at
    a server's shutdown (see :mod:`cdptrack.shutdown_hooks`; ``handle_signals=False``
    leaves the process's signal handlers alone).  Keep it below the server's graceful
    timeout (gunicorn ``--graceful-timeout`` 30 s, Kubernetes' grace period 30 s).
    Either argument left out (``None``) comes from ``config`` (``CDPTRACK_FLUSH_AT_EXIT``,
    ``CDPTRACK_HANDLE_SIGNALS``); a negative budget is a :class:`ConfigError`.
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        outbox: str | Outbox | None = None,
        on_error: Callable[..., None] | None = None,
        on_drop: Callable[..., None] | None = None,
        on_identity: Callable[[str, str], object] | None = None,
        max_queue: int = 10_000,
        max_retry_time: float = 600.0,
        timeout: float = 10.0,
        concurrency: int = 4,
        flush_at_exit: float | None = None,
        handle_signals: bool | None = None,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        max_retry_after: float = 300.0,
    ) -> None:
        self._config = config if config is not None else Config.from_env()
        # Parsing the outbox URL is cheap and fails early on a bad setting; files are
        # opened on first use.
        self._outbox = outbox if isinstance(outbox, Outbox) else open_outbox(
            outbox or self._config.outbox, max_queue=max_queue)
        self._callbacks = Callbacks(on_error=on_error, on_drop=on_drop,
                                    on_identity=on_identity or self._config.on_identity)
        self._policy = RetryPolicy(backoff=backoff, max_backoff=max_backoff,
                                   max_retry_after=max_retry_after,
                                   max_retry_time=max_retry_time)
        self._concurrency = concurrency
        self._timeout = timeout
        if flush_at_exit is not None and not 0 <= flush_at_exit <= 3600:
            raise ConfigError(
                f"flush_at_exit must be from 0 to 3600 seconds, not {flush_at_exit!r}")
        self._flush_at_exit = float(
            self._config.flush_at_exit if flush_at_exit is None else flush_at_exit)
        self._counters = Counters()
        self._start_lock = threading.Lock()
        self._sender: Sender | None = None
        self._pid: int | None = None  # the process the sender thread runs in
        self._closed = False
        self._shutdown_result: bool | None = None
        # sender="process": a child process holds the memory outbox and sends; this
        # process builds events and writes them to it (cdptrack.delivery.sender_process).
        self._process: SenderProcess | None = None
        if self._config.sender == "process":
            if self._outbox.url != "memory":
                raise ConfigError("sender='process' is for the memory outbox, not "
                                  f"{self._outbox.url!r}")
            self._process = SenderProcess(
                self._config, counters=self._counters, callbacks=self._callbacks,
                max_queue=max_queue, options={
                    "max_queue": max_queue, "max_retry_time": max_retry_time,
                    "timeout": timeout, "concurrency": concurrency, "backoff": backoff,
                    "max_backoff": max_backoff, "max_retry_after": max_retry_after,
                    "flush_at_exit": self._flush_at_exit})
        _LIVE.add(self)
        if self._config.handle_signals if handle_signals is None else handle_signals:
            shutdown_hooks.install()

    # -- the app-facing hot path -----------------------------------------------------------

    def capture(self, event: Event | Mapping[str, Any]) -> None:
        """Accept one event for delivery.  Constant time; never blocks on the network and
        never raises.  A mapping is validated later in the sender (a bad one is counted
        as ``dropped:invalid``)."""
        try:
            if self._closed:
                self._drop_everywhere(event, "shutdown")
                return
            if self._process is not None:
                self._hand_over([event])
                return
            if self._pid != os.getpid():
                self._ensure_started()
            if not isinstance(event, Event):
                if not isinstance(event, Mapping):
                    self._drop_everywhere(event, "invalid")
                    return
                event = dict(event)  # later changes by the caller do not leak in
            if self._outbox.put(event):
                sender = self._sender
                if sender is not None:
                    sender.notify()
            else:
                self._drop_everywhere(event, "queue_full")
        except Exception:
            logger.exception("capture failed; event dropped")
            self._drop_everywhere(event, "error")

    def capture_deferred(self, job: Buildable) -> None:
        """Accept work that becomes events later: a :class:`~.delivery.deferred.
        DeferredBuild`, any object with ``build()``, or a callable, returning a list of
        events (``Event`` or mappings).

        Guarantees: constant time and never raises, like ``capture``; the memory outbox
        stores ``job`` as it is and the sender builds it in capture order, just before
        rendering, so its events keep their order among themselves and with everything
        captured before and after; ``flush()`` waits for them.  A build that raises is
        logged and counted as ``dropped:invalid`` and the sender carries on.  ``job`` must
        not refer to objects the caller changes later.  The SQLite outbox builds ``job``
        here and commits its events in one transaction before this returns; the Redis
        outbox, once its sender runs, builds it in the sender and appends it with the
        burst.  After ``shutdown()`` (or with an outbox that takes no deferred work)
        ``job`` is built here and each event captured (or counted as dropped) like
        ``capture`` does.
        """
        try:
            deferred = as_deferred(job)
            outbox = self._outbox
            if self._process is not None and not self._closed:
                # Built here (the child has none of the app's objects), sent as one line.
                self._hand_over(self._build_now(deferred))
                return
            if self._closed or not outbox.accepts_deferred:
                for event in self._build_now(deferred):
                    self.capture(event)
                return
            if self._pid != os.getpid():
                self._ensure_started()
            if outbox.put_deferred(deferred):
                sender = self._sender
                if sender is not None:
                    sender.notify()
            else:
                for event in self._build_now(deferred):
                    self._drop_everywhere(event, "queue_full")
        except Exception:
            logger.exception("capture_deferred failed; its events are dropped")
            self._drop_everywhere(job, "error")

    def _hand_over(self, events: list[Any]) -> None:
        """sender="process": write ``events`` to the sender process (or count them as
        dropped, with the reason it gives)."""
        assert self._process is not None
        valid = []
        for event in events:
            if isinstance(event, Event | Mapping):
                valid.append(event)
            else:
                self._drop_everywhere(event, "invalid")
        reason = self._process.send(valid)
        if reason is not None:
            for event in valid:
                self._drop_everywhere(event, reason)

    def _build_now(self, job: Any) -> list[Any]:
        built = run_build(job)
        if built is None:
            self._drop_everywhere(job, "invalid")
            return []
        return built

    def _drop_everywhere(self, event: Any, reason: str) -> None:
        try:
            for name in self._config.enabled():
                self._counters.drop(name, reason)
                self._callbacks.drop(event, name, reason)
        except Exception:  # pragma: no cover - counting must not raise either
            logger.exception("counting a dropped event failed")

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the sender now instead of on first use.  With a durable outbox, call it
        when a process starts serving (e.g. gunicorn's ``post_fork`` hook): events a
        crashed process left in the outbox are then sent without waiting for a visitor.
        Safe to call more than once and after ``fork()``; does nothing after shutdown."""
        if not self._closed:
            if self._process is not None:
                self._process.start()
                return
            self._ensure_started()

    def _ensure_started(self) -> Sender:
        with self._start_lock:
            pid = os.getpid()
            if self._pid == pid and self._sender is not None:
                return self._sender
            if self._pid is not None:  # forked without the fork hook running
                self._after_fork()
            sender = Sender(config=self._config, outbox=self._outbox, counters=self._counters,
                            policy=self._policy, callbacks=self._callbacks,
                            concurrency=self._concurrency, timeout=self._timeout)
            sender.start()
            self._sender = sender
            self._pid = pid
            enabled = ", ".join(self._config.enabled()) or "no destination"
            dry = " in dry run: nothing leaves" if self._config.dry_run else ""
            start_logger.info("sending to %s (outbox %s, pid %d)%s", enabled,
                              self._outbox.url, pid, dry)
            return sender

    def _started(self) -> bool:
        if self._process is not None:
            return self._process.running()
        return self._sender is not None and self._pid == os.getpid()

    def flush(self, timeout: float | None = 5.0) -> bool:
        """Wait until everything accepted so far was delivered or dead-lettered (or
        dropped with a counted reason).  False when ``timeout`` seconds passed first."""
        if self._process is not None:
            return self._process.flush(timeout)
        if not self._started():
            if not self._outbox.durable and self._outbox.open_count() == 0:
                return True
            if self._closed:
                return self._outbox.open_count() == 0
            self._ensure_started()
        sender = self._sender
        assert sender is not None
        if threading.current_thread() is sender.thread:
            logger.warning("flush() called from the sender thread; not waiting")
            return False
        if not sender.wait_ready(timeout if timeout is not None else 60.0):
            return False
        target = self._outbox.last_key()
        sender.notify()
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        pause = 0.001
        while True:
            smallest = self._outbox.min_open_key()
            if smallest is None or smallest > target:
                return True
            if not sender.running():
                return False
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                pause = min(pause, left)
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Stop intake, drain for up to ``timeout`` seconds, stop the thread.  Idempotent.
        True when everything was delivered (or dead-lettered) and the thread ended."""
        with self._start_lock:
            if self._shutdown_result is not None:
                return self._shutdown_result
            self._closed = True
        started = time.monotonic()
        ok = True
        if self._process is not None:
            ok = self._shutdown_process(timeout)
        elif self._started():
            lost_before = self._lost_at_shutdown()
            ok = self.flush(timeout)
            sender = self._sender
            assert sender is not None
            left = max(0.5, timeout - (time.monotonic() - started))
            ok = sender.stop(left) and ok
            stats = self.stats()
            summary_logger.log(summary_level(stats, ok), "shut down (%s):\n%s",
                               "drained" if ok else "not drained", format_table(stats))
            lost = self._lost_at_shutdown() - lost_before
            if lost:
                logger.warning("shut down after %.1fs with %d deliveries undelivered; they "
                               "are lost (counted as dropped:shutdown)", timeout, lost)
            elif not ok and self._outbox.durable and self._outbox.open_count():
                logger.warning("shut down after %.1fs with %d events undelivered; they stay "
                               "in %s for the next start", timeout,
                               self._outbox.open_count(), self._outbox.url)
        self._shutdown_result = ok
        return ok

    def _shutdown_process(self, timeout: float) -> bool:
        assert self._process is not None
        answer = self._process.shutdown(timeout)
        if answer is None:
            return True  # none ran (or it is gone: its loss was logged then)
        ok = bool(answer.get("ok"))
        stats = self._merged(answer.get("stats"))
        summary_logger.log(summary_level(stats, ok), "shut down (%s):\n%s",
                           "drained" if ok else "not drained", format_table(stats))
        return ok

    def _merged(self, child: Any) -> dict[str, dict[str, int]]:
        """The sender process's counters plus the drops counted in this process."""
        mine = self._counters.snapshot()
        out: dict[str, dict[str, int]] = {}
        for name in self._config.enabled():
            row = dict(child.get(name, {})) if isinstance(child, Mapping) else {}
            for key, value in mine.get(name, {}).items():
                row[key] = row.get(key, 0) + value
            out[name] = row
        return out

    def _lost_at_shutdown(self) -> int:
        return sum(counts.get("dropped:shutdown", 0)
                   for counts in self._counters.snapshot().values())

    @property
    def shutdown_budget(self) -> float:
        """Seconds a shutdown the tracker does not control (exit, signal, server stop,
        lifespan) may spend draining: ``flush_at_exit``."""
        return self._flush_at_exit

    async def astart(self) -> None:
        """Start the sender thread from an ASGI lifespan without blocking the loop."""
        if not self._started():
            await asyncio.to_thread(self.start)

    async def aflush(self, timeout: float | None = 5.0) -> bool:
        return await asyncio.to_thread(self.flush, timeout)

    async def ashutdown(self, timeout: float = 5.0) -> bool:
        return await asyncio.to_thread(self.shutdown, timeout)

    def _after_fork(self) -> None:
        """In a forked child: the parent's thread, loop, HTTP clients and locks do not
        exist here; start from scratch (lazily) with an empty queue and zero counters."""
        self._start_lock = threading.Lock()
        self._sender = None
        self._pid = None
        self._counters.reset()
        self._outbox.after_fork()
        if self._process is not None:
            self._process.after_fork()

    def _at_exit(self) -> None:
        if not self._closed and (self._process is not None or self._started()):
            self.shutdown(self._flush_at_exit)

    def _stopping(self) -> None:
        """The process is stopping (a signal, a server's shutdown): drain, bounded."""
        self._at_exit()

    # -- reading -----------------------------------------------------------------------

    @property
    def config(self) -> Config:
        return self._config

    @property
    def outbox(self) -> Outbox:
        return self._outbox

    def stats(self) -> dict[str, dict[str, int]]:
        """Per destination: enqueued, sent, retried, dropped (and ``dropped:<reason>``),
        dead, and ``dry_run`` in dry-run mode.  With ``sender="process"``, the sender
        process's counters (asked for, up to 2 s) plus the drops counted here."""
        if self._process is not None:
            answer = self._process.stats() if self._process.running() else None
            return self._merged(answer.get("stats") if answer else None)
        for name in self._config.enabled():
            self._counters.ensure(name)
        return self._counters.snapshot()

    @property
    def counters(self) -> Counters:
        """The live counters and latency histograms (what :mod:`cdptrack.metrics` reads)."""
        return self._counters

    def pending(self) -> int:
        """Accepted events not yet settled (for progress bars and back-pressure)."""
        if self._process is not None:
            answer = self._process.stats() if self._process.running() else None
            return int(answer.get("pending", 0)) if answer else 0
        return self._outbox.open_count()

    def dead_letters(self, limit: int = 1000, destination: str | None = None
                     ) -> list[DeadLetter]:
        if self._process is not None:
            return self._process.dead_letters(limit, destination)
        return self._outbox.dead_letters(limit, destination)

    def replay_dead(self, ids: list[int] | None = None, destination: str | None = None
                    ) -> int:
        """Queue dead letters (all, or ``ids``, or one destination's) to be sent again;
        returns how many.  They are re-rendered with the current configuration."""
        if self._process is not None:
            return self._process.replay_dead(ids, destination)
        sender = self._ensure_started()
        if ids is None:
            ids = [d.id for d in self._outbox.dead_letters(1 << 30, destination)
                   if d.id is not None]
        moved = self._outbox.requeue_dead(ids)
        sender.poke()
        return moved

    def __repr__(self) -> str:
        return (f"Tracker(destinations={list(self._config.enabled())}, "
                f"outbox={self._outbox.url!r})")


def _after_fork_in_child() -> None:
    for tracker in list(_LIVE):
        try:
            tracker._after_fork()
        except Exception:  # pragma: no cover
            logger.exception("resetting a tracker after fork failed")


def _at_exit() -> None:
    for tracker in list(_LIVE):
        try:
            tracker._at_exit()
        except Exception:  # pragma: no cover
            logger.exception("flushing at exit failed")


def shutdown_all() -> None:
    """Drain every started tracker of this process, each within its own budget, in
    parallel (the process is stopping).  Never raises."""
    threads = []
    for tracker in list(_LIVE):
        thread = threading.Thread(target=tracker._stopping, name="cdptrack-stop",
                                  daemon=True)
        thread.start()
        threads.append((thread, tracker.shutdown_budget))
    for thread, budget in threads:
        thread.join(budget + 1.0)


shutdown_hooks.set_drain(shutdown_all)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_at_exit)

__all__ = ["Tracker", "shutdown_all"]
