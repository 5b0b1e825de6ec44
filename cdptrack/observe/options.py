"""Settings of the observe layer (middleware, visitor cookie, session, the page decision).

:class:`cdptrack.Config` says where events go; :class:`ObserveOptions` says how a shop's
requests become events.  They are kept apart so the renderers never see request-side
settings and the middleware never sees API keys.  Every option has a plain default that
works for a typical Flask or Starlette shop.  Every adapter also reads each option from
the environment variable ``CDPTRACK_<NAME>`` (for example ``CDPTRACK_CURRENCY``), and a
Flask app from ``app.config["CDPTRACK_<NAME>"]``; options given in code win (see
:meth:`ObserveOptions.from_env`).  A callable option (``user_loader``, ``cart_loader``,
``catalogue``, ``consent``) is written ``module:function`` there, a mapping
(``route_rules``, ``product_fields``, ``identity_keys``) as JSON, a list comma-separated.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from ..config import Config, ConfigError, Secret, import_callable

TWO_YEARS = 2 * 365 * 24 * 3600

# Page kinds the page decision knows; a declaration or a route rule names one of these.
PAGE_KINDS = frozenset(
    {"home", "product", "category", "search", "cart", "checkout", "order", "wishlist",
     "sign_in", "register", "other"}
)

DEFAULT_IDENTITY_KEYS: dict[str, tuple[str, ...]] = {
    "user_id": ("user_id", "_user_id", "uid"),
    "email": ("email", "user_email", "customer_email"),
    "phone": ("phone", "user_phone"),
    "name": ("name", "user_name", "full_name"),
    "external_customer_id": ("external_customer_id", "customer_id"),
    "yespo_contact_id": ("yespo_contact_id",),
    "orangepill_identity": ("orangepill_identity",),
}

# ``page_views`` settings: send every page view, or only those without their own event.
PAGE_VIEWS = frozenset({"all", "generic"})

# Crawlers, link unfurlers and monitors: substrings of the User-Agent, case-insensitive.
DEFAULT_BOT_PATTERN = (
    r"bot\b|bot/|crawl|spider|slurp|facebookexternalhit|embedly|quora link preview"
    r"|bingpreview|mediapartners|adsbot|lighthouse|pingdom|uptimerobot|statuscake"
    r"|semrush|ahrefs|mj12|baiduspider|petalbot|headless-shell"
)

DEFAULT_STATIC_PREFIXES: tuple[str, ...] = (
    "/static/", "/assets/", "/media/", "/favicon.ico", "/robots.txt", "/sitemap",
    "/apple-touch-icon", "/.well-known/",
)
DEFAULT_STATIC_SUFFIXES: tuple[str, ...] = (
    ".css", ".js", ".mjs", ".map", ".png", ".jpg", ".jpeg", ".gif", ".svg", ".ico",
    ".webp", ".avif", ".woff", ".woff2", ".ttf", ".eot", ".mp4", ".webm", ".pdf",
)


@dataclass(frozen=True, slots=True)
class RouteRule:
    """A page kind for a route template or endpoint name, and which parameter is its key."""

    kind: str
    key: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in PAGE_KINDS:
            raise ConfigError(
                f"route rule kind must be one of {', '.join(sorted(PAGE_KINDS))}, "
                f"not {self.kind!r}"
            )

    @classmethod
    def parse(cls, value: Any) -> RouteRule:
        """``"product:product_id"``, ``"cart"``, ``("product", "id")``, ``{"kind", "key"}``."""
        if isinstance(value, RouteRule):
            return value
        if isinstance(value, str):
            kind, _, key = value.partition(":")
            return cls(kind.strip(), key.strip() or None)
        if isinstance(value, Mapping):
            return cls(str(value.get("kind", "")), value.get("key"))
        if isinstance(value, (tuple, list)) and 1 <= len(value) <= 2:
            return cls(str(value[0]), value[1] if len(value) == 2 else None)
        raise ConfigError(f"cannot read a route rule from {value!r}")


@dataclass(frozen=True, slots=True)
class ObserveOptions:
    """How requests become events.  See the README's "Observe" section for each one."""

    # -- the visitor cookie (Yespo's ``sc``) ------------------------------------------
    cookie_name: str = "sc"
    cookie_domain: str | None = None
    cookie_max_age: int = TWO_YEARS
    cookie_path: str = "/"
    set_cookie: bool = True
    # -- the session --------------------------------------------------------------
    session_cookie_name: str = "session"
    session_secret: Secret | None = None
    session_format: str | None = None  # "flask" or "starlette"; None: by interface
    session_max_age: int | None = None  # None: the framework's default
    identity_keys: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: dict(DEFAULT_IDENTITY_KEYS)
    )
    user_key: str = "user"
    user_loader: Callable[[Any], Any] | None = None
    cart_key: str = "cart"
    # ``request -> cart`` (lines, a cart row, a mapping with ``lines``/``items``); runs
    # at the end of each tracked request, in the request (see observe/carts.py).
    cart_loader: Callable[[Any], Any] | None = None
    cart_id_key: str = "cart_id"
    order_key: str = "last_order"
    currency: str | None = None
    # -- page context -------------------------------------------------------------
    catalogue: Callable[[str], Any] | None = None
    # Segment v2 product property → the shop's field path (``"price.amount"``) or a
    # function of the product object; read before the usual names (observe/products.py).
    product_fields: Mapping[str, Any] | None = None
    route_rules: Mapping[str, RouteRule] = field(default_factory=dict)
    conventions: bool = True
    search_params: tuple[str, ...] = ("q", "query", "search", "s", "term")
    track_pages: bool = True
    # "all": every HTML page view is a ``page`` event everywhere.  "generic": a page that
    # also gets its own event (Product Viewed, Product List Viewed, Products Searched,
    # Order Completed) marks its ``page`` event with ``properties.page_event`` (that
    # event's name), and the APIs without a batch form (Yespo v1/event, Orangepill)
    # skip it with the counted reason ``page_has_own_event``: one wire request fewer
    # per such page for each of them (see README, Speed).
    page_views: str = "all"
    # -- what is never tracked ------------------------------------------------------
    honour_gpc: bool = True
    consent_cookie: str | None = None
    consent_value: str | None = None
    consent: Callable[[Any], bool] | None = None
    bot_pattern: str = DEFAULT_BOT_PATTERN
    static_prefixes: tuple[str, ...] = DEFAULT_STATIC_PREFIXES
    static_suffixes: tuple[str, ...] = DEFAULT_STATIC_SUFFIXES
    ignore_paths: tuple[str, ...] = ()
    # -- proxies and memory --------------------------------------------------------
    # X-Forwarded-For/-Proto/-Host: how many proxies of yours append to them (werkzeug
    # ProxyFix's x_for); True means one, False or 0 ignores the headers.  The value
    # taken is the one the outermost trusted proxy added (``values[-hops]``), never one
    # the client wrote.  ``trust_forwarded_proto`` / ``_host``: other counts for those
    # two headers (None: the same as ``trust_forwarded``; 0: ignored).
    trust_forwarded: bool | int = False
    trust_forwarded_proto: int | None = None
    trust_forwarded_host: int | None = None
    order_dedupe_size: int = 10_000
    # -- where events are built -----------------------------------------------------
    # True: with a tracker that has ``capture_deferred`` (the default Tracker), decide
    # and build the events on its sender thread, so ``catalogue`` runs there too (it
    # must then be thread-safe and not need the request).  False: build them on the
    # request path, after the response was sent.
    defer_events: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.session_secret, (str, bytes)):
            secret = self.session_secret
            text = secret.decode("utf-8") if isinstance(secret, bytes) else secret
            object.__setattr__(self, "session_secret", Secret(text) if text else None)
        if self.session_format not in (None, "flask", "starlette"):
            raise ConfigError(
                f"session_format must be 'flask' or 'starlette', not {self.session_format!r}"
            )
        object.__setattr__(self, "trust_forwarded",
                           _hops("trust_forwarded", self.trust_forwarded))
        for name in ("trust_forwarded_proto", "trust_forwarded_host"):
            value = getattr(self, name)
            if value is not None:  # None: follows trust_forwarded (see forwarded_hops)
                object.__setattr__(self, name, _hops(name, value))
        if self.page_views not in PAGE_VIEWS:
            raise ConfigError(
                f"page_views must be 'all' or 'generic', not {self.page_views!r}")
        if not _COOKIE_NAME_RE.match(self.cookie_name):
            raise ConfigError(f"cookie_name is not a valid cookie name: {self.cookie_name!r}")
        if self.cookie_max_age <= 0:
            raise ConfigError("cookie_max_age must be a positive number of seconds")
        rules = self.route_rules
        if isinstance(rules, str):
            rules = json.loads(rules)
        object.__setattr__(
            self, "route_rules", {str(k): RouteRule.parse(v) for k, v in dict(rules).items()}
        )
        if isinstance(self.product_fields, str):
            object.__setattr__(self, "product_fields", json.loads(self.product_fields))
        if self.product_fields is not None and not isinstance(self.product_fields, Mapping):
            raise ConfigError("product_fields must map product properties to field names")
        identity_keys = self.identity_keys
        if isinstance(identity_keys, str):
            identity_keys = json.loads(identity_keys)
        keys = {**DEFAULT_IDENTITY_KEYS}
        for name, value in dict(identity_keys).items():
            keys[name] = (value,) if isinstance(value, str) else tuple(value)
        object.__setattr__(self, "identity_keys", keys)
        for name in ("search_params", "static_prefixes", "static_suffixes", "ignore_paths"):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, tuple(v.strip() for v in value.split(",")))
        try:
            re.compile(self.bot_pattern)
        except re.error as exc:
            raise ConfigError(f"bot_pattern is not a regular expression: {exc}") from None

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}={getattr(self, f.name)!r}" for f in fields(self)
            if f.name not in ("identity_keys", "bot_pattern", "static_prefixes",
                              "static_suffixes")
        )
        return f"ObserveOptions({shown})"

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], **overrides: Any) -> ObserveOptions:
        """Read ``CDPTRACK_<NAME>`` keys (Flask's ``app.config``, the environment)."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            key = "CDPTRACK_" + f.name.upper()
            if key in mapping and mapping[key] not in (None, ""):
                values[f.name] = _coerce(f.name, mapping[key])
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(values) - OPTION_NAMES
        if unknown:
            raise ConfigError(f"unknown observe option(s): {', '.join(sorted(unknown))}")
        return cls(**values)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None,
                 **overrides: Any) -> ObserveOptions:
        """The options the ``CDPTRACK_<NAME>`` environment variables set (``environ``,
        default ``os.environ``), with ``overrides`` (an adapter's keyword options)
        winning.  What every adapter and middleware starts from."""
        return cls.from_mapping(os.environ if environ is None else environ, **overrides)

    def forwarded_hops(self) -> tuple[int, int, int]:
        """Trusted proxies for X-Forwarded-For, -Proto and -Host (0: header ignored)."""
        hops = int(self.trust_forwarded)
        proto, host = self.trust_forwarded_proto, self.trust_forwarded_host
        return (hops, hops if proto is None else proto, hops if host is None else host)

    def with_overrides(self, **changes: Any) -> ObserveOptions:
        return replace(self, **changes)


def _hops(name: str, value: Any) -> int:
    """A trusted-proxy count: True is one, False none; a negative count is an error."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in {"true", "yes", "on"}:
            return 1
        if text in {"", "false", "no", "off"}:
            return 0
        value = text
    try:
        count = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be true/false or a number of proxies, "
                          f"not {value!r}") from None
    if count < 0:
        raise ConfigError(f"{name} must not be negative")
    return count


