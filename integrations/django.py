"""Django adapter: ``cdptrack.integrations.django.CDPTrackMiddleware`` in ``MIDDLEWARE``.

Add it after ``SessionMiddleware`` and ``AuthenticationMiddleware``::

    MIDDLEWARE = [
        ...,
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        ...,
        "cdptrack.integrations.django.CDPTrackMiddleware",
    ]
    CDPTRACK = {"yespo_site_id": "..."}

and, so that ``manage.py check`` reports a misspelt ``CDPTRACK`` key (with "did you
mean"), its app config::

    INSTALLED_APPS = [..., "cdptrack.integrations.django.CDPTrackConfig"]

Settings: the ``CDPTRACK`` dict (keys are :class:`cdptrack.Config` and
:class:`~cdptrack.observe.options.ObserveOptions` names, plus ``tracker`` (a ready
tracker, any object with ``capture(event)``) and ``config`` (a ready ``Config``)) wins
over the ``CDPTRACK_*`` environment variables.  One tracker per process is made lazily
from them, the first time a middleware instance is built; the tracker starts its sender
on first use (so it is safe under a pre-forking server) and flushes, bounded, at exit.
Changing ``CDPTRACK`` with ``override_settings`` builds a fresh one.

The middleware hands the core what only Django knows: the live ``request.session``
before and after the view (read without marking it accessed, so no ``Vary: Cookie``
is added), ``request.resolver_match`` (route template, ``url_name``, captured kwargs;
routes are never matched again), the signed-in ``request.user`` (or what the
``user_loader`` option returns for the request) and the context of the templates the
view renders: ``TemplateResponse.context_data``, and the context of a plain
``render(request, "product.html", {"product": p})``, seen by wrapping the Django
template backends' ``Template.render`` (the Django template language and Jinja2's
``django.template.backends.jinja2``) once per process when the middleware is first
built (the view is not changed).  Objects in that context (ORM
rows) are read into plain data in the request's thread when the response is closed.

A ``catalogue`` loader runs in the request's thread too, when the response is closed
(events are then built there, not on the sender thread), so a loader that uses the ORM
works: Django's connections are per thread, and the ORM refuses to run inside the
sender's event loop.  ``"defer_events": True`` in ``CDPTRACK`` moves it back to the
sender thread (for a loader that needs no database).

It adds the ``sc`` cookie for a new visitor (the only change made to a response) and
hands the request to the core in the response's ``close()``, which the WSGI server (or
Django's ASGI handler) calls once the body has been sent, after the last chunk of a
streaming response too.  Errors inside cdptrack are logged and counted, never raised
into the request.

Under an outer :class:`cdptrack.wsgi.CDPTrackWSGIMiddleware` (or the ASGI one), the
request already has its state: this middleware then only fills in the Django facts and
leaves the cookie and the events to the outer one.
"""

from __future__ import annotations

import difflib
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.http import FileResponse, HttpRequest, HttpResponseBase
from django.utils.functional import LazyObject, empty

from cdptrack.capture import EventSink
from cdptrack.config import Config
from cdptrack.observe.carts import CART_OBJECT_NAMES
from cdptrack.observe.core import Observer, plain_path, url_path
from cdptrack.observe.declare import ignored
from cdptrack.observe.deferred import CONTEXT_KEYS
from cdptrack.observe.fields import raw_get
from cdptrack.observe.options import (
    CONFIG_NAMES,
    OPTION_NAMES,
    ObserveOptions,
    split_options,
)
from cdptrack.observe.page import regex_template
from cdptrack.observe.routes import AppRoutes, Route, sort_methods
from cdptrack.observe.session import snapshot
from cdptrack.observe.state import STATE_KEY, RequestState, SessionSnapshot, current_state
from cdptrack.observe.visitor import identity_from_user
from cdptrack.wiring import make_observer
from cdptrack.wsgi import environ_headers

logger = logging.getLogger("cdptrack.observe")

