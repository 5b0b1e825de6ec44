"""The example payloads of the four vendor specs, kept as test data in ``tests/data/specs``.

Golden tests compare cdptrack's output with these, field for field.  The JSON files hold
only the examples (data), extracted from the vendors' documents by ``spec_extract.py``;
``test_spec_data.py`` checks that they still match the documents when those are at hand.
The Customer.io OpenAPI document ships with the package (the sink validates against it).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from cdptrack.sink.validate import customerio_openapi as _packaged_openapi

DATA_DIR = Path(__file__).resolve().parent / "data" / "specs"


def _load(name: str) -> Any:
    return json.loads((DATA_DIR / name).read_text(encoding="utf-8"))


@cache
def tracker_examples() -> dict[str, dict[str, Any]]:
    """Spec 003's full examples keyed by ``GeneralInfo.eventName``."""
    return dict(_load("yespo_tracker_examples.json"))


@cache
def events_v1_examples() -> list[dict[str, Any]]:
    """Spec 001's request bodies, in document order."""
    return list(_load("yespo_events_examples.json"))


@cache
def customerio_openapi() -> dict[str, Any]:
    """Spec 002, the Customer.io OpenAPI document, as the package ships it."""
    return dict(_packaged_openapi())


@cache
def orangepill_examples() -> dict[str, tuple[str, str, dict[str, Any] | None]]:
    """Spec 000's cURL examples: title → (method, url, body)."""
    return {title: (method, url, body)
            for title, (method, url, body) in _load("orangepill_examples.json").items()}
