"""What cdptrack knows about one request while it runs.

One :class:`RequestState` per request lives in the ASGI scope or WSGI environ (under
:data:`STATE_KEY`) and in a context variable, never on a middleware instance: concurrent
requests share the middleware, so anything kept there would leak between shoppers.
The middleware fills in the request line and headers; the app, its adapter and the
view's declarations fill in the rest; the events are built from it once the response
is complete.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

STATE_KEY = "cdptrack.state"
GUARD_KEY = "cdptrack.installed"


@dataclass(frozen=True, slots=True)
class PageDeclaration:
    """A view's own word on what page it is: a kind and the parameter holding its key."""

    kind: str
    key: str | None = None
    query_param: str | None = None


@dataclass(slots=True)
class SessionSnapshot:
    """The parts of a session cdptrack compares: cart lines, identity, last order.

    ``raw`` is a cheap copy of the session taken on the request path
    (:func:`cdptrack.observe.session.snapshot_later`); the other fields are read from it when
    the events are built (:func:`cdptrack.observe.session.resolve_snapshot`), off the request
    path when the tracker builds in the background.
    """

    cart: dict[str, dict[str, Any]] | None = None
    cart_id: str | None = None
    identity: dict[str, str] | None = None
    order: Any = None
    raw: dict[str, Any] | None = None


class RequestState:
    """Per-request facts, filled in by the middleware, the adapter and the view."""

    __slots__ = (
        "cart_lines",
        "cart_read",
        "cookies",
        "custom_events",
        "declared",
        "endpoint",
        "endpoint_name",
        "finished",
        "host",
        "html",
        "identify_traits",
        "ip",
        "method",
        "order_props",
        "page_props",
        "path",
        "path_params",
        "query",
        "raw",
        "referer",
        "request",
        "request_order",
        "response_json",
        "route_template",
        "sc",
        "sc_new",
        "sc_set_by_app",
        "scheme",
        "script_root",
        "session_after",
        "session_before",
        "session_cookie_after",
        "skip",
        "status",
        "template_context",
        "url_path",
        "user",
        "user_agent",
        "view_kwargs",
        "view_result",
        "visitor_extra",
    )

    def __init__(
        self,
        method: str,
        scheme: str,
        host: str,
        path: str,
        query: str,
        script_root: str,
        ip: str | None,
        user_agent: str | None,
        referer: str | None,
        cookies: dict[str, str],
        raw: Any,
    ) -> None:
        self.method = method
        self.scheme = scheme
        self.host = host
        self.path = path
        self.query = query
        self.script_root = script_root
        self.ip = ip
        self.user_agent = user_agent
        self.referer = referer
        self.cookies = cookies
        self.raw = raw  # the scope or environ: what loaders and consent callables get
        # The path as requested, percent-encoded (``path`` is decoded); None: the same.
        self.url_path: str | None = None
        self.request: Any = None  # a framework request object, when an adapter has one
        self.sc: str | None = None
        self.sc_new = False
        self.sc_set_by_app = False  # the app's response sets the visitor cookie itself
        self.status = 0
        self.html = False
        self.route_template: str | None = None
        self.endpoint: Any = None
        self.endpoint_name: str | None = None
        self.path_params: dict[str, Any] | None = None
        self.declared: PageDeclaration | None = None
        self.view_kwargs: dict[str, Any] | None = None
        self.view_result: Any = None
        self.template_context: Any = None
        self.page_props: dict[str, Any] | None = None  # track.product(...) and friends
        self.order_props: dict[str, Any] | None = None
        self.identify_traits: dict[str, Any] | None = None
        self.visitor_extra: dict[str, str] | None = None
        self.custom_events: list[tuple[str, dict[str, Any]]] | None = None
        self.session_before: SessionSnapshot | None = None
        self.session_after: SessionSnapshot | None = None
        self.session_cookie_after: str | None = None  # raw value from a Set-Cookie
        self.user: Any = None
        # The shop's own cart (:mod:`cdptrack.observe.carts`), read into plain lines
        # before the request ends; the JSON body of a cart or order route's answer.
        self.cart_lines: dict[str, dict[str, Any]] | None = None
        self.response_json: bytes | None = None
        # The order object the adapter found on the request (Flask ``g.order``,
        # Starlette ``request.state.order``, Django ``request.order``), as plain data.
        self.request_order: dict[str, Any] | None = None
        self.cart_read = False  # the sources were asked once (found or not)
        self.skip = False
        self.finished = 0.0  # time.time() when the response was complete; declarations
        # made after that (a background task) are ignored, as the events may be built

    @property
    def url(self) -> str:
        query = f"?{self.query}" if self.query else ""
        return f"{self.scheme}://{self.host}{self.url_path or self.path}{query}"

    def __repr__(self) -> str:
        return f"<RequestState {self.method} {self.path} status={self.status}>"


current_state: ContextVar[RequestState | None] = ContextVar("cdptrack_request", default=None)

__all__ = [
    "GUARD_KEY",
    "STATE_KEY",
    "PageDeclaration",
    "RequestState",
    "SessionSnapshot",
    "current_state",
]
