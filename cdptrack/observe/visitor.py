"""Who is shopping: the ``sc`` visitor cookie and the signed-in identity.

The ``sc`` cookie is Yespo's visitor id (an upper-case UUID written by Yespo's site
script); cdptrack reads it and, when a visitor has none, creates one the same way so
server-side events and the browser script agree on who the visitor is.  A value that is
malformed or oversized is treated as missing (and counted): it would otherwise travel
to four APIs as an identifier.

Identity (user id, email, phone, name, external id, Orangepill identity) comes from the
session, by configurable keys, or from a user object the shop's loader returns.
"""

from __future__ import annotations

import os
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from .fields import call_method, raw_get, read_field

MAX_SC_LENGTH = 64
MAX_IDENTITY_LENGTH = 320
_SC_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


_POOL_SIZE = 16 * 256
_pool_lock = threading.Lock()
_pool = b""
_pool_at = 0


def _random16() -> bytes:
    # os.urandom is a system call (microseconds in a VM); take the operating system's
    # randomness 4 KiB at a time and hand it out 16 bytes per visitor id.
    global _pool, _pool_at
    with _pool_lock:
        at = _pool_at
        if at + 16 > len(_pool):
            _pool, at = os.urandom(_POOL_SIZE), 0
        _pool_at = at + 16
        return _pool[at:at + 16]


def _forget_pool() -> None:
    # A forked child must never hand out the ids its parent will hand out too.
    global _pool, _pool_at, _pool_lock
    _pool, _pool_at, _pool_lock = b"", 0, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def new_sc() -> str:
    """A fresh visitor id, as Yespo's script makes them: an upper-case UUID4 (from the
    operating system's randomness: visitor ids must not be guessable).  The same bits
    as ``uuid.uuid4()``, formatted without building a ``UUID`` object."""
    n = (int.from_bytes(_random16(), "big") & _UUID4_CLEAR) | _UUID4_SET
    h = f"{n:032X}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def valid_sc(value: str | None) -> bool:
    """A usable ``sc`` value: 1-64 characters of letters, digits, ``-``, ``_`` or ``.``."""
    return value is not None and len(value) <= MAX_SC_LENGTH and bool(_SC_RE.match(value))


def parse_cookies(header: str | None, wanted: tuple[str, ...]) -> dict[str, str]:
    """The ``wanted`` cookies from a ``Cookie`` header; the first occurrence wins.

    Only the named cookies are picked out (a shop may send dozens); quoted values are
    unquoted the simple way browsers send them.
    """
    out: dict[str, str] = {}
    if not header:
        return out
    if '"' not in header and " =" not in header and "\t=" not in header:
        # Fast path, same result (a shop's Cookie header often carries dozens of
        # cookies): find each wanted name where a cookie starts instead of splitting.
        for name in wanted:
            if name in out:
                continue
            needle = name + "="
            at = header.find(needle)
            while at != -1:
                if at == 0 or header[at - 1] == ";" or not header[
                        header.rfind(";", 0, at) + 1:at].strip():
                    start = at + len(needle)
                    end = header.find(";", start)
                    out[name] = (header[start:] if end == -1 else header[start:end]).strip()
                    break
                at = header.find(needle, at + 1)
        return out
    for part in header.split(";"):
        name, sep, value = part.partition("=")
        if not sep:
            continue
        name = name.strip()
        if name in wanted and name not in out:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            out[name] = value
    return out


# A comma where a server joined two Cookie fields: followed by a cookie name (an RFC 9110
# token) and "=", or by nothing (an empty last field).
_JOINED_FIELD = re.compile(r",(?=[ \t]*(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+=|,|$))")


def split_joined_cookie_fields(header: str) -> str:
    """A ``Cookie`` header from a WSGI environ (or Django's ``META``), with the
    comma-joins of repeated fields turned back into ``;``.

    A client may send ``Cookie`` in more than one field (HTTP/2 clients send one per
    cookie; RFC 9113 section 8.2.3 says to join them with ``"; "``).  WSGI servers join
    repeated fields with a comma instead, as for any other header: gunicorn, wsgiref and
    werkzeug's server with ``","``, waitress with ``", "``, and Django's ASGI handler
    builds ``META`` the same way, so ``theme=dark`` + ``sc=CDA6...`` arrives as
    ``"theme=dark,sc=CDA6..."`` and a reader that splits on ``;`` only (werkzeug's and
    Django's cookie parsers do) never finds ``sc``.

    A comma starts a new cookie here only when a cookie name and ``=`` follow it, or
    nothing or another comma does (an empty field).  A value holding commas
    (``prefs={"a":1,"b":2}``, ``ids=1,2,3``) is kept whole; the one value read
    differently is one containing ``,name=``, which RFC 6265 excludes (no cookie-octet
    is a comma).  ``header`` without a comma is returned as it is.
    """
    if "," not in header:
        return header
    return _JOINED_FIELD.sub(";", header)


