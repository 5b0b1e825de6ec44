"""FastAPI adapter: ``setup(app, **options)``, plus ``tracked_user`` for dependencies.

FastAPI is Starlette underneath: ``setup`` and ``CDPTrackMiddleware`` are the Starlette
adapter's.  Routes from ``include_router(prefix=...)`` and mounted sub-applications are
read with their full templates.  Declarations (``@track.product_page(...)``) work on path
operations, sync or async, with ``Depends`` (the decorator keeps the signature).

``tracked_user(get_current_user)`` wraps an existing dependency so the user it returns
also becomes the visitor of the request's events::

    @app.get("/account")
    def account(user: User = Depends(tracked_user(get_current_user))): ...
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Depends

from cdptrack import track

from .starlette import CDPTrackMiddleware, setup


def tracked_user(dependency: Callable[..., Any]) -> Callable[..., Any]:
    """A dependency returning what ``dependency`` returns, recorded as the request's user."""

    def record_user(user: Any = Depends(dependency)) -> Any:  # noqa: B008
        track.user(user)
        return user

    return record_user


__all__ = ["CDPTrackMiddleware", "setup", "tracked_user"]
