"""Deprecated: ``track`` lives in :mod:`cdptrack.observe.declare`; ``from cdptrack import
track`` is the stable spelling.  This alias goes away in the next minor release."""

from __future__ import annotations

import warnings

from .observe import declare as _declare
from .observe.declare import *  # noqa: F403 - every public name, as before the move

warnings.warn(
    "cdptrack.declare is deprecated; import track from cdptrack",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = list(_declare.__all__)
