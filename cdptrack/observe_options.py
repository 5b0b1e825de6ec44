"""Deprecated: :class:`ObserveOptions` lives in :mod:`cdptrack.observe.options` and is
re-exported by :mod:`cdptrack.observe`.  This alias goes away in the next minor release."""

from __future__ import annotations

import warnings

from .observe.options import ObserveOptions, RouteRule, split_options

warnings.warn(
    "cdptrack.observe_options is deprecated; import ObserveOptions from cdptrack.observe",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["ObserveOptions", "RouteRule", "split_options"]
