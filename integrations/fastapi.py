"""FastAPI adapter: ``setup(app, **options)``, plus ``tracked_user`` for dependencies.

FastAPI is Starlette underneath: ``setup`` and ``CDPTrackMiddleware`` are the Starlette
adapter's.  Routes from ``include_router(prefix=...)`` and mounted sub-applications are
read with their full templates.  Declarations (``@track.product_page(...)``) work on path
operations, sync or async, with ``Depends`` (the decorator keeps the signature).

``setup`` also records what each path operation returns (a dict, a pydantic or SQLModel
model) as the view's return value, so a convention-matched page such as
``/products/{id}`` returning the product carries its price and name without a decorator.
It does so by wrapping ``fastapi.routing.run_endpoint_function`` once per process (a
``Response`` returned by the view is not recorded); with a bare
``app.add_middleware(CDPTrackMiddleware)`` only decorated views are read.

The signed-in user of a bearer-token API (``OAuth2PasswordBearer``: no session, a
``get_current_user`` dependency) is found without changing any route:

* ``setup(app, user_dependency=get_current_user)`` registers a recording copy of the
  dependency in ``app.dependency_overrides``: whatever it returns for a request becomes
  that request's user;
* or the dependency itself does ``request.state.user = user`` (read by the middleware);
* or ``tracked_user(get_current_user)`` in a route's signature, per route::

    @app.get("/account")
    def account(user: User = Depends(tracked_user(get_current_user))): ...

A user the session does not hold is identified the first time it appears for a visitor
(once per visitor and user, not on every request).  The ``Authorization`` header and the
token are never read by cdptrack.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any

import fastapi.routing
from fastapi import Depends, FastAPI
from starlette.responses import Response

from cdptrack import track
from cdptrack.capture import EventSink
from cdptrack.config import Config, ConfigError
from cdptrack.observe.core import Observer
from cdptrack.observe.state import current_state

from .starlette import CDPTrackMiddleware, app_routes
from .starlette import setup as _starlette_setup


def setup(app: FastAPI, config: Config | None = None, *, tracker: EventSink | None = None,
          user_loader: Callable[[Any], Any] | None = None,
          user_dependency: Callable[..., Any] | None = None, **options: Any) -> Observer:
    """The Starlette adapter's ``setup`` (see :mod:`cdptrack.integrations.starlette`),
    plus the recording of path operations' return values, and with ``user_dependency``
    (the shop's ``get_current_user``) the user it returns in every request that uses it
    (see the module docstring).  ``ConfigError`` when ``user_dependency`` yields instead
    of returning, or is already overridden in ``app.dependency_overrides``."""
    if user_dependency is not None:
        if user_dependency in app.dependency_overrides:
            raise ConfigError("user_dependency is already in app.dependency_overrides; "
                              "use tracked_user() in the override instead")
        app.dependency_overrides[user_dependency] = recording_dependency(user_dependency)
    record_return_values()
    return _starlette_setup(app, config, tracker=tracker, user_loader=user_loader,
                            **options)


def recording_dependency(dependency: Callable[..., Any]) -> Callable[..., Any]:
    """A stand-in for ``dependency`` with the same parameters (so FastAPI resolves the
    same sub-dependencies: ``Depends(oauth2_scheme)``, a database session, ...) that
    calls it and records what it returns as the request's user.  Sync stays sync (run in
    FastAPI's thread pool), async stays async.  Raises ``ConfigError`` for a generator
    dependency (``yield``), whose value cannot be recorded before it is used."""
    if inspect.isgeneratorfunction(dependency) or inspect.isasyncgenfunction(dependency):
        raise ConfigError("user_dependency must return the user, not yield it")
    recorded: Callable[..., Any]
    if inspect.iscoroutinefunction(dependency):
        async def recorded_async(*args: Any, **kwargs: Any) -> Any:
            user = await dependency(*args, **kwargs)
            track.user(user)
            return user
        recorded = recorded_async
    else:
        def recorded_sync(*args: Any, **kwargs: Any) -> Any:
            user = dependency(*args, **kwargs)
            track.user(user)
            return user
        recorded = recorded_sync
    # The dependency's own parameters, annotations resolved in its module (FastAPI would
    # otherwise look string annotations up in this module).
    signature = inspect.signature(dependency)
    try:
        hints = typing.get_type_hints(dependency, include_extras=True)
    except Exception:
        hints = {}
    recorded.__signature__ = signature.replace(  # type: ignore[union-attr]
        parameters=[p.replace(annotation=hints.get(p.name, p.annotation))
                    for p in signature.parameters.values()],
        return_annotation=inspect.Signature.empty)
    recorded.__name__ = getattr(dependency, "__name__", "user_dependency")
    return recorded


def record_return_values() -> None:
    """Wrap FastAPI's endpoint runner so each tracked request keeps what its path
    operation returned (``state.view_result``; a declaration's own record wins).
    Idempotent; never changes what the endpoint returns or raises."""
    original = fastapi.routing.run_endpoint_function
    if getattr(original, "__cdptrack__", False):
        return

    async def run_endpoint_function(**kwargs: Any) -> Any:
        result = await original(**kwargs)
        state = current_state.get()
        if state is not None and state.view_result is None and result is not None \
                and not isinstance(result, Response):
            state.view_result = result
        return result

    run_endpoint_function.__cdptrack__ = True  # type: ignore[attr-defined]
    fastapi.routing.run_endpoint_function = run_endpoint_function  # type: ignore[assignment]


def tracked_user(dependency: Callable[..., Any]) -> Callable[..., Any]:
    """A dependency returning what ``dependency`` returns, recorded as the request's user."""

    def record_user(user: Any = Depends(dependency)) -> Any:  # noqa: B008
        track.user(user)
        return user

    return record_user


__all__ = ["CDPTrackMiddleware", "app_routes", "record_return_values", "recording_dependency",
           "setup", "tracked_user"]
