"""Connecting the request layer to a tracker: what every adapter does at start-up.

The middlewares (:mod:`cdptrack.asgi`, :mod:`cdptrack.wsgi`) and the framework adapters
take one flat set of keyword options; :func:`make_observer` splits them into destination
settings (:class:`~cdptrack.config.Config`) and request-layer options
(:class:`~cdptrack.observe.options.ObserveOptions`), and makes the
:class:`~cdptrack.tracker.Tracker` when the app did not hand one over.  This is the only
place where the request layer and the delivery engine are put together.
"""

from __future__ import annotations

from typing import Any

from .capture import EventSink
from .config import Config
from .observe.core import Observer
from .observe.options import ObserveOptions, split_options


def make_observer(
    tracker: EventSink | None = None,
    *,
    config: Any = None,
    options: ObserveOptions | None = None,
    **flat: Any,
) -> tuple[Observer, bool]:
    """An observer from an adapter's flat keyword options; ``True`` when the tracker was
    created here (the adapter then owns its start and shutdown).

    Without ``options`` the observe options come from the ``CDPTRACK_*`` environment
    variables (``CDPTRACK_CURRENCY``, ...), with the flat keyword options winning, as
    the destination settings do; a ready ``options`` object is taken as it is (the
    Flask and Django adapters build theirs from the environment and their own
    settings first)."""
    config_kw, observe_kw = split_options(flat)
    if options is None:
        opts = ObserveOptions.from_env(**observe_kw)
    else:
        opts = options.with_overrides(**observe_kw) if observe_kw else options
    created = False
    if tracker is None:
        from .tracker import Tracker  # the delivery engine: imported only when needed

        if config is None:
            config = Config.from_env(**config_kw)
        elif config_kw:
            config = config.with_overrides(**config_kw)
        tracker = Tracker(config)
        created = True
    elif config_kw:
        raise ValueError("destination settings given with a ready tracker; pass them to "
                         "the tracker instead: " + ", ".join(sorted(config_kw)))
    return Observer(tracker, opts), created


__all__ = ["make_observer"]
