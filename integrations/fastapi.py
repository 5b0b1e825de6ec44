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

``tracked_user(get_current_user)`` wraps an existing dependency so the user it returns
also becomes the visitor of the request's events::

    @app.get("/account")
    def account(user: User = Depends(tracked_user(get_current_user))): ...
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import fastapi.routing
from fastapi import Depends, FastAPI
from starlette.responses import Response

from cdptrack import track
from cdptrack.capture import EventSink
from cdptrack.config import Config
from cdptrack.observe.core import Observer
from cdptrack.observe.state import current_state

from .starlette import CDPTrackMiddleware, app_routes
from .starlette import setup as _starlette_setup


def setup(app: FastAPI, config: Config | None = None, *, tracker: EventSink | None = None,
          user_loader: Callable[[Any], Any] | None = None, **options: Any) -> Observer:
    """The Starlette adapter's ``setup`` (see :mod:`cdptrack.integrations.starlette`),
    plus the recording of path operations' return values (see the module docstring)."""
    record_return_values()
    return _starlette_setup(app, config, tracker=tracker, user_loader=user_loader,
                            **options)


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


__all__ = ["CDPTrackMiddleware", "app_routes", "record_return_values", "setup", "tracked_user"]
