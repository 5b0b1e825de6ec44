"""One finished request, handed to the tracker to become events on its sender thread.

On the request path the middleware only records (visitor, route, status, declarations,
cheap session copies); :class:`RequestEvents` carries that record to the tracker's
``capture_deferred`` and, called there, runs the same
:func:`~cdptrack.observe.build.build_events` the direct path runs, so both give the same
events.

A record must not change after it was handed over, and must not need the request:
:func:`detach` drops the references to the live request, environ or scope, reduces the
template context to the entries page inference reads, resolves the signed-in user to plain
identity fields and keeps only the view argument that holds the page key.

Shop objects that may not be readable later or from another thread (ORM rows, objects
whose properties need Flask's app context) are read here, while the request is live:
the template context's ``product``, ``products``, ``results`` and ``category`` and a
view's return value are reduced to plain data (:func:`reduce_page_objects`).
:func:`detachable` says no (and the events are then built at once, as before) only for
what is not reduced: an order object, or declarations holding such objects.
"""

from __future__ import annotations

import enum
import os
import threading
from collections import deque
from collections.abc import Callable, Mapping
from datetime import date, time, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any
from uuid import UUID

from ..capture import DeferredBuild
from ..events import Event
from .fields import read_field
from .products import ProductFields, category_fields, product_list, product_snapshot
from .state import RequestState
from .visitor import identity_from_user

# Builds a finished request's events: ``(state, identity or user) -> events`` (the
# observer's ``events_in_sender`` or ``events_of``; counting and de-duplication stay
# with it).
EventBuilder = Callable[[RequestState, Any], list[Event]]

# Template context entries page inference reads (:func:`cdptrack.observe.page._context`).
CONTEXT_KEYS = ("product", "products", "category", "results", "order")

_PLAIN_TYPES: dict[type, bool] = dict.fromkeys(
    (str, int, float, bool, type(None), bytes), True)
# Immutable values that read the same later on any thread (``datetime`` is a ``date``;
# an ``Enum`` member's class is a subclass of ``Enum``): what shops keep money, keys and
# times in, plain data as much as a number is.
_VALUE_TYPES = (Decimal, UUID, date, time, timedelta, Fraction, enum.Enum)
_SCALAR_TYPES = frozenset((str, int, float, bool, type(None)))
_DEPTH = 3


def _plain_type(kind: type) -> bool:
    known = _PLAIN_TYPES.get(kind)
    if known is None:
        known = issubclass(kind, _VALUE_TYPES) or (any(
            hasattr(kind, name) for name in
            ("__dataclass_fields__", "model_fields", "__pydantic_fields__")
        ) and not hasattr(kind, "_sa_class_manager"))  # a SQLModel table row
        if len(_PLAIN_TYPES) < 512:
            _PLAIN_TYPES[kind] = known
    return known


def _plain(value: Any, depth: int = _DEPTH) -> bool:
    """Plain data to ``depth`` levels: dict values all, a list by its first item (lists
    of products are uniform; reading every item would cost what deferring saves)."""
    kind = type(value)
    if kind is dict:
        if depth == 0:
            return True
        for inner in value.values():
            if type(inner) not in _SCALAR_TYPES and not _plain(inner, depth - 1):
                return False  # (scalars, most values, are checked without a call)
        return True
    if kind is list or kind is tuple:
        return depth == 0 or not value or _plain(value[0], depth - 1)
    return _plain_type(kind)


# Template context entries reduced to plain data before the build leaves the request.
REDUCED_KEYS = ("product", "products", "results", "category")


def detachable(state: RequestState) -> bool:
    """Whether what the view left, after :func:`reduce_page_objects`, can be read later
    on another thread."""
    result = state.view_result
    if result is not None and not _plain(result):
        return False
    ctx = state.template_context
    if ctx is not None:
        if not isinstance(ctx, Mapping):
            return True  # the page decision ignores it
        for key in CONTEXT_KEYS:
            if key in ctx and not _plain(ctx[key]):
                return False
    page, order, custom = state.page_props, state.order_props, state.custom_events
    if state.request_order is not None and not _plain(state.request_order):
        return False
    return (page is None or _plain(page)) and (order is None or _plain(order)) and (
        custom is None or all(_plain(p) for _, p in custom))


def reduce_page_objects(state: RequestState, fields: ProductFields | None = None) -> None:
    """Read the page's shop objects into plain data now, while the request is live
    (see the module docstring).  Plain data is left as it is; never raises."""
    ctx = state.template_context
    if isinstance(ctx, Mapping) and any(
            key in ctx and not _plain(ctx[key]) for key in REDUCED_KEYS):
        reduced = dict(ctx)
        for key in REDUCED_KEYS:
            if key in reduced and not _plain(reduced[key]):
                reduced[key] = reduce_object(key, reduced[key], fields)
        state.template_context = reduced
    result = state.view_result
    if isinstance(result, (list, tuple)) and not _plain(result):
        state.view_result = product_list(result, fields=fields)  # a list of ORM rows
        return
    if result is not None and not _plain(result) and read_field(result, "order_id") is None:
        snapshot = product_snapshot(result, fields)
        out: dict[str, Any] = dict(snapshot) if isinstance(snapshot, dict) else {}
        for key in REDUCED_KEYS:
            inner = read_field(result, key)
            if inner is not None:
                out[key] = reduce_object(key, inner, fields)
        state.view_result = out or None