SETTING = "CDPTRACK"
# django.contrib.auth.SESSION_KEY, named here so the adapter works without contrib.auth.
AUTH_SESSION_KEY = "_auth_user_id"
_MIDDLEWARE_PATH = "cdptrack.integrations.django.CDPTrackMiddleware"
_NEEDED_BEFORE = (
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
)


# --- the process-wide tracker ---------------------------------------------------------


@dataclass(frozen=True)
class DjangoTracking:
    """The process's observer and tracker, as built from settings."""

    observer: Observer
    owns_tracker: bool  # made here from settings (not given as ``CDPTRACK["tracker"]``)

    @property
    def tracker(self) -> EventSink:
        return self.observer.tracker

    def stats(self) -> dict[str, int]:
        return self.observer.stats()


_lock = threading.Lock()
_tracking: DjangoTracking | None = None


def tracking() -> DjangoTracking:
    """The process's tracking, built from settings on first use."""
    global _tracking
    found = _tracking
    if found is None:
        with _lock:
            if _tracking is None:
                _tracking = tracking_from_settings()
            found = _tracking
    return found


def get_tracker() -> EventSink:
    """The process's tracker (``flush(timeout)``, ``stats()`` on a real ``Tracker``)."""
    return tracking().tracker


def reset() -> None:
    """Forget the process's tracking; the next request builds it again from settings.
    A tracker made here is not stopped: it still flushes, bounded, at exit."""
    global _tracking
    with _lock:
        _tracking = None


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in (SETTING, "SESSION_COOKIE_NAME", "STATIC_URL", "MEDIA_URL"):
        reset()


setting_changed.connect(_on_setting_changed, dispatch_uid="cdptrack.integrations.django")


def tracking_from_settings() -> DjangoTracking:
    """Read ``settings.CDPTRACK`` over the ``CDPTRACK_*`` environment variables."""
    raw = getattr(settings, SETTING, None) or {}
    if not isinstance(raw, Mapping):
        raise ImproperlyConfigured(f"settings.{SETTING} must be a dict of cdptrack options")
    values = dict(raw)
    tracker: EventSink | None = values.pop("tracker", None)
    config: Config | None = values.pop("config", None)
    config_kw, observe_kw = split_options(values)
    env = {k: v for k, v in os.environ.items() if k.startswith("CDPTRACK_")}
    if "session_cookie_name" not in observe_kw and "CDPTRACK_SESSION_COOKIE_NAME" not in env:
        observe_kw["session_cookie_name"] = getattr(settings, "SESSION_COOKIE_NAME", "sessionid")
    catalogue_in_request = "defer_events" not in observe_kw \
        and "CDPTRACK_DEFER_EVENTS" not in env
    options = ObserveOptions.from_mapping(env, **observe_kw)
    if options.catalogue is not None and catalogue_in_request:
        options = options.with_overrides(defer_events=False)  # see the module docstring
    served = tuple(
        url for url in (getattr(settings, "STATIC_URL", None), getattr(settings, "MEDIA_URL", None))
        if isinstance(url, str) and url.startswith("/") and url != "/"
        and url not in options.static_prefixes and url not in options.ignore_paths)
    if served:
        options = options.with_overrides(ignore_paths=options.ignore_paths + served)
    if tracker is None and config is None:
        config = Config.from_mapping(env, **config_kw)
        config_kw = {}
    observer, owns = make_observer(tracker, config=config, options=options, **config_kw)
    return DjangoTracking(observer, owns)


# --- the system check -----------------------------------------------------------------

