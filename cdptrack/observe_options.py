"""Deprecated: :class:`ObserveOptions` lives in :mod:`cdptrack.observe.options` and is
re-exported by :mod:`cdptrack.observe`.  This alias goes away in the next minor release."""

from __future__ import annotations

import warnings

from .observe import options as _options
from .observe.options import *  # noqa: F403 - every public name, as before the move

warnings.warn(
    "cdptrack.observe_options is deprecated; import ObserveOptions from cdptrack.observe",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = list(_options.__all__)