_COOKIE_NAME_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_INT_OPTIONS = {"cookie_max_age", "session_max_age", "order_dedupe_size"}
_BOOL_OPTIONS = {"set_cookie", "conventions", "track_pages", "honour_gpc", "defer_events"}
OPTION_NAMES: frozenset[str] = frozenset(f.name for f in fields(ObserveOptions))
CONFIG_NAMES: frozenset[str] = frozenset(f.name for f in fields(Config))


_CALLABLE_OPTIONS = {"user_loader", "cart_loader", "catalogue", "consent"}


def env_option_names() -> dict[str, str]:
    """``CDPTRACK_<NAME>`` → option name, for every observe option."""
    return {"CDPTRACK_" + name.upper(): name for name in sorted(OPTION_NAMES)}


def _coerce(name: str, raw: Any) -> Any:
    if name in _BOOL_OPTIONS and isinstance(raw, str):
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if name in _INT_OPTIONS and isinstance(raw, str):
        try:
            return int(raw.strip())
        except ValueError:
            raise ConfigError(f"CDPTRACK_{name.upper()} must be a whole number, "
                              f"not {raw!r}") from None
    if name in _CALLABLE_OPTIONS and isinstance(raw, str):
        return import_callable(raw, f"CDPTRACK_{name.upper()}")
    return raw


def split_options(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split keyword options into (:class:`Config` settings, :class:`ObserveOptions`).

    Adapters take one flat ``**options``; a name that is neither is an error, so a typo
    never silently turns a feature off.
    """
    config: dict[str, Any] = {}
    observe: dict[str, Any] = {}
    unknown: list[str] = []
    for name, value in options.items():
        if name in OPTION_NAMES:
            observe[name] = value
        elif name in CONFIG_NAMES:
            config[name] = value
        else:
            unknown.append(name)
    if unknown:
        raise ConfigError(f"unknown option(s): {', '.join(sorted(unknown))}")
    return config, observe


__all__ = [
    "DEFAULT_IDENTITY_KEYS",
    "PAGE_KINDS",
    "TWO_YEARS",
    "ObserveOptions",
    "RouteRule",
    "env_option_names",
    "split_options",
]