# Keys of settings.CDPTRACK besides the Config and ObserveOptions names.
_EXTRA_KEYS = frozenset({"tracker", "config"})


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``manage.py check``: every ``CDPTRACK`` key is a cdptrack option (a misspelt one is
    an error that suggests the closest name) and the values make a working configuration.
    Registered when this module is imported: by the middleware, or at start-up through
    :class:`CDPTrackConfig` in ``INSTALLED_APPS``."""
    raw = getattr(settings, SETTING, None) or {}
    if not isinstance(raw, Mapping):
        return [checks.Error(f"settings.{SETTING} must be a dict of cdptrack options",
                             id="cdptrack.E001")]
    known = sorted(OPTION_NAMES | CONFIG_NAMES | _EXTRA_KEYS)
    errors: list[checks.CheckMessage] = []
    for name in raw:
        if name in known:
            continue
        close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.6)
        errors.append(checks.Error(
            f"settings.{SETTING}[{name!r}] is not a cdptrack option",
            hint=(f"did you mean {close[0]!r}?" if close
                  else "see the options in cdptrack's README"),
            id="cdptrack.E002"))
    if errors:
        return errors
    values = dict(raw)
    given = values.pop("tracker", None) is not None or values.pop("config", None) is not None
    env = {k: v for k, v in os.environ.items() if k.startswith("CDPTRACK_")}
    try:  # what the first request would raise, said now; nothing is started
        config_kw, observe_kw = split_options(values)
        ObserveOptions.from_mapping(env, **observe_kw)
        if not given:
            Config.from_mapping(env, **config_kw)
    except Exception as error:
        errors.append(checks.Error(f"settings.{SETTING} cannot work: {error}",
                                   id="cdptrack.E003"))
    return errors


checks.register(check_settings, "cdptrack")


class CDPTrackConfig(AppConfig):
    """Put ``"cdptrack.integrations.django.CDPTrackConfig"`` in ``INSTALLED_APPS`` so that
    ``manage.py check`` (and ``runserver``) check the ``CDPTRACK`` setting."""

    name = "cdptrack.integrations"
    label = "cdptrack"
    verbose_name = "cdptrack"


def asgi_application(application: Any = None) -> Any:
    """Django's ASGI application with a lifespan that starts the process's tracker and
    drains it (bounded by ``flush_at_exit``) after the server's graceful shutdown.
    Django's own handler refuses lifespan scopes, so without this the tracker is
    drained by cdptrack's signal and exit hooks instead.  In ``asgi.py``::

        from cdptrack.integrations.django import asgi_application
        application = asgi_application()   # or asgi_application(get_asgi_application())
    """
    from cdptrack.asgi import TrackerLifespan

    if application is None:
        from django.core.asgi import get_asgi_application

        application = get_asgi_application()
    return TrackerLifespan(application, get_tracker)


# --- the middleware -------------------------------------------------------------------


class CDPTrackMiddleware:
    """Turns each Django request into canonical events, after its response is sent.

    A sync middleware: under ASGI Django runs it in a thread, as it does
    ``SessionMiddleware``, so session backends that query a database work unchanged.
    """

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response
        tracking()  # a settings mistake shows at start-up, not in the first request
        _warn_about_order()
        record_template_contexts()

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        started = _begin(request)
        if started is None:
            return self.get_response(request)
        observer, state, owned = started
        token = current_state.set(state)
        try:
            response = self.get_response(request)
        finally:
            current_state.reset(token)
        _complete(observer, state, owned, request, response)
        return response


def _begin(request: HttpRequest) -> tuple[Observer, RequestState, bool] | None:
    """The request's state (``owned`` unless an outer cdptrack middleware made it),
    with the session as it was before the view; ``None`` when it is not tracked."""
    try:
        observer = tracking().observer
    except Exception:
        logger.warning("cdptrack: settings.%s cannot be used; request not tracked", SETTING,
                       exc_info=True)
        return None
    try:
        meta = request.META
        outer = meta.get(STATE_KEY)
        if outer is None:
            scope = getattr(request, "scope", None)
            outer = scope.get(STATE_KEY) if isinstance(scope, dict) else None
        if isinstance(outer, RequestState):
            state, owned = outer, False
        else:
            found = _begin_state(observer, request)
            if found is None:
                return None
            state, owned = found, True
            meta[STATE_KEY] = state
        state.request = request
        session = getattr(request, "session", None)
        if session is not None:
            state.session_before = _read_session(session, observer.options)
        return observer, state, owned
    except Exception:
        observer.error("django_begin")
        return None


def _begin_state(observer: Observer, request: HttpRequest) -> RequestState | None:
    meta = request.META
    headers = environ_headers(meta)
    try:
        host = request.get_host()  # honours USE_X_FORWARDED_HOST and ALLOWED_HOSTS
    except Exception:
        host = meta.get("HTTP_HOST") or \
            f"{meta.get('SERVER_NAME', 'localhost')}:{meta.get('SERVER_PORT', '80')}"
    path, path_info = request.path, request.path_info
    script = path[:-len(path_info)] if path_info and path.endswith(path_info) else ""
    requested = None
    if not plain_path(path):  # Django decoded the path (UTF-8): report it as requested
        requested = url_path(path.encode("utf-8", "surrogateescape"),
                             meta.get("RAW_URI") or meta.get("REQUEST_URI"))
    return observer.begin(
        request.method or "GET", request.scheme or "http", host, path,
        meta.get("QUERY_STRING", ""), script, meta.get("REMOTE_ADDR"), headers, meta,
        requested,
    )


def _complete(observer: Observer, state: RequestState, owned: bool, request: HttpRequest,
              response: HttpResponseBase) -> None:
    """After the view: route, session, user and template context; for an owned state
    also the ``sc`` cookie and the events, built when the response is closed."""
    try:
        read_resolver_match(state, request)
        session = getattr(request, "session", None)
        if session is not None and state.session_before is not None:
            state.session_after = _session_after(session, state.session_before,
                                                 observer.options)
        _read_user(observer, state, request)
        context = getattr(response, "context_data", None)
        if isinstance(context, Mapping):
            state.template_context = context if state.template_context is None else {
                **context, **state.template_context}
        if response.status_code < 400:
            observer.read_cart(state, _cart_objects(request))
            observer.read_order(state, request.__dict__.get("order"))
        if not owned:
            return
        state.html = str(response.get("Content-Type", ""))[:9].lower() == "text/html"
        name = observer.options.cookie_name
        if name in response.cookies:
            state.status = response.status_code  # the view set the cookie itself: its
            observer.app_set_visitor(state, f"{name}={response.cookies[name].value}")
        else:
            cookie = observer.response_cookie(state, response.status_code)
            if cookie is not None:
                response.cookies.load(cookie)
        if response.streaming and not isinstance(response, FileResponse):
            _carry_state_into_stream(response, state)
        _finish_on_close(observer, state, response)
    except Exception:
        observer.error("django_response")


def record_template_contexts() -> None:
    """Wrap ``Template.render`` of Django's two template backends (the Django template
    language and, when Jinja2 is installed, ``django.template.backends.jinja2``), once
    per process, so a tracked request keeps the context of the templates its view
    renders through ``render()``, the first render of a name winning; what the template
    renders is unchanged."""
    from django.template.backends.django import Template

    _wrap_render(Template)
    try:
        from django.template.backends.jinja2 import Template as Jinja2Template
    except ImportError:  # Jinja2 is not installed: no Jinja2 backend to see
        return
    _wrap_render(Jinja2Template)


def _wrap_render(template_class: Any) -> None:
    original = template_class.render
    if getattr(original, "__cdptrack__", False):
        return

    def render(self: Any, context: Any = None, request: Any = None) -> Any:
        if isinstance(context, Mapping):
            # Picked before rendering: the Jinja2 backend adds the request, CSRF
            # token and context processors' values to the very dict it is given.
            picked = {k: context[k] for k in CONTEXT_KEYS if k in context}
        else:
            picked = {}
        html = original(self, context, request)
        if picked:
            state = current_state.get()
            if state is not None and not state.finished:
                state.template_context = picked if state.template_context is None \
                    else {**picked, **state.template_context}
        return html

    render.__cdptrack__ = True  # type: ignore[attr-defined]
    template_class.render = render


def _cart_objects(request: HttpRequest) -> list[Any]:
    """``request.basket`` / ``request.cart`` (Oscar's basket middleware, and shops like
    it), read now, while the view's database connection is live.  A lazy basket the
    view never evaluated is left alone: it did not change, and reading it would cost a
    query."""
    found: list[Any] = []
    for name in CART_OBJECT_NAMES:
        obj = request.__dict__.get(name)
        if obj is None:
            continue
        if isinstance(obj, LazyObject) and obj._wrapped is empty:
            continue
        found.append(obj)
    return found


def _finish_on_close(observer: Observer, state: RequestState,
                     response: HttpResponseBase) -> None:
    # Every server calls close() once the body is out (Django's ASGI handler too, and
    # the WSGI handler hands it to wsgi.file_wrapper); the events are built first, while
    # the request's database connection is still open for a catalogue loader.
    close = response.close
    finished = False

    def close_and_track() -> None:
        nonlocal finished
        if not finished:
            finished = True
            observer.finish(state)  # never raises
        close()

    setattr(response, "close", close_and_track)  # noqa: B010 (an instance override)


def _carry_state_into_stream(response: Any, state: RequestState) -> None:
    """Let ``track.*`` calls inside a streamed body find the request: the server reads
    the body after the middleware returned, outside the context it set."""
    if getattr(response, "is_async", False):
        response.streaming_content = _async_chunks(response.streaming_content, state)
    else:
        response.streaming_content = _chunks(response.streaming_content, state)


def _chunks(content: Iterable[bytes], state: RequestState) -> Iterator[bytes]:
    chunks = iter(content)
    while True:
        token = current_state.set(state)
        try:
            chunk = next(chunks)
        except StopIteration:
            return
        finally:
            current_state.reset(token)
        yield chunk


async def _async_chunks(content: AsyncIterator[bytes],
                        state: RequestState) -> AsyncIterator[bytes]:
    chunks = aiter(content)
    while True:
        token = current_state.set(state)
        try:
            chunk = await anext(chunks)
        except StopAsyncIteration:
            return
        finally:
            current_state.reset(token)
        yield chunk


# --- what only Django knows -------------------------------------------------------------


def read_resolver_match(state: RequestState, request: HttpRequest) -> None:
    """The route Django matched: template, ``url_name`` and captured kwargs; the view
    function (or the ``view_class`` of an ``as_view()`` function) carries any ``@track``
    declaration."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        return
    route = getattr(match, "route", None)
    if isinstance(route, str):
        state.route_template = state.script_root.rstrip("/") + "/" + route_template(route)
    func = match.func
    name = getattr(func, "__name__", None)
    state.endpoint_name = match.url_name or (name if name not in (None, "view") else None)
    params = getattr(match, "captured_kwargs", None)  # without path(..., kwargs={...})
    state.path_params = dict(params if params is not None else match.kwargs)
    state.endpoint = func  # an as_view() function: its view_class carries the declaration
    if ignored(func):
        state.skip = True  # @track.ignore() on the view class: no events, no cookie


