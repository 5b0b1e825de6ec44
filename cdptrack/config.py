"""Configuration: constructor arguments, a mapping such as Flask's ``app.config``, or the
``CDPTRACK_*`` environment variables.  A destination is on when its credentials are set.

API keys are held in :class:`Secret`, whose ``repr`` and ``str`` never show the value, so
a config object can be logged, printed or put in an exception without leaking a key.
"""

from __future__ import annotations

import importlib
import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal
from urllib.parse import urlsplit

DestinationName = Literal["yespo_tracker", "yespo_events", "customerio", "orangepill"]
DESTINATIONS: tuple[DestinationName, ...] = (
    "yespo_tracker",
    "yespo_events",
    "customerio",
    "orangepill",
)

# The Config field that turns each destination on, and the one holding its base URL.
# Each field's environment variable is ``CDPTRACK_<FIELD>`` (see :func:`env_name`).
CREDENTIAL_FIELDS: dict[str, str] = {
    "yespo_tracker": "yespo_site_id",
    "yespo_events": "yespo_api_key",
    "customerio": "customerio_api_key",
    "orangepill": "orangepill_api_key",
}
URL_FIELDS: dict[str, str] = {
    "yespo_tracker": "yespo_tracker_url",
    "yespo_events": "yespo_api_url",
    "customerio": "customerio_url",
    "orangepill": "orangepill_url",
}
ENV_PREFIX = "CDPTRACK_"


def env_name(field: str) -> str:
    """``yespo_site_id`` → ``CDPTRACK_YESPO_SITE_ID``."""
    return ENV_PREFIX + field.upper()


DEFAULT_YESPO_TRACKER_URL = "https://tracker.yespo.io/api/v2"
DEFAULT_YESPO_API_URL = "https://yespo.io/api/v1"
CUSTOMERIO_REGION_URLS = {
    "us": "https://cdp.customer.io/v1",
    "eu": "https://cdp-eu.customer.io/v1",
}
DEFAULT_ORANGEPILL_URL = "https://api.orangepill.cloud/v1"

REDACTED = "<redacted>"
DEFAULT_FLUSH_AT_EXIT = 5.0  # seconds


class ConfigError(ValueError):
    """A setting that cannot work; the message names the setting."""


