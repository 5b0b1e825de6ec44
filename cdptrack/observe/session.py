"""Reading a shop's session: the cart, the signed-in identity and the last order.

Adapters hand cdptrack the live session (Flask's ``session``, Starlette's
``scope["session"]``).  At the bare WSGI/ASGI level, when only the secret is known, the
signed session cookie is decoded here instead: Flask's ``SecureCookieSessionInterface``
format and Starlette's ``SessionMiddleware`` format, both with itsdangerous.  Nothing is
trusted without a valid signature.

The cart is read as the shop keeps it (a list of line dicts, or a dict of product id to
quantity or line) and normalised to ``{product_id: line}`` so two snapshots can be
compared; the difference becomes the ``added`` and ``removed`` lines of Cart Updated.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import zlib
from collections.abc import Mapping
from typing import Any

from itsdangerous import BadData, TimestampSigner, URLSafeTimedSerializer

from .fields import raw_get
from .options import ObserveOptions
from .products import product_line
from .state import RequestState, SessionSnapshot
from .visitor import identity_from_session

FLASK_SESSION_MAX_AGE = 31 * 24 * 3600  # Flask's PERMANENT_SESSION_LIFETIME default
STARLETTE_SESSION_MAX_AGE = 14 * 24 * 3600  # SessionMiddleware's default max_age
MAX_SESSION_COOKIE = 8192

# --- signed session cookies ------------------------------------------------------------


def decode_session_cookie(
    value: str | None, secret: str, fmt: str, max_age: int | None = None
) -> dict[str, Any] | None:
    """The session dict in a signed cookie, or ``None`` when it is absent or not genuine."""
    if not value or len(value) > MAX_SESSION_COOKIE:
        return None
    try:
        if fmt == "flask":
            serializer = URLSafeTimedSerializer(
                secret,
                salt="cookie-session",
                signer_kwargs={"key_derivation": "hmac", "digest_method": hashlib.sha1},
            )
            data = serializer.loads(value, max_age=max_age or FLASK_SESSION_MAX_AGE)
            data = _untag(data)
        else:
            signer = TimestampSigner(secret)
            raw = signer.unsign(value.encode("utf-8"), max_age=max_age or STARLETTE_SESSION_MAX_AGE)
            data = json.loads(base64.b64decode(raw))
    except (BadData, ValueError, zlib.error, TypeError):
        return None
    return data if isinstance(data, dict) else None


def session_from_set_cookie(header_value: str) -> str | None:
    """The new cookie value from a ``Set-Cookie`` header; ``""`` when it deletes it."""
    first, _, attrs = header_value.partition(";")
    _, _, value = first.partition("=")
    value = value.strip().strip('"')
    lowered = attrs.lower()
    if not value or value == "null" or "max-age=0" in lowered.replace(" ", "") or (
        "expires=thu, 01 jan 1970" in lowered
    ):
        return ""
    return value


def _untag(value: Any) -> Any:
    # Flask's TaggedJSONSerializer marks non-JSON types as {" t": ...}; unwrap the common
    # ones so a tuple cart or a tagged dict reads like the app sees it.
    if isinstance(value, dict):
        if len(value) == 1:
            ((key, inner),) = value.items()
            if key in (" t", " l"):
                return [_untag(v) for v in inner]
            if key == " di":
                return {k: _untag(v) for k, v in inner.items()}
            if key in (" u", " m", " d"):
                return inner
            if key == " b":
                return base64.b64decode(inner)
        return {k: _untag(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_untag(v) for v in value]
    return value


# --- snapshots ------------------------------------------------------------------------


def snapshot(session: Mapping[str, Any] | None, options: ObserveOptions) -> SessionSnapshot:
    """Copy what cdptrack compares out of a live session (the view may mutate it later)."""
    if session is None:
        return SessionSnapshot()
    raw_cart = raw_get(session, options.cart_key)
    cart_id = raw_get(session, options.cart_id_key)
    return SessionSnapshot(
        cart=read_cart(raw_cart),
        cart_id=str(cart_id) if isinstance(cart_id, (str, int)) else None,
        identity=identity_from_session(session, options.identity_keys, options.user_key),
        order=raw_get(session, options.order_key),
    )


_SCALARS = frozenset({str, int, float, bool, type(None)})


class _NotPlain(Exception):
    pass


def _copy_lines(value: Any) -> Any:
    # One level deeper than the session itself: views change cart lines in place
    # (``session["cart"][pid]["quantity"] += 1``).  Lines that are objects cannot be
    # copied cheaply; the caller then reads the session at once instead.
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is dict:
        return {k: dict(v) if type(v) is dict else _plain(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [dict(v) if type(v) is dict else _plain(v) for v in value]
    raise _NotPlain


def _plain(value: Any) -> Any:
    if type(value) in _SCALARS:
        return value
    raise _NotPlain


def snapshot_later(session: Mapping[str, Any] | None,
                   options: ObserveOptions) -> SessionSnapshot:
    """A snapshot that only copies now (a dict copy plus the cart's and the user's
    lines), to be read by :func:`resolve_snapshot` when the events are built.  Falls back
    to :func:`snapshot` for sessions that are not dicts or hold objects."""
    if session is None or not isinstance(session, dict):
        return snapshot(session, options)
    raw = dict(session)  # C-level copy: does not mark a Flask session as accessed
    try:
        for key in (options.cart_key, options.user_key):
            value = raw.get(key)
            if value is not None:
                raw[key] = _copy_lines(value)
    except _NotPlain:
        return snapshot(session, options)
    return SessionSnapshot(raw=raw)


def snapshot_after(session: Mapping[str, Any] | None, before: SessionSnapshot | None,
                   options: ObserveOptions) -> SessionSnapshot:
    """The session at the end of the view: ``before`` itself when the view left it as
    it was (the usual page view: one C-level comparison instead of a second copy),
    else :func:`snapshot_later`."""
    if before is not None and before.raw is not None and isinstance(session, dict):
        with contextlib.suppress(Exception):  # a value whose __eq__ raises: copied
            if session == before.raw:
                return before
    return snapshot_later(session, options)


def resolve_snapshot(found: SessionSnapshot, options: ObserveOptions) -> SessionSnapshot:
    """Fill in a :func:`snapshot_later` snapshot from its copy (once)."""
    raw = found.raw
    if raw is not None:
        full = snapshot(raw, options)
        found.cart, found.cart_id = full.cart, full.cart_id
        found.identity, found.order = full.identity, full.order
        found.raw = None
    return found


def resolve_snapshots(before: SessionSnapshot | None, after: SessionSnapshot | None,
                      options: ObserveOptions) -> None:
    """:func:`resolve_snapshot` both sides of a request; a session the request left as
    it was (the usual page view) is read once and the result shared."""
    if (before is not None and after is not None and before.raw is not None
            and after.raw is not None and before.raw == after.raw):
        resolve_snapshot(before, options)
        after.cart, after.cart_id = before.cart, before.cart_id
        after.identity, after.order = before.identity, before.order
        after.raw = None
        return
    if before is not None:
        resolve_snapshot(before, options)
    if after is not None:
        resolve_snapshot(after, options)


def read_cart(raw: Any) -> dict[str, dict[str, Any]] | None:
    """``{product_id: line}`` from a list of lines or a dict of id → quantity | line."""
    if raw is None:
        return None
    lines: dict[str, dict[str, Any]] = {}
    if isinstance(raw, Mapping):
        for pid, item in raw.items():
            if isinstance(item, (int, float)) and not isinstance(item, bool):
                line: dict[str, Any] | None = {"product_id": str(pid), "quantity": item}
            else:
                line = product_line(item, default_id=pid)
            if line is not None:
                _add_line(lines, line)
        return lines
    if isinstance(raw, (list, tuple)):
        for item in raw:
            line = product_line(item)
            if line is not None:
                _add_line(lines, line)
        return lines
    return None


def _add_line(lines: dict[str, dict[str, Any]], line: dict[str, Any]) -> None:
    pid = line["product_id"]
    if pid in lines:
        lines[pid]["quantity"] = lines[pid].get("quantity", 1) + line.get("quantity", 1)
    else:
        lines[pid] = line


def cart_changes(
    before: dict[str, dict[str, Any]] | None, after: dict[str, dict[str, Any]] | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
    """``(added, removed)`` lines with quantity deltas, or ``None`` when nothing changed."""
    old = before or {}
    new = after or {}
    if before is None and after is None:
        return None
    added: list[dict[str, Any]] = []
    removed: list[dict[str, Any]] = []
    for pid, line in new.items():
        previous = old.get(pid)
        delta = line.get("quantity", 1) - (previous or {}).get("quantity", 0)
        if delta > 0:
            added.append({**(previous or {}), **line, "quantity": delta})
        elif delta < 0:
            removed.append({**(previous or {}), **line, "quantity": -delta})
    for pid, line in old.items():
        if pid not in new:
            removed.append(dict(line))
    if not added and not removed:
        return None
    return added, removed


def fill_session_from_cookies(options: ObserveOptions, state: RequestState, fmt: str) -> None:
    """When no adapter handed over the live session, read it from the signed cookies:
    before from the request's cookie, after from the response's ``Set-Cookie`` (or
    unchanged when the response set none).  Needs ``session_secret``."""
    opts = options
    if opts.session_secret is None:
        return
    secret = opts.session_secret.reveal()
    fmt = opts.session_format or fmt
    if state.session_before is None:
        raw = decode_session_cookie(state.cookies.get(opts.session_cookie_name), secret, fmt,
                                    opts.session_max_age)
        state.session_before = snapshot_later(raw or {}, opts)
    if state.session_after is None:
        if state.session_cookie_after is None:
            state.session_after = state.session_before
        elif state.session_cookie_after == "":
            state.session_after = snapshot_later({}, opts)  # the response deleted it
        else:
            raw = decode_session_cookie(state.session_cookie_after, secret, fmt,
                                        opts.session_max_age)
            if raw is not None:
                state.session_after = snapshot_later(raw, opts)


__all__ = [
    "cart_changes",
    "decode_session_cookie",
    "fill_session_from_cookies",
    "read_cart",
    "resolve_snapshot",
    "resolve_snapshots",
    "session_from_set_cookie",
    "snapshot",
    "snapshot_later",
]
