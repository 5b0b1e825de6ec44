"""Deferred builds: work that becomes canonical events on the sender thread.

The middleware must add almost nothing to a request, yet deciding which events a request
means and constructing them costs tens of microseconds.  So the middleware hands the
tracker a small record of the request wrapped in a :class:`DeferredBuild`; the memory
outbox stores it as it is, and the sender calls :meth:`DeferredBuild.build` just before
rendering, in order with everything else that was captured.

A build that raises is logged and counted as ``dropped:invalid`` for every destination;
it never stops the sender.  Durable outboxes persist plain events only, so for them the
tracker builds at capture time instead (their capture costs far more anyway).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ..capture import DeferredBuild
from ..events import Event

logger = logging.getLogger("cdptrack")


class HasBuild(Protocol):
    def build(self) -> Sequence[Event | Any]: ...


Buildable = DeferredBuild | HasBuild | Callable[[], Sequence[Event | Any]]


class _CallBuild(DeferredBuild):
    """A plain callable or any object with ``build()``, as a :class:`DeferredBuild`."""

    __slots__ = ("_call",)

    def __init__(self, call: Callable[[], Sequence[Event | Any]]) -> None:
        self._call = call

    def build(self) -> Sequence[Event | Any]:
        return self._call()

    @property
    def label(self) -> str:
        return getattr(self._call, "__qualname__", type(self._call).__name__)


def as_deferred(job: Buildable) -> DeferredBuild:
    """``job`` as a :class:`DeferredBuild` (no wrapping when it already is one)."""
    if isinstance(job, DeferredBuild):
        return job
    build = getattr(job, "build", None)
    if callable(build):
        return _CallBuild(build)
    if callable(job):
        return _CallBuild(job)
    raise TypeError(f"not a deferred build: {type(job).__name__} (needs build() or a call)")


def run_build(job: DeferredBuild) -> list[Any] | None:
    """The events of ``job``, or ``None`` when its build raised (logged here; the caller
    counts the loss)."""
    try:
        return list(job.build())
    except Exception:
        logger.exception("building deferred events failed (%s); dropped", job.label)
        return None


__all__ = ["Buildable", "DeferredBuild", "as_deferred", "run_build"]
