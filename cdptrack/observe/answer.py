"""What a view answered, as plain data: the JSON body of its response.

JSON APIs say what they did in their answers: a product route answers with the
product, a cart route with the cart or with the one line it changed, a checkout with
the order it placed.  On the routes whose answers the events need (:data:`ANSWER_KINDS`)
the middlewares keep a copy of a ``2xx`` JSON body as it is sent, up to
:data:`MAX_JSON_BYTES` (a bigger body is not kept at all); the response itself is never
changed.  The copy is parsed when the events are built, off the request path.
"""

from __future__ import annotations

import json
from typing import Any

from .state import RequestState

MAX_JSON_BYTES = 256 * 1024
# Page kinds whose JSON answer is kept: a product's details, a cart or its changed
# line, the order a checkout placed or a thank-you route shows.
ANSWER_KINDS = frozenset({"product", "cart", "checkout", "order"})


def keep_chunk(state: RequestState, chunk: bytes) -> None:
    """Add one body chunk to the kept answer, or stop keeping it (``None``) once it
    passes :data:`MAX_JSON_BYTES`."""
    body = state.response_json
    if body is None:
        return
    if not isinstance(chunk, (bytes, bytearray)) or len(body) + len(chunk) > MAX_JSON_BYTES:
        state.response_json = None  # too big to be a product, a cart or an order
        return
    state.response_json = body + bytes(chunk)


def json_answer(state: RequestState) -> Any:
    """The kept JSON answer parsed (a dict, list, ...), or ``None`` when none was kept,
    it was empty (a ``204``) or it is not JSON."""
    body = state.response_json
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def adopt_answer(state: RequestState) -> None:
    """Make the kept JSON answer the view's result (what page details, carts and orders
    are read from): under WSGI the view's return value is not seen at all, and a
    FastAPI return value is the same data, already reduced to what the client got."""
    found = json_answer(state)
    if found is not None:
        state.view_result = found
    state.response_json = None


__all__ = ["ANSWER_KINDS", "MAX_JSON_BYTES", "adopt_answer", "json_answer", "keep_chunk"]