def reduce_object(key: str, value: Any, fields: ProductFields | None = None) -> Any:
    """One page object as plain data: a product as its line and ids, a list (queryset,
    page) of products as lines, a category as ``{"name", "id"}``."""
    if _plain(value):
        return value
    if key == "product":
        return product_snapshot(value, fields)
    if key == "category":
        found = category_fields(value)
        return {"name": found.get("category"), "id": found.get("category_id")} \
            if found else None
    return product_list(value, fields=fields)


def detach(state: RequestState, user: Any) -> dict[str, str] | None:
    """Cut ``state`` loose from the request (see the module docstring); returns the
    user's identity fields (``build_events`` reads a dict of them like a user)."""
    state.raw = None
    state.request = None
    state.user = None
    ctx = state.template_context
    if isinstance(ctx, Mapping):
        state.template_context = {k: ctx[k] for k in CONTEXT_KEYS if k in ctx} or None
    kwargs = state.view_kwargs
    if kwargs:
        key = state.declared.key if state.declared is not None else None
        state.view_kwargs = {key: kwargs[key]} if key is not None and key in kwargs \
            else None
    if state.custom_events:
        state.custom_events = list(state.custom_events)
    return identity_from_user(user) if user is not None else None


class BuildOrder:
    """Runs one observer's builds in the order their requests finished, whichever
    thread runs them.

    Builds read and update what the observer remembers per visitor (the last cart, the
    orders already reported, the users already identified): a build that overtook an
    earlier request's build would compare a cart with one that is not yet remembered.
    Most builds run on the tracker's sender thread in hand-over order; a request whose
    objects must be read on its own thread is built there (:meth:`Observer.finish
    <cdptrack.observe.core.Observer.finish>`).  Each build enters the order when its
    request finishes; running one first runs every build that entered before it and has
    not run yet (their events are kept for whoever hands them to the tracker), one build
    at a time.  Entering is a ``deque.append``: no lock on the request path.
    """

    __slots__ = ("_lock", "_pid", "_waiting")

    def __init__(self) -> None:
        self._pid = os.getpid()
        self._waiting: deque[RequestEvents] = deque()
        self._lock = threading.Lock()

    def _forked(self) -> None:
        # A child process (gunicorn --preload) starts with no builds and a free lock;
        # the parent's builds are the parent's.
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._waiting = deque()
            self._lock = threading.Lock()

    def enter(self, job: RequestEvents) -> None:
        """``job``'s request finished: it runs after every build entered before it."""
        if self._pid != os.getpid():
            self._forked()
        self._waiting.append(job)

    def run_through(self, job: RequestEvents) -> None:
        """Run the builds entered before ``job`` that have not run, then ``job``."""
        if self._pid != os.getpid():
            self._forked()
        with self._lock:
            waiting = self._waiting
            while not job.done:
                try:
                    first = waiting.popleft()
                except IndexError:  # never entered (made before a fork): on its own
                    first = job
                first.run()

    def leave(self, job: RequestEvents) -> None:
        """``job`` will never run (its tracker threw it away): later builds stop
        waiting for it, and it is no longer kept."""
        if self._pid != os.getpid():
            self._forked()
        with self._lock:
            waiting = self._waiting
            if waiting and waiting[0] is job:
                waiting.popleft()  # the usual case: dropped in hand-over order
            elif job in waiting:
                waiting.remove(job)

    def __len__(self) -> int:
        return len(self._waiting)


class RequestEvents(DeferredBuild):
    """The build of one request's events (see the module docstring), run in its turn
    (:class:`BuildOrder`) when ``order`` is given."""

    __slots__ = ("_builder", "_error", "_events", "_identity", "_order", "_state", "_what",
                 "done")

    def __init__(self, builder: EventBuilder, state: RequestState,
                 identity: Any, order: BuildOrder | None = None) -> None:
        self._builder = builder
        self._state: RequestState | None = state
        self._what = (state.method, state.path)
        self._identity = identity
        self._order = order
        self._events: list[Event] = []
        self._error: Exception | None = None
        self.done = False
        if order is not None:
            order.enter(self)

    def run(self) -> None:
        """Build the events now and keep them (or the error) for :meth:`build`."""
        if self.done:
            return
        state, self._state = self._state, None
        try:
            assert state is not None
            self._events = self._builder(state, self._identity)
        except Exception as exc:
            self._error = exc
        finally:
            self.done = True
            self._identity = None

    def discard(self) -> None:
        """Never build: for an ``EventSink`` that throws requests' work away (a dry run,
        a benchmark of the request path).  Without it the build order would keep the
        job, and every later one, for a build that never comes."""
        if self.done:
            return
        self.done = True
        self._state = self._identity = None
        if self._order is not None:
            self._order.leave(self)

    def build(self) -> list[Event]:
        """The request's events, built in their turn; raises what the build raised."""
        if self._order is not None:
            self._order.run_through(self)
        else:
            self.run()
        if self._error is not None:
            raise self._error
        return self._events

    @property
    def label(self) -> str:
        method, path = self._what
        return f"events of {method} {path}"


__all__ = ["CONTEXT_KEYS", "BuildOrder", "EventBuilder", "RequestEvents", "detach", "detachable",
           "reduce_object", "reduce_page_objects"]
