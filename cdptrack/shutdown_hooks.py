"""Draining the trackers when the process stops, without relying on ``atexit`` alone.

``atexit`` does not run when a server ends by re-raising the signal it caught with
the default action (uvicorn >= 0.29 does, after its graceful shutdown), and a Django
or mounted Starlette app gets no lifespan to flush in.  So when the first
:class:`~cdptrack.tracker.Tracker` is made in the main thread, :func:`install` chains a
handler in front of the current SIGTERM and SIGINT handlers:

* the previous handler is kept and always called, so the server's own handling is
  unchanged (a handler set later by a server replaces this one; the server's exit path
  then runs ``atexit``, where the trackers drain);
* when the previous handler is a server's bound method whose server has an async
  ``shutdown`` and re-raises captured signals (uvicorn's ``Server``), the server's
  ``shutdown`` is wrapped on that instance so the trackers drain right after its
  graceful shutdown (connections closed, lifespan ended) and before it re-raises;
* when the previous handler is the default action (the process would die at once),
  the trackers drain first, bounded by their ``flush_at_exit``, then the default
  action runs;
* the drain runs on helper threads joined with a bound, never on the interrupted
  frame's locks.

Nothing here decides what is lost: each tracker's ``shutdown`` counts what it could
not deliver (memory outbox) or leaves it in its durable outbox.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

logger = logging.getLogger("cdptrack")

SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)
_HOOKED_ATTR = "_cdptrack_shutdown_hooked"

_lock = threading.Lock()
_previous: dict[int, Any] = {}
_drain: Callable[[], None] | None = None


def set_drain(drain: Callable[[], None]) -> None:
    """What stopping means: the tracker module's ``shutdown_all``."""
    global _drain
    _drain = drain


def drain() -> None:
    """Drain every tracker now (bounded by their budgets).  Never raises."""
    if _drain is None:
        return
    try:
        _drain()
    except Exception:  # pragma: no cover - the drain guards itself
        logger.exception("draining the trackers failed")


def installed(signum: int) -> bool:
    """Whether this module's handler is the current handler of ``signum``."""
    return signal.getsignal(signum) is _on_signal


def install() -> bool:
    """Chain the handler in front of SIGTERM's and SIGINT's current handlers, once per
    handler change.  Only from the main thread (elsewhere Python refuses, and nothing
    is done); False when nothing was installed."""
    if threading.current_thread() is not threading.main_thread():
        return False
    done = False
    with _lock:
        for signum in SIGNALS:
            try:
                current = signal.getsignal(signum)
                if current is _on_signal or current is None:
                    continue  # already ours, or set outside Python: leave it
                signal.signal(signum, _on_signal)
                _previous[signum] = current
                done = True
            except (ValueError, OSError):  # pragma: no cover - not the main interpreter
                continue
    return done


def uninstall() -> None:
    """Put the previous handlers back (tests, or an app that manages signals itself)."""
    if threading.current_thread() is not threading.main_thread():
        return
    with _lock:
        for signum, previous in list(_previous.items()):
            if signal.getsignal(signum) is _on_signal:
                signal.signal(signum, previous)
            del _previous[signum]


def _on_signal(signum: int, frame: FrameType | None) -> None:
    previous = _previous.get(signum, signal.SIG_DFL)
    if callable(previous):
        server = getattr(previous, "__self__", None)
        if server is not None and hook_server_shutdown(server):
            previous(signum, frame)  # the server drains us after its graceful shutdown
            return
        previous(signum, frame)  # a server's or the app's own: its exit runs atexit
        return
    if previous == signal.SIG_IGN:
        return
    # The default action ends the process at once: drain first, then let it.
    drain()
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)


def hook_server_shutdown(server: Any) -> bool:
    """Wrap ``server.shutdown`` (an async method, as uvicorn's ``Server`` has) on this
    instance so that the trackers drain after it; True when it is (or was) hooked.
    Servers without one are left alone (their exit path runs ``atexit``)."""
    if getattr(server, _HOOKED_ATTR, False):
        return True
    original = getattr(server, "shutdown", None)
    if original is None or not asyncio.iscoroutinefunction(original) or not hasattr(
            server, "_captured_signals"):
        return False

    async def shutdown_then_drain(*args: Any, **kwargs: Any) -> Any:
        try:
            return await original(*args, **kwargs)
        finally:
            await asyncio.to_thread(drain)

    try:
        server.shutdown = shutdown_then_drain
        setattr(server, _HOOKED_ATTR, True)
    except (AttributeError, TypeError):
        return False
    return True


__all__ = ["SIGNALS", "drain", "hook_server_shutdown", "install", "installed", "set_drain",
           "uninstall"]