class Secret:
    """A string that never shows itself in ``repr``, ``str``, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('<redacted>')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True, slots=True)
class Config:
    """Everything the renderers and the sender need to know about the destinations,
    and how long a stopping process may spend draining (``flush_at_exit``, seconds)."""

    yespo_site_id: str | None = None
    yespo_api_key: Secret | None = None
    customerio_api_key: Secret | None = None
    customerio_region: Literal["us", "eu"] = "us"
    orangepill_api_key: Secret | None = None
    yespo_tracker_url: str = DEFAULT_YESPO_TRACKER_URL
    yespo_api_url: str = DEFAULT_YESPO_API_URL
    customerio_url: str | None = None
    orangepill_url: str = DEFAULT_ORANGEPILL_URL
    outbox: str = "memory"
    # Where the memory outbox's sender runs: "thread" (in this process) or "process"
    # (a process of its own, so rendering and HTTP never take this process's CPU or
    # GIL: see cdptrack.delivery.sender_process).
    sender: Literal["thread", "process"] = "thread"
    dry_run: bool = False
    # Customer.io: ask for 400/401 on validation failures instead of a silent 200.
    customerio_strict: bool = True
    # Yespo's own plugins send Basic auth to the tracker too; do so when a key is set.
    yespo_tracker_auth: bool = True
    # Seconds a stop the app does not control (exit, SIGTERM/SIGINT, a server's shutdown,
    # the ASGI lifespan) may spend draining; keep it under the server's graceful timeout.
    flush_at_exit: float = DEFAULT_FLUSH_AT_EXIT
    # Chain cdptrack's drain in front of the process's SIGTERM/SIGINT handlers.
    handle_signals: bool = True
    # Orangepill: create the Person and Identity of a signed-in user who has none
    # (POST /identities/person) before sending their events; how long (seconds, retries
    # included) their events wait for it; ``on_identity(user_id, identity_id)`` is told
    # each id created or found (a callable, or "module:function" in the environment).
    orangepill_create_identities: bool = True
    orangepill_identity_wait: float = 60.0
    on_identity: Callable[[str, str], object] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        for name in ("yespo_api_key", "customerio_api_key", "orangepill_api_key"):
            value = getattr(self, name)
            if isinstance(value, Secret):
                value = value.reveal()
            if isinstance(value, str):
                value = clean_key(value, name)
                object.__setattr__(self, name, Secret(value) if value else None)
        region = str(self.customerio_region).strip().lower()
        object.__setattr__(self, "customerio_region", region)
        if region not in CUSTOMERIO_REGION_URLS:
            raise ConfigError(
                f"customerio_region must be 'us' or 'eu', not {self.customerio_region!r}"
            )
        for name in ("yespo_tracker_url", "yespo_api_url", "customerio_url", "orangepill_url"):
            url = getattr(self, name)
            if url is not None:
                object.__setattr__(self, name, check_endpoint(url, name))
        budget = self.flush_at_exit
        if isinstance(budget, bool) or not isinstance(budget, int | float) \
                or not 0 <= budget <= 3600:
            raise ConfigError(
                f"flush_at_exit must be a number of seconds from 0 to 3600, not {budget!r}")
        object.__setattr__(self, "flush_at_exit", float(budget))
        if not isinstance(self.handle_signals, bool):
            raise ConfigError(
                f"handle_signals must be true or false, not {self.handle_signals!r}")
        if self.yespo_site_id is not None:
            site = clean_key(str(self.yespo_site_id), "yespo_site_id")
            object.__setattr__(self, "yespo_site_id", site or None)
        try:
            wait = float(self.orangepill_identity_wait)
        except (TypeError, ValueError):
            wait = -1.0
        if not 0 < wait <= 86_400:
            raise ConfigError("orangepill_identity_wait must be a number of seconds "
                              "between 0 and 86400")
        object.__setattr__(self, "orangepill_identity_wait", wait)
        sender = str(self.sender).strip().lower()
        if sender not in ("thread", "process"):
            raise ConfigError(f"sender must be 'thread' or 'process', not {self.sender!r}")
        object.__setattr__(self, "sender", sender)
        if sender == "process" and self.outbox.strip().lower() != "memory":
            raise ConfigError(
                "sender='process' is for the memory outbox; a sqlite:// or redis:// "
                "outbox is drained by the processes that share it (cdptrack worker for "
                "Redis)")
        if self.on_identity is not None and not callable(self.on_identity):
            raise ConfigError("on_identity must be a callable (user_id, identity_id)")

    # -- what is on ----------------------------------------------------------------

    @property
    def customerio_base_url(self) -> str:
        return self.customerio_url or CUSTOMERIO_REGION_URLS[self.customerio_region]

    def enabled(self) -> tuple[DestinationName, ...]:
        """The destinations whose credentials are set, in a stable order."""
        return tuple(
            name for name in DESTINATIONS if getattr(self, CREDENTIAL_FIELDS[name])
        )

    def secrets(self) -> tuple[str, ...]:
        """Every secret value, for scrubbing text that might contain one."""
        keys = (self.yespo_api_key, self.customerio_api_key, self.orangepill_api_key)
        return tuple(k.reveal() for k in keys if k)

    # -- construction --------------------------------------------------------------

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        """Read ``CDPTRACK_*`` variables; keyword arguments win over the environment."""
        return cls.from_mapping(os.environ if environ is None else environ, **overrides)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], **overrides: Any) -> Config:
        """Read ``CDPTRACK_<NAME>`` keys from any mapping (the environment, ``app.config``)."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            key = env_name(f.name)
            if key in mapping and mapping[key] not in (None, ""):
                values[f.name] = _coerce(f.name, mapping[key])
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        return cls(**values)

    def with_overrides(self, **changes: Any) -> Config:
        return replace(self, **changes)

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.describe().items())
        return f"Config({shown})"

    def describe(self) -> dict[str, Any]:
        """The settings with secrets masked: safe to print or log."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = REDACTED if isinstance(value, Secret) else value
        out["customerio_url"] = self.customerio_base_url
        out["outbox"] = mask_url_password(self.outbox)
        return out


_BOOL_FIELDS = {"dry_run", "customerio_strict", "yespo_tracker_auth", "handle_signals",
                "orangepill_create_identities"}
_TRUE_WORDS = {"1", "true", "yes", "on"}
_FALSE_WORDS = {"0", "false", "no", "off"}


def _coerce(name: str, raw: Any) -> Any:
    if name == "handle_signals" and isinstance(raw, str):
        word = raw.strip().lower()
        if word not in _TRUE_WORDS | _FALSE_WORDS:  # a typo must not turn it off
            raise ConfigError(f"{env_name(name)} must be 1/0, true/false, yes/no or "
                              f"on/off, not {raw!r}")
        return word in _TRUE_WORDS
    if name in _BOOL_FIELDS and isinstance(raw, str):
        return raw.strip().lower() in _TRUE_WORDS
    if name == "flush_at_exit" and isinstance(raw, str):
        try:
            return float(raw.strip())
        except ValueError:
            raise ConfigError(f"{env_name(name)} must be a number of seconds, "
                              f"not {raw!r}") from None
    if name == "on_identity" and isinstance(raw, str):
        return import_callable(raw, name)
    if name == "customerio_region" and isinstance(raw, str):
        return raw.strip().lower()
    return raw


def import_callable(path: str, setting: str) -> Callable[..., object]:
    """``"package.module:function"`` → that function (a ``ConfigError`` naming the
    setting when it cannot be imported or is not callable)."""
    module_name, _, attr = path.strip().partition(":")
    try:
        found: object = importlib.import_module(module_name)
        for part in attr.split(".") if attr else ():
            found = getattr(found, part)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"{setting}: cannot import {path!r} ({exc})") from None
    if not attr or not callable(found):
        raise ConfigError(f"{setting}: {path!r} is not a callable (module:function)")
    return found


def clean_key(value: str, setting: str) -> str:
    """A credential as pasted, made usable: surrounding whitespace (a copied trailing
    newline) removed.  A control or non-ASCII-printable character inside it cannot go
    into an HTTP header: a :class:`ConfigError` that names the setting and the
    character's position, never the value."""
    value = value.strip()
    for at, char in enumerate(value):
        if not " " <= char <= "~":
            raise ConfigError(
                f"{setting} contains a character that cannot be sent in an HTTP header "
                f"(position {at + 1} of {len(value)}); copy the key again")
    return value


def mask_url_password(url: str) -> str:
    """``redis://:secret@host:6379/0`` → ``redis://:***@host:6379/0``."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    return parts._replace(netloc=f"{user}:***@{netloc[-1]}").geturl()


def check_endpoint(url: str, setting: str = "url") -> str:
    """An endpoint must be https, or plain http on a loopback host (a local sink)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigError(f"{setting} must be an http(s) URL, got {url!r}")
    if parts.username or parts.password:
        raise ConfigError(f"{setting} must not carry credentials in the URL")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ConfigError(
            f"{setting} must use https for a non-loopback host ({parts.hostname}); "
            "plain http is accepted only for localhost, 127.0.0.0/8 and ::1"
        )
    return url.strip().rstrip("/")


def is_loopback(host: str) -> bool:
    if host.lower() in {"localhost", "localhost.localdomain"} or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
