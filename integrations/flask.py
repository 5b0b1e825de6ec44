"""Flask extension: ``CDPTrack(app)`` or ``cdptrack.init_app(app)``.

Follows Flask's extension conventions: no ``self.app``; per-app state in
``app.extensions["cdptrack"]``; settings from ``app.config["CDPTRACK_*"]`` (destinations
via :meth:`Config.from_mapping`, observe options via :meth:`ObserveOptions.from_mapping`,
both falling back to the environment); the WSGI middleware wraps ``app.wsgi_app`` (not
``app``), so events are built in the response iterable's ``close()``, after a streamed
body too (``teardown_request`` runs before a streamed body is sent).

Hooks hand the core what only Flask knows: the live session before the view and after
it (read without marking the session accessed, so no ``Vary: Cookie`` is added), the
matched ``url_rule``, ``endpoint`` and ``view_args``, the template context (the
``template_rendered`` signal, connected with ``sender=app``) and the signed-in user
(``user_loader``, called in the request context: ``lambda request: current_user`` works
with Flask-Login; its ``_user_id`` session key is read by default anyway).  The user's
fields fill the visitor of every event; ``identify`` is sent only when the identity
appears or changes (a sign-in, a new email at checkout, ``track.identify``), not on every
request of a signed-in user.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import (
    Flask,
    Response,
    current_app,
    g,
    has_request_context,
    request,
    template_rendered,
)
from flask.globals import request_ctx

from cdptrack.capture import EventSink
from cdptrack.config import Config
from cdptrack.observe.carts import CART_OBJECT_NAMES
from cdptrack.observe.core import Observer
from cdptrack.observe.declare import ignored, register_state_finder
from cdptrack.observe.deferred import CONTEXT_KEYS, REDUCED_KEYS, reduce_object
from cdptrack.observe.options import ObserveOptions, split_options
from cdptrack.observe.routes import AppRoutes, Route, sort_methods
from cdptrack.observe.session import snapshot_after, snapshot_later
from cdptrack.observe.state import STATE_KEY, RequestState
from cdptrack.observe.visitor import identity_from_user
from cdptrack.wiring import make_observer
from cdptrack.wsgi import CDPTrackWSGIMiddleware

EXTENSION_KEY = "cdptrack"


@dataclass
class FlaskTracking:
    """What ``app.extensions["cdptrack"]`` holds for one app."""

    tracker: EventSink
    observer: Observer
    user_loader: Callable[[Any], Any] | None
    owns_tracker: bool

    def stats(self) -> dict[str, int]:
        return self.observer.stats()


class CDPTrack:
    """The Flask extension.  ``tracker`` (any object with ``capture(event)``), ``config``
    (a :class:`cdptrack.Config`) and ``**options`` (observe options and config settings,
    flat) win over ``app.config``."""

    def __init__(self, app: Flask | None = None, *, tracker: EventSink | None = None,
                 config: Config | None = None, **options: Any) -> None:
        self._tracker = tracker
        self._config = config
        self._options = options
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        if EXTENSION_KEY in app.extensions:
            return  # installed already: a second wrap would be a no-op anyway
        config_kw, observe_kw = split_options(self._options)
        settings = {k: v for k, v in os.environ.items() if k.startswith("CDPTRACK_")}
        settings.update({k: v for k, v in app.config.items() if k.startswith("CDPTRACK_")})
        user_loader: Callable[[Any], Any] | None = observe_kw.pop("user_loader", None)
        options = ObserveOptions.from_mapping(settings, **observe_kw)
        config = self._config
        if self._tracker is None and config is None:
            config, config_kw = Config.from_mapping(settings, **config_kw), {}
        observer, owns = make_observer(self._tracker, config=config, options=options,
                                       **config_kw)
        tracker = observer.tracker
        app.wsgi_app = CDPTrackWSGIMiddleware(  # type: ignore[method-assign]
            app.wsgi_app, observer=observer)
        app.extensions[EXTENSION_KEY] = FlaskTracking(tracker, observer, user_loader, owns)
        app.before_request(_before_request)
        app.after_request(_after_request)
        template_rendered.connect(_template_rendered, sender=app, weak=False)
        register_state_finder(_state_from_flask)

    @staticmethod
    def state(app: Flask | None = None) -> FlaskTracking:
        """The extension's state for ``app`` (default: the current app)."""
        target = app if app is not None else current_app._get_current_object()  # type: ignore[attr-defined]
        tracking: FlaskTracking = target.extensions[EXTENSION_KEY]
        return tracking


