"""Deprecated: ``Tracker`` lives in :mod:`cdptrack.tracker` (``from cdptrack import
Tracker`` is the stable spelling).  This alias goes away in the next minor release."""

from __future__ import annotations

import warnings

from .tracker import Tracker

warnings.warn(
    "cdptrack.client is deprecated; import Tracker from cdptrack (or cdptrack.tracker)",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["Tracker"]
