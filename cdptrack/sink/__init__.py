"""A local collector that answers like Yespo, Customer.io and Orangepill, checks every
request against their specs, and shows what arrived in a live inspector page.

``with Sink() as sink:`` runs one on an ephemeral 127.0.0.1 port; point a shop at it with
``sink.env()`` (``CDPTRACK_*_URL`` variables) or ``Config(**sink.config_overrides())``.
"""

from __future__ import annotations

from .apis import API_NAMES, BASE_PATHS, ENV_NAMES
from .faults import FailurePlan, Fault, FaultSpecError
from .record import summarize
from .server import Sink

__all__ = [
    "API_NAMES",
    "BASE_PATHS",
    "ENV_NAMES",
    "FailurePlan",
    "Fault",
    "FaultSpecError",
    "Sink",
    "summarize",
]
