"""What every renderer returns: wire requests, or a counted reason for sending nothing.

Renderers are pure functions ``render(event, config) -> list[WireRequest]``.  They raise
:class:`NotSent` with a short machine-readable reason when an event cannot go to their
API (no contact key, no identity, too large); an event kind an API has no mapping for
raises ``NotSent("no_mapping")``.  Nothing is dropped silently: the caller counts reasons.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from ..config import REDACTED
from ..events import PAGE_EVENT, Event

# Header names whose values are credentials (compared lower-case).
SECRET_HEADERS = frozenset({"authorization", "x-api-key", "proxy-authorization"})

_NAMESPACE = uuid.UUID("5b0c2f6e-3f0f-4c8e-9d8a-6a1f3c7c2d10")


class NotSent(Exception):
    """This event does not go to this destination, for ``reason``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def skip_page_with_own_event(event: Event) -> None:
    """Raise ``NotSent("page_has_own_event")`` for a ``page`` event the middleware
    marked with ``properties.page_event`` (``page_views="generic"``): the page's own
    event (Product Viewed, ...) follows and stands for the view at an API that takes
    each message as its own HTTP request (Yespo v1/event, Orangepill)."""
    if event.type == "page" and event.properties.get(PAGE_EVENT):
        raise NotSent("page_has_own_event",
                      f"the page's own event {event.properties[PAGE_EVENT]!r} is sent")
class Deferred(NotSent):
    """This event can go to this destination once the delivery layer has looked up
    something only an earlier request can tell (Orangepill: the identity id of the
    shop's user).  ``render_event`` lists it apart from the skipped ones; the lane looks
    the value up and renders the event again, and counts ``reason`` if it still cannot
    go."""


@dataclass(frozen=True, slots=True)
class WireRequest:
    """One HTTP request for one API, ready for the sender."""

    destination: str
    method: str
    url: str
    headers: dict[str, str]
    json: Any
    message_id: str
    # For APIs with a batch form: the batch endpoint this request's body can join.
    batch_url: str | None = None
    # What the request is about, for counters and pages (e.g. "Product Viewed").
    label: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    # The encoded body, when the renderer already encoded it (to check a size limit);
    # otherwise encoded once on first use.  Never compared or shown.
    encoded: bytes | None = field(default=None, repr=False, compare=False)

    def redacted_headers(self) -> dict[str, str]:
        return redact_headers(self.headers)

    def to_public_dict(self) -> dict[str, Any]:
        """The ``cdptrack render`` line: secrets replaced by ``<redacted>``."""
        return {
            "destination": self.destination,
            "method": self.method,
            "url": self.url,
            "headers": self.redacted_headers(),
            "json": self.json,
        }

    def body_bytes(self) -> bytes:
        """The request body as sent: compact UTF-8 JSON, encoded at most once."""
        if self.encoded is None:
            object.__setattr__(self, "encoded", encode_json(self.json))
        assert self.encoded is not None
        return self.encoded

    def __repr__(self) -> str:
        return (
            f"WireRequest({self.destination} {self.method} {self.url} "
            f"message_id={self.message_id!r} headers={self.redacted_headers()!r})"
        )


def redact_headers(headers: dict[str, str]) -> dict[str, str]:
    return {k: (REDACTED if k.lower() in SECRET_HEADERS else v) for k, v in headers.items()}


def basic_auth(user: str, password: str) -> str:
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def encode_json(value: Any) -> bytes:
    """Compact UTF-8 JSON: what is measured against the APIs' size limits and sent."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def derived_id(message_id: str, *parts: str) -> str:
    """A stable id for the n-th request made from one event (same on every retry)."""
    if not parts:
        return message_id
    return str(uuid.uuid5(_NAMESPACE, "\x1f".join((message_id, *parts))))


def join_url(base: str, path: str) -> str:
    return base.rstrip("/") + "/" + path.lstrip("/")
