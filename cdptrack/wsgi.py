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

from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any

from .capture import EventSink
from .config import Config
from .observe.core import Observer
from .observe.options import ObserveOptions
from .observe.session import fill_session_from_cookies, session_from_set_cookie
from .observe.state import GUARD_KEY, STATE_KEY, RequestState, current_state
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

        def start_tracked(status: str, headers: list[tuple[str, str]],
                          exc_info: ExcInfo | None = None) -> Callable[[bytes], object]:
            try:
                for name, value in headers:
                    lower = name.lower()
                    if lower == "content-type":
                        state.html = value[:9].lower() == "text/html"
                    elif lower == "set-cookie" and value.startswith(session_prefix):
                        state.session_cookie_after = session_from_set_cookie(value)
                cookie = observer.response_cookie(state, int(status[:3]))
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
        return _TrackedBody(body, observer, state)

    def _begin(self, environ: dict[str, Any]) -> RequestState | None:
        observer = self.observer
        try:
            get = environ.get
            headers: dict[str, str] = {name: environ[key] for name, key in WSGI_HEADERS
                                       if key in environ}
            script = get("SCRIPT_NAME", "")
            host = get("HTTP_HOST") or f"{get('SERVER_NAME', 'localhost')}:" \
                f"{get('SERVER_PORT', '80')}"
            state = observer.begin(
                get("REQUEST_METHOD", "GET"), get("wsgi.url_scheme", "http"), host,
                script + get("PATH_INFO", ""), get("QUERY_STRING", ""), script,
                get("REMOTE_ADDR"), headers, environ,
            )
            if state is not None:
                environ[STATE_KEY] = state
            return state
        except Exception:
            observer.error("begin")
            return None


class _TrackedBody:
    """The app's response iterable, unchanged, plus events built on ``close()``."""

    __slots__ = ("_body", "_closed", "_observer", "_state")

    def __init__(self, body: Iterable[bytes], observer: Observer, state: RequestState) -> None:
        self._body = body
        self._observer = observer
        self._state = state
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        if self._closed:  # servers and test clients may close twice; report once
            return
        self._closed = True
        close = getattr(self._body, "close", None)
        if close is not None:
            close()
        observer, state = self._observer, self._state
        try:
            fill_session_from_cookies(observer.options, state, "flask")
        except Exception:
            observer.error("finish")
            return
        observer.finish(state)


__all__ = ["CDPTrackWSGIMiddleware"]
