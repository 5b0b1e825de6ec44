"""WSGI middleware: the same observer for Flask, Django or any WSGI shop.

``start_response`` is wrapped to see the status and headers (and add the ``sc`` cookie
for a new visitor, the only change ever made to the response); the response iterable is
wrapped so its ``close()`` (which every WSGI server calls once the body has been sent,
streamed or not) builds the events.  Per-request state lives in the environ and in
closures; a guard key makes a second installation a no-op.  No request body is read.

Without a framework adapter the session is read from the signed session cookie when
``session_secret`` is given (Flask's cookie format by default), and the page kind from
the request path; the Flask adapter hands over the live session and ``url_rule``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any

from .capture import EventSink
from .config import Config
from .observe.answer import ANSWER_KINDS, keep_chunk
from .observe.core import Observer, plain_path, url_path
from .observe.options import ObserveOptions
from .observe.page import resolve_page
from .observe.session import fill_session_from_cookies, session_from_set_cookie
from .observe.state import GUARD_KEY, STATE_KEY, RequestState, current_state
from .observe.visitor import split_joined_cookie_fields
from .wiring import make_observer

ExcInfo = tuple[type[BaseException], BaseException, TracebackType]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

# The request headers cdptrack reads, and their WSGI environ keys.
WSGI_HEADERS = (
    ("cookie", "HTTP_COOKIE"), ("user-agent", "HTTP_USER_AGENT"), ("sec-gpc", "HTTP_SEC_GPC"),
    ("sec-purpose", "HTTP_SEC_PURPOSE"), ("purpose", "HTTP_PURPOSE"),
    ("x-purpose", "HTTP_X_PURPOSE"), ("x-moz", "HTTP_X_MOZ"), ("referer", "HTTP_REFERER"),
    ("x-forwarded-for", "HTTP_X_FORWARDED_FOR"),
    ("x-forwarded-proto", "HTTP_X_FORWARDED_PROTO"),
    ("x-forwarded-host", "HTTP_X_FORWARDED_HOST"),
)


def environ_headers(environ: Mapping[str, Any]) -> dict[str, str]:
    """The request headers cdptrack reads, by lower-case name, from a WSGI environ or
    Django's ``META``.  The ``Cookie`` header's comma-joined repeated fields (how WSGI
    servers pass them on) are split back into cookies (see
    :func:`~cdptrack.observe.visitor.split_joined_cookie_fields`)."""
    headers = {name: environ[key] for name, key in WSGI_HEADERS if key in environ}
    cookie = headers.get("cookie")
    if cookie is not None and "," in cookie:
        headers["cookie"] = split_joined_cookie_fields(cookie)
    return headers


class CDPTrackWSGIMiddleware:
    """``app.wsgi_app = CDPTrackWSGIMiddleware(app.wsgi_app, tracker, **options)``."""

    def __init__(
        self,
        app: WSGIApp,
        tracker: EventSink | None = None,
        *,
        config: Config | None = None,
        options: ObserveOptions | None = None,
        observer: Observer | None = None,
        **flat_options: Any,
    ) -> None:
        self.app = app
        if observer is None:
            observer, self.owns_tracker = make_observer(
                tracker, config=config, options=options, **flat_options)
        else:
            self.owns_tracker = False
        self.observer = observer

    @property
    def tracker(self) -> EventSink:
        return self.observer.tracker

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get(GUARD_KEY):
            return self.app(environ, start_response)
        environ[GUARD_KEY] = True
        state = self._begin(environ)
        if state is None:
            return self.app(environ, start_response)
        observer = self.observer
        session_prefix = observer.options.session_cookie_name + "="
        visitor_prefix = observer.options.cookie_name + "="

        def start_tracked(status: str, headers: list[tuple[str, str]],
                          exc_info: ExcInfo | None = None) -> Callable[[bytes], object]:
            try:
                json_answer = False
                for name, value in headers:
                    lower = name.lower()
                    if lower == "content-type":
                        state.html = value[:9].lower() == "text/html"
                        json_answer = value[:16].lower() == "application/json"
                    elif lower == "set-cookie":
                        if value.startswith(session_prefix):
                            state.session_cookie_after = session_from_set_cookie(value)
                        elif value.startswith(visitor_prefix):
                            observer.app_set_visitor(state, value)
                cookie = observer.response_cookie(state, int(status[:3]))
                if json_answer and 200 <= state.status < 300 and _keeps_answer(
                        observer, state):
                    state.response_json = b""  # kept (bounded) as the body is sent
                if cookie is not None:
                    headers = [*headers, ("Set-Cookie", cookie)]
            except Exception:
                observer.error("response_start")
            if exc_info is not None:
                return start_response(status, headers, exc_info)
            return start_response(status, headers)

        token = current_state.set(state)
        try:
            body = self.app(environ, start_tracked)
        finally:
            current_state.reset(token)
        return tracked_body(body, environ, observer, state)

    def _begin(self, environ: dict[str, Any]) -> RequestState | None:
        observer = self.observer
        try:
            get = environ.get
            headers = environ_headers(environ)
            script = get("SCRIPT_NAME", "")
            host = get("HTTP_HOST") or f"{get('SERVER_NAME', 'localhost')}:" \
                f"{get('SERVER_PORT', '80')}"
            path = script + get("PATH_INFO", "")
            requested = None
            if not plain_path(path):
                # PEP 3333: environ strings are the request's bytes read as latin-1.
                raw = path.encode("latin-1", "replace")
                requested = url_path(raw, get("RAW_URI") or get("REQUEST_URI"))
                script = script.encode("latin-1", "replace").decode("utf-8", "replace")
                path = raw.decode("utf-8", "replace")
            state = observer.begin(
                get("REQUEST_METHOD", "GET"), get("wsgi.url_scheme", "http"), host,
                path, get("QUERY_STRING", ""), script,
                get("REMOTE_ADDR"), headers, environ, requested,
            )
            if state is not None:
                environ[STATE_KEY] = state
            return state
        except Exception:
            observer.error("begin")
            return None


def _keeps_answer(observer: Observer, state: RequestState) -> bool:
    """Whether the JSON answer of this request is read (a product, cart, checkout or
    order route: :mod:`cdptrack.observe.answer`).  The Flask adapter has recorded the
    route by now (``after_request`` runs before ``start_response``); without an
    adapter the path is read."""
    found = resolve_page(state, observer.options)
    return found is not None and found.kind in ANSWER_KINDS


def _kept(chunks: Iterator[bytes], state: RequestState) -> Iterator[bytes]:
    """The chunks as they are, each also added to the kept JSON answer."""
    for chunk in chunks:
        keep_chunk(state, chunk)
        yield chunk


def tracked_body(body: Iterable[bytes], environ: dict[str, Any], observer: Observer,
                 state: RequestState) -> Iterable[bytes]:
    """The app's response iterable as the server must see it, with the events built
    when the server closes it.

    Servers look at what the app returned: wsgiref and waitress add ``Content-Length``
    to a one-item list (``len()``), and gunicorn, waitress and wsgiref send a
    ``wsgi.file_wrapper`` object with ``sendfile()`` (recognised by its type).  So a
    file wrapper is returned itself, with its ``close`` hooked; a list or tuple becomes
    a list (of the same items) with ``close()``; another iterable with ``len()`` keeps
    it; anything else is wrapped in a plain iterable with ``close()``.

    With a durable outbox (``observer.commit_first``) the events are built and
    committed before the last chunk is handed to the server (a file wrapper's before
    its first byte), so a worker killed after the client got the whole response
    cannot lose them.
    """
    durable = observer.commit_first
    wrapper = environ.get("wsgi.file_wrapper")
    if isinstance(wrapper, type) and isinstance(body, wrapper):
        if durable:
            _finish(observer, state)
            return body  # the server closes the file itself; events are in the outbox
        hooked = _hook_close(body, observer, state)
        if hooked is not None:
            return hooked
    kind = type(body)
    if kind is list or kind is tuple:
        return _TrackedList(body, observer, state, durable)
    if hasattr(body, "__len__"):
        return _TrackedSizedBody(body, observer, state, durable)
    return _TrackedBody(body, observer, state, durable)


def _hook_close(body: Any, observer: Observer, state: RequestState
                ) -> Iterable[bytes] | None:
    """``body`` with its own ``close`` replaced by one that also builds the events,
    or None when the object takes no attribute (then it is wrapped instead)."""
    original = getattr(body, "close", None)
    done = False

    def close() -> None:
        nonlocal done
        if done:
            return
        done = True
        try:
            if original is not None:
                original()
        finally:
            _finish(observer, state)

    try:
        body.close = close
    except (AttributeError, TypeError):
        return None
    return body  # type: ignore[no-any-return]


def _finish(observer: Observer, state: RequestState) -> None:
    try:
        fill_session_from_cookies(observer.options, state, "flask")
    except Exception:
        observer.error("finish")
        return
    observer.finish(state)


def _commit_first(chunks: Iterator[bytes], finish_once: Callable[[], None]
                  ) -> Iterator[bytes]:
    """The chunks, with the events built just before the last one is handed over."""
    try:
        held = next(chunks)
    except StopIteration:
        finish_once()
        return
    for chunk in chunks:
        yield held
        held = chunk
    finish_once()
    yield held


class _TrackedList(list):  # type: ignore[type-arg]
    """A list or tuple response: the same items (``len()`` and all), plus ``close()``."""

    __slots__ = ("_closed", "_durable", "_finished", "_observer", "_state")

    def __init__(self, body: Iterable[bytes], observer: Observer, state: RequestState,
                 durable: bool = False) -> None:
        super().__init__(body)
        self._observer = observer
        self._state = state
        self._durable = durable
        self._closed = self._finished = False

    def __iter__(self) -> Iterator[bytes]:
        if self._durable:
            return _commit_first(list.__iter__(self), self.finish_once)
        return list.__iter__(self)

    def _keep_answer(self) -> None:
        state = self._state
        if state.response_json is not None:  # a JSON answer wanted: the body is here
            for chunk in list.__iter__(self):
                keep_chunk(state, chunk)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.finish_once()

    def finish_once(self) -> None:
        """Build the events once: before the last chunk (durable outbox) or on close."""
        if not self._finished:
            self._finished = True
            self._keep_answer()
            _finish(self._observer, self._state)


class _TrackedBody:
    """The app's response iterable, unchanged, plus events built on ``close()``."""

    __slots__ = ("_body", "_closed", "_durable", "_finished", "_observer", "_state")

    def __init__(self, body: Iterable[bytes], observer: Observer, state: RequestState,
                 durable: bool = False) -> None:
        self._body = body
        self._observer = observer
        self._state = state
        self._durable = durable
        self._closed = self._finished = False

    def __iter__(self) -> Iterator[bytes]:
        chunks = iter(self._body)
        if self._state.response_json is not None:  # a JSON answer wanted: copy it
            chunks = _kept(chunks, self._state)
        if self._durable:
            return _commit_first(chunks, self.finish_once)
        return chunks

    def close(self) -> None:
        if self._closed:  # servers and test clients may close twice; report once
            return
        self._closed = True
        close = getattr(self._body, "close", None)
        try:
            if close is not None:
                close()
        finally:
            self.finish_once()

    def finish_once(self) -> None:
        """Build the events once: before the last chunk (durable outbox) or on close."""
        if not self._finished:
            self._finished = True
            _finish(self._observer, self._state)


class _TrackedSizedBody(_TrackedBody):
    """An iterable response with ``len()``: servers may read it, so it keeps it."""

    __slots__ = ()

    def __len__(self) -> int:
        return len(self._body)  # type: ignore[arg-type]


__all__ = ["CDPTrackWSGIMiddleware", "environ_headers"]
