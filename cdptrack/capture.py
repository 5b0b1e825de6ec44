"""What the request layer hands the tracker, and nothing more.

The observe layer (:mod:`cdptrack.observe`) and the delivery engine
(:mod:`cdptrack.delivery`) meet here and nowhere else: the middleware holds an
:class:`EventSink` (a :class:`~cdptrack.tracker.Tracker`, a test's list, any object with
``capture``) and, when the sink can build off the request path, hands it one
:class:`DeferredBuild` per request.  Neither side imports the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from .events import Event


class EventSink(Protocol):
    """What the middleware needs from a tracker: a constant-time ``capture``.

    A sink that also has ``capture_deferred(job)`` (``job.build()`` returns the events)
    gets each request's events as one :class:`DeferredBuild` instead, built off the
    request path.  ``capture`` must never block for long and never raise.
    """

    def capture(self, event: Event) -> None: ...


class DeferredBuild:
    """Work that becomes canonical events later, on the tracker's sender thread.

    ``build()`` returns the events (``Event`` objects or mappings validated like
    ``capture``'s) in the order they must be sent; ``label`` names the work in log lines.
    A build that raises is logged and counted by the tracker, never raised further.
    """

    __slots__ = ()

    def build(self) -> Sequence[Event | Any]:
        raise NotImplementedError

    @property
    def label(self) -> str:
        return type(self).__name__


__all__ = ["DeferredBuild", "EventSink"]