def app_routes(urlconf: str | None = None) -> AppRoutes:
    """The project's routes as ``cdptrack routes`` shows them: every ``path()`` and
    ``re_path()`` of the URLconf (``settings.ROOT_URLCONF`` by default), through nested
    ``include()`` and ``i18n_patterns`` (in the default language), each as the route
    Django reports at request time (``ResolverMatch.route``, joined the same way) with
    a leading ``/``.  Methods are a class-based view's handlers; a function view's are
    not known.  The observer is the one the middleware uses (built from settings),
    ``None`` when the middleware is not in ``MIDDLEWARE``."""
    from django.urls import URLPattern, URLResolver, get_resolver

    join = URLResolver._join_route
    routes: list[Route] = []

    def walk(patterns: Any, prefix: str) -> None:
        for entry in patterns:
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns, join(prefix, str(entry.pattern)))
            elif isinstance(entry, URLPattern):
                route = join(prefix, str(entry.pattern))
                func = entry.callback
                name = getattr(func, "__name__", None)
                view_class = getattr(func, "view_class", None)
                methods: tuple[str, ...] | None = None
                if view_class is not None:
                    methods = sort_methods(m for m in getattr(
                        view_class, "http_method_names", ()) if hasattr(view_class, m))
                routes.append(Route(
                    "/" + route, methods, func,
                    entry.name or (name if name not in (None, "view") else None),
                    "/" + route_template(route)))

    walk(get_resolver(urlconf).url_patterns, "")
    installed = _MIDDLEWARE_PATH in [str(n) for n in getattr(settings, "MIDDLEWARE", ())]
    notes = () if installed else (
        f"{_MIDDLEWARE_PATH} is not in settings.MIDDLEWARE: nothing is tracked yet; the "
        "table shows what the settings would do",)
    return AppRoutes("django", routes, tracking().observer, notes, installed)


