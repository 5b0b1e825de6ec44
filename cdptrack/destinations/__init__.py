"""Destinations: one pure renderer per API, canonical event → wire requests.  No I/O."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ..config import Config
from ..events import Event
from . import customerio, orangepill, yespo_events, yespo_tracker
from .base import Deferred, NotSent, WireRequest

Renderer = Callable[[Event, Config], list[WireRequest]]

RENDERERS: dict[str, Renderer] = {
    "yespo_tracker": yespo_tracker.render,
    "yespo_events": yespo_events.render,
    "customerio": customerio.render,
    "orangepill": orangepill.render,
}


@dataclass(slots=True)
class Rendered:
    """The wire requests one event became, and where it did not go and why."""

    requests: list[WireRequest] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (destination, reason)
    # Why, in words, per skipped destination (the NotSent's detail), for warnings.
    details: dict[str, str] = field(default_factory=dict)
    # Destinations that can take the event after a lookup (:class:`~.base.Deferred`),
    # with the reason counted if the lookup finds nothing.
    deferred: list[tuple[str, str]] = field(default_factory=list)


def render_event(
    event: Event, config: Config, destinations: Iterable[str] | None = None
) -> Rendered:
    """Render ``event`` for each destination (default: the ones ``config`` enables)."""
    result = Rendered()
    for name in config.enabled() if destinations is None else destinations:
        try:
            result.requests.extend(RENDERERS[name](event, config))
        except Deferred as why:
            result.deferred.append((name, why.reason))
        except NotSent as why:
            result.skipped.append((name, why.reason))
            if why.detail:
                result.details[name] = why.detail
    return result


__all__ = ["RENDERERS", "Deferred", "NotSent", "Rendered", "Renderer", "WireRequest",
           "render_event"]
