"""Coalescing wire requests into an API's batch form (Customer.io ``POST /batch``).

Pure functions: which requests go together, and the bytes of a batch body.  Customer.io
refuses batch requests over 500 KB; like its official Python library we stay under
475,000 bytes encoded.  Single messages are already limited to 32 KB by the renderer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from ..destinations.base import WireRequest

MAX_BATCH_BYTES = 475_000
_HEAD = b'{"batch":['
_TAIL = b"]}"

T = TypeVar("T")


def pack(items: Sequence[tuple[WireRequest, T]], max_bytes: int = MAX_BATCH_BYTES
         ) -> list[list[tuple[WireRequest, T]]]:
    """Group batchable requests by batch endpoint and auth, in order, each group's body
    under ``max_bytes``.  A message that alone exceeds the limit goes alone."""
    groups: dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[WireRequest, T]]] = {}
    for item in items:
        request = item[0]
        key = (request.batch_url or request.url, tuple(sorted(request.headers.items())))
        groups.setdefault(key, []).append(item)
    batches: list[list[tuple[WireRequest, T]]] = []
    for group in groups.values():
        current: list[tuple[WireRequest, T]] = []
        size = len(_HEAD) + len(_TAIL)
        for item in group:
            extra = len(item[0].body_bytes()) + (1 if current else 0)
            if current and size + extra > max_bytes:
                batches.append(current)
                current, size = [], len(_HEAD) + len(_TAIL)
                extra -= 1
            current.append(item)
            size += extra
        if current:
            batches.append(current)
    return batches


def batch_body(requests: Sequence[WireRequest]) -> bytes:
    """``{"batch": [msg, ...]}``: each message is the single request's JSON body, which
    already carries its ``type`` and ``messageId``."""
    return _HEAD + b",".join(r.body_bytes() for r in requests) + _TAIL