def route_template(route: str) -> str:
    """``re_path`` patterns read like ``path`` ones: ``^item/(?P<pk>\\d+)/$`` becomes
    ``item/{pk}/``; ``path`` routes (``item/<int:pk>/``) are returned unchanged."""
    if not (route.startswith("^") or route.endswith("$") or "(?P<" in route):
        return route
    return regex_template(route)


def _read_session(session: Any, options: ObserveOptions) -> SessionSnapshot:
    """A snapshot of a Django session, plus the signed-in user's id, read without
    marking the session accessed (which would add ``Vary: Cookie`` to the response)."""
    accessed = getattr(session, "accessed", None)
    try:
        found = snapshot(session, options)
        user_id = raw_get(session, AUTH_SESSION_KEY)
    finally:
        if accessed is not None:
            session.accessed = accessed
    if user_id is not None:
        if found.identity is None:
            found.identity = {}
        found.identity.setdefault("user_id", str(user_id))
    return found


def _session_after(session: Any, before: SessionSnapshot,
                   options: ObserveOptions) -> SessionSnapshot:
    # A session the view did not modify is not saved (unless SESSION_SAVE_EVERY_REQUEST):
    # it is what it was, whatever the view did to the objects inside it.
    if getattr(session, "modified", True) or getattr(settings, "SESSION_SAVE_EVERY_REQUEST",
                                                     False):
        return _read_session(session, options)
    return SessionSnapshot(cart=before.cart, cart_id=before.cart_id,
                           identity=dict(before.identity or {}), order=before.order)