def set_cookie_header(
    name: str,
    value: str,
    *,
    max_age: int,
    path: str = "/",
    domain: str | None = None,
    secure: bool = False,
) -> str:
    """The ``Set-Cookie`` value for the visitor cookie (``SameSite=Lax``, no HttpOnly:
    Yespo's browser script reads the same cookie)."""
    parts = [f"{name}={value}", f"Max-Age={max_age}", f"Path={path}"]
    if domain:
        parts.append(f"Domain={domain}")
    if secure:
        parts.append("Secure")
    parts.append("SameSite=Lax")
    return "; ".join(parts)


# --- identity ------------------------------------------------------------------------

# Attribute or key names of a user object, per visitor field.
USER_OBJECT_FIELDS: dict[str, tuple[str, ...]] = {
    "user_id": ("user_id", "id", "pk", "uid"),
    "email": ("email", "email_address"),
    "phone": ("phone", "phone_number", "mobile"),
    "name": ("name", "full_name", "display_name"),
    "external_customer_id": ("external_customer_id", "customer_id"),
    "yespo_contact_id": ("yespo_contact_id",),
    "orangepill_identity": ("orangepill_identity", "orangepill_identity_id"),
}


def identity_from_session(
    session: Mapping[str, Any],
    keys: Mapping[str, tuple[str, ...]],
    user_key: str | None = "user",
) -> dict[str, str]:
    """Visitor fields from a session: flat keys first, then a ``user`` dict/object.

    Uses ``dict.get`` directly on dict sessions so that reading does not mark a Flask
    session as accessed (which would add ``Vary: Cookie`` to the shop's response).
    """
    # dict.get on any dict (a Flask session's own get marks it accessed).
    get = partial(dict.get, session) if isinstance(session, dict) \
        else partial(raw_get, session)
    out = _first_identity_values(get, keys)
    if user_key:
        user = raw_get(session, user_key)
        if user is not None:
            for field_name, value in identity_from_user(user).items():
                out.setdefault(field_name, value)
    return out


def identity_from_user(user: Any) -> dict[str, str]:
    """Visitor fields from a user object or mapping (Flask-Login's ``current_user``, an
    ORM model, a pydantic model, a dict).  An anonymous user gives nothing."""
    if user is None or isinstance(user, (str, bytes, int, float, bool)):
        return {}
    if getattr(user, "is_authenticated", True) is False:
        return {}
    get = user.get if type(user) is dict else partial(read_field, user)
    out = _first_identity_values(get, USER_OBJECT_FIELDS)
    if "user_id" not in out:
        value = _identity_value(call_method(user, "get_id"))  # Flask-Login's UserMixin
        if value is not None:
            out["user_id"] = value
    if "name" not in out:
        first = _identity_value(read_field(user, "first_name"))
        last = _identity_value(read_field(user, "last_name"))
        if first or last:
            out["name"] = " ".join(p for p in (first, last) if p)
    return out


def _first_identity_values(get: Callable[[str], Any],
                           fields: Mapping[str, tuple[str, ...]]) -> dict[str, str]:
    """Per visitor field, the first of its names whose value ``get`` finds and
    :func:`_identity_value` accepts (most names are absent: only found values are
    checked)."""
    out: dict[str, str] = {}
    for field_name, names in fields.items():
        for name in names:
            found = get(name)
            if found is None:
                continue
            value = _identity_value(found)
            if value is not None:
                out[field_name] = value
                break
    return out


def _identity_value(value: Any) -> str | None:
    # A UUID is an id as much as an int is: the primary key of SQLAlchemy ``Uuid`` /
    # sqlalchemy-utils ``UUIDType`` users, Django ``UUIDField`` and SQLModel rows.
    if isinstance(value, uuid.UUID):
        return str(value)
    if value is None or isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value).strip()
    if not text or len(text) > MAX_IDENTITY_LENGTH:
        return None
    return text


__all__ = [
    "MAX_SC_LENGTH",
    "identity_from_session",
    "identity_from_user",
    "new_sc",
    "parse_cookies",
    "set_cookie_header",
    "split_joined_cookie_fields",
    "valid_sc",
]