def _state_from_flask() -> RequestState | None:
    if not has_request_context():
        return None
    state = request.environ.get(STATE_KEY)
    return state if isinstance(state, RequestState) else None


def _raw_session() -> Any:
    # The session object itself, fetched without the ``session`` proxy: Flask >= 3.1.3
    # marks the session accessed (and adds ``Vary: Cookie``) on every proxy access.
    ctx = request_ctx._get_current_object()  # type: ignore[attr-defined]
    found = vars(ctx).get("_session")
    if found is None:
        found = vars(ctx).get("session")
    return found


def _before_request() -> None:
    state = request.environ.get(STATE_KEY)
    if not isinstance(state, RequestState):
        return
    tracking: FlaskTracking = current_app.extensions[EXTENSION_KEY]
    try:
        state.request = request._get_current_object()  # type: ignore[attr-defined]
        state.session_before = snapshot_later(_raw_session(), tracking.observer.options)
    except Exception:
        tracking.observer.error("flask_before_request")


def _after_request(response: Response) -> Response:
    req = request._get_current_object()  # type: ignore[attr-defined]  # one proxy lookup
    state = req.environ.get(STATE_KEY)
    if not isinstance(state, RequestState):
        return response
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    tracking: FlaskTracking = app.extensions[EXTENSION_KEY]
    try:
        rule = req.url_rule
        if rule is not None:
            state.route_template = state.script_root.rstrip("/") + rule.rule
            endpoint = req.endpoint
            state.endpoint_name = endpoint
            state.path_params = req.view_args
            if endpoint:
                state.endpoint = app.view_functions.get(endpoint)
                if ignored(state.endpoint):  # on a MethodView class: found via view_class
                    state.skip = True
        if state.session_before is not None:
            state.session_after = snapshot_after(_raw_session(), state.session_before,
                                                 tracking.observer.options)
        if response.status_code < 400:
            # A cart the app keeps on ``g`` (often database rows): read now, in the
            # request context, while its database session is open.
            on_g = vars(g._get_current_object())  # type: ignore[attr-defined]
            tracking.observer.read_cart(state, [on_g[name] for name in CART_OBJECT_NAMES
                                                if on_g.get(name) is not None])
            tracking.observer.read_order(state, on_g.get("order"))
        if tracking.user_loader is not None and state.user is None and response.status_code < 400:
            # Read the user now, in the request context: ``current_user`` is a proxy
            # that means nothing once the context is gone, when events are built.
            state.user = identity_from_user(tracking.user_loader(req))
    except Exception:
        tracking.observer.error("flask_after_request")
    return response


def _template_rendered(sender: Flask, template: Any = None, context: Any = None,
                       **extra: Any) -> None:
    # Read the page's objects now: a property that needs the app context (current_app,
    # g, a SQLAlchemy session) cannot be read once the request is over.
    state = _state_from_flask()
    if state is None or not isinstance(context, dict):
        return
    tracking: FlaskTracking | None = sender.extensions.get(EXTENSION_KEY)
    fields = tracking.observer.options.product_fields if tracking is not None else None
    try:
        picked = {key: reduce_object(key, context[key], fields) if key in REDUCED_KEYS
                  else context[key] for key in CONTEXT_KEYS if key in context}
    except Exception:
        if tracking is not None:
            tracking.observer.error("flask_template")
        return
    if state.template_context is None:
        state.template_context = picked
    else:
        state.template_context = {**picked, **state.template_context}


def app_routes(app: Flask) -> AppRoutes:
    """``app``'s routes as ``cdptrack routes`` shows them: every rule of its URL map
    (blueprint prefixes included) with the view function, whose ``@track`` mark is read,
    and the observer ``CDPTrack`` installed (``None`` when it is not installed)."""
    tracking = app.extensions.get(EXTENSION_KEY)
    observer = tracking.observer if isinstance(tracking, FlaskTracking) else None
    routes = [
        Route(rule.rule, sort_methods(rule.methods or ()),
              app.view_functions.get(rule.endpoint), rule.endpoint, rule.rule)
        for rule in app.url_map.iter_rules()
    ]
    notes = () if observer is not None else (
        "this app does not install cdptrack (CDPTrack(app)); the table shows what the "
        "defaults would do",)
    return AppRoutes("flask", routes, observer, notes)


__all__ = ["CDPTrack", "FlaskTracking", "app_routes"]