def _read_user(observer: Observer, state: RequestState, request: HttpRequest) -> None:
    """The signed-in user (``user_loader(request)`` when configured, else ``request.user``)
    as ``state.user``, its fields merged into the session identity after the view, and
    before it too when the session's identity did not change: only a sign-in (a new
    ``_auth_user_id``, say) reads as a new identity and sends ``identify``."""
    if state.user is not None:  # track.user(...) in the view
        return
    after, before = state.session_after, state.session_before
    loader = observer.options.user_loader
    session = getattr(request, "session", None)
    accessed = getattr(session, "accessed", None)
    try:
        if loader is not None:
            try:
                user = loader(request)
            except Exception:
                observer.error("user_loader")
                return
        else:
            user = request.__dict__.get("user")
            if isinstance(user, LazyObject) and after is not None and not (
                    after.identity or {}).get("user_id"):
                return  # AuthenticationMiddleware's lazy user, no one signed in: no lookup
        if user is None or not getattr(user, "is_authenticated", True):
            return
        fields = identity_from_user(user)
    finally:
        if accessed is not None:
            session.accessed = accessed  # type: ignore[union-attr]
    state.user = user
    if after is None or before is None or not fields:
        return
    unchanged = (before.identity or {}) == (after.identity or {})
    after.identity = {**fields, **(after.identity or {})}
    if unchanged:
        before.identity = {**fields, **(before.identity or {})}


def _warn_about_order() -> None:
    names = [str(n) for n in getattr(settings, "MIDDLEWARE", None) or ()]
    if _MIDDLEWARE_PATH not in names:
        return
    mine = names.index(_MIDDLEWARE_PATH)
    for needed in _NEEDED_BEFORE:
        if needed in names and names.index(needed) > mine:
            logger.warning("cdptrack: put %s after %s in MIDDLEWARE, or carts and sign-ins "
                           "are not seen", _MIDDLEWARE_PATH, needed)


__all__ = [
    "CDPTrackConfig",
    "CDPTrackMiddleware",
    "DjangoTracking",
    "app_routes",
    "asgi_application",
    "check_settings",
    "get_tracker",
    "read_resolver_match",
    "reset",
    "route_template",
    "tracking",
    "tracking_from_settings",
]
