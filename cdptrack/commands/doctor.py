"""``cdptrack doctor``: what is configured, what is missing, and (``--live``) whether each
endpoint answers.

The live check sends no event: to each enabled destination it sends, with the
configured credentials, a request that cannot create anything (an empty JSON object to
the Yespo endpoints, an empty batch to Customer.io, a one-row person listing from
Orangepill), and tells the answers apart: 2xx, or a 400/422 refusing the empty body,
means the URL and the key are right; 401/403 means a wrong key; 404 (or 405) a wrong base
URL; a refused connection or a timeout that the host does not answer.

The outbox (``CDPTRACK_OUTBOX``) is described without ``--live`` and looked at with it,
read-only (nothing is created, taken or sent): a SQLite file's directory must be
writable and the file, if it exists already, readable, and it says how many events are
not yet delivered everywhere and how many dead letters it keeps; a Redis outbox must
answer, and it says its streams' lengths and its dead letters.  A Redis password is
masked everywhere.  Without ``--live`` doctor checks the configuration alone, so it can
run anywhere (a CI job), not only on the host that runs the shop.

The middleware's options (``CDPTRACK_CURRENCY``, ``CDPTRACK_COOKIE_DOMAIN``, ... : every
:class:`~cdptrack.observe.options.ObserveOptions` name) are read as every adapter reads
them: those set are listed, and one that cannot work is an error.

Exit status: 0 when at least one destination is on and nothing is wrong, 1 otherwise (a
setting that cannot work, no destination on, or with ``--live`` an endpoint that does
not answer or an outbox that cannot be used).
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import os
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from ..config import (
    CREDENTIAL_FIELDS,
    DESTINATIONS,
    URL_FIELDS,
    Config,
    ConfigError,
    Secret,
    env_name,
)
from ..delivery.outbox import Outbox
from ..delivery.outbox_redis import redact_url
from ..delivery.outbox_url import open_outbox
from ..destinations.base import basic_auth
from ..observe.options import ObserveOptions, env_option_names

HELP = "what is configured, what is missing, and whether endpoints answer"

# What turns each destination on, and the base URL setting it sends to.
NEEDS: dict[str, tuple[str, ...]] = {
    name: (env_name(field),) for name, field in CREDENTIAL_FIELDS.items()
}
URL_SETTINGS: dict[str, str] = {name: env_name(field) for name, field in URL_FIELDS.items()}
TITLES: dict[str, str] = {
    "yespo_tracker": "Yespo web tracker",
    "yespo_events": "Yespo generic events",
    "customerio": "Customer.io Data Pipelines",
    "orangepill": "Orangepill / Infobip People",
}
# Variables that are not settings but are known to be fine in the environment.
_NOT_SETTINGS = frozenset({"CDPTRACK_SPECS_DIR"})


@dataclass
class Destination:
    name: str
    on: bool
    url: str
    detail: str  # what is set (masked) or what to set
    reachable: bool | None = None
    answer: str = ""
    # With --live: ok, wrong_key, wrong_url, api_error, unexpected, refused or timeout.
    verdict: str = ""


@dataclass
class OutboxState:
    """The outbox as configured and, after :func:`inspect_outbox`, as found."""

    kind: str  # memory, sqlite or redis
    url: str  # password masked
    detail: str
    usable: bool | None = None  # None: not looked at (no --live)
    answer: str = ""  # what was found, or what is wrong
    counts: dict[str, int] = field(default_factory=dict)


@dataclass
class Diagnosis:
    destinations: list[Destination] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    # The middleware's options set in the environment: variable -> value as shown.
    options: dict[str, str] = field(default_factory=dict)
    outbox: OutboxState | None = None
    config: Config | None = field(default=None, repr=False)  # for --live; never printed

    @property
    def ok(self) -> bool:
        return (not self.errors and all(d.reachable is not False for d in self.destinations)
                and (self.outbox is None or self.outbox.usable is not False))

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "destinations": [vars(d) for d in self.destinations],
            "outbox": vars(self.outbox) if self.outbox is not None else None,
            "errors": self.errors,
            "warnings": self.warnings,
            "settings": self.settings,
            "options": self.options,
        }


def known_variables() -> set[str]:
    """Every ``CDPTRACK_*`` variable cdptrack reads: the destination settings and the
    middleware's options."""
    return {"CDPTRACK_" + f.name.upper() for f in fields(Config)} | set(env_option_names())


def _observe_options(environ: Mapping[str, str], result: Diagnosis) -> None:
    """Check the middleware options set in ``environ`` as the adapters read them, and
    list them (a session secret masked)."""
    names = env_option_names()
    try:
        ObserveOptions.from_env(environ)
    except (ConfigError, TypeError, ValueError) as err:
        result.errors.append(f"middleware options cannot work: {err}")
    for variable in sorted(names):
        value = environ.get(variable)
        if value:
            shown = "<redacted>" if names[variable] == "session_secret" else value
            result.options[variable] = shown


def diagnose(environ: Mapping[str, str]) -> Diagnosis:
    """Read the ``CDPTRACK_*`` settings from ``environ`` and say what they add up to."""
    result = Diagnosis()
    known = known_variables()
    for name in sorted(k for k in environ if k.startswith("CDPTRACK_")):
        if name not in known and name not in _NOT_SETTINGS:
            close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)
            hint = f" (did you mean {close[0]}?)" if close else ""
            result.warnings.append(f"{name} is not a cdptrack setting{hint}")
    try:
        config = Config.from_env(environ)
    except (ConfigError, TypeError, ValueError) as err:
        result.errors.append(f"configuration cannot work: {err}")
        return result
    result.config = config
    _observe_options(environ, result)
    settings = config.describe()
    result.settings = {k: v for k, v in settings.items()
                       if k in ("dry_run", "customerio_region", "customerio_strict")}
    try:
        result.outbox = describe_outbox(config.outbox)
    except ConfigError as err:
        result.errors.append(f"configuration cannot work: {err}")
    enabled = set(config.enabled())
    urls = {
        "yespo_tracker": config.yespo_tracker_url,
        "yespo_events": config.yespo_api_url,
        "customerio": config.customerio_base_url,
        "orangepill": config.orangepill_url,
    }
    for name in DESTINATIONS:
        on = name in enabled
        if on:
            detail = _what_is_set(name, config)
        else:
            detail = "off: set " + " and ".join(NEEDS[name])
            if environ.get(URL_SETTINGS[name]):
                result.warnings.append(
                    f"{URL_SETTINGS[name]} is set but {name} is off "
                    f"({' '.join(NEEDS[name])} missing)"
                )
        result.destinations.append(Destination(name, on, urls[name], detail))
    if not enabled:
        result.errors.append(
            "no destination is on: set at least one of " + ", ".join(
                n for needs in NEEDS.values() for n in needs
            )
        )
    if environ.get("CDPTRACK_CUSTOMERIO_URL") and environ.get("CDPTRACK_CUSTOMERIO_REGION"):
        result.warnings.append(
            "CDPTRACK_CUSTOMERIO_URL overrides CDPTRACK_CUSTOMERIO_REGION"
        )
    if config.dry_run:
        result.warnings.append("CDPTRACK_DRY_RUN is on: requests are built and logged, "
                               "nothing is sent")
    if "yespo_events" in enabled and "yespo_tracker" not in enabled:
        result.warnings.append("Yespo events are on but the web tracker is not "
                               "(set CDPTRACK_YESPO_SITE_ID for product pages and carts)")
    return result


def _what_is_set(name: str, config: Config) -> str:
    if name == "yespo_tracker":
        auth = " with Basic auth" if config.yespo_api_key and config.yespo_tracker_auth else ""
        return f"site id {config.yespo_site_id}{auth}"
    if name == "yespo_events":
        return "API key <redacted>"
    if name == "customerio":
        strict = ", strict mode" if config.customerio_strict else ""
        region = config.customerio_region if not config.customerio_url else "custom URL"
        return f"API key <redacted>, region {region}{strict}"
    return "API key <redacted>"


def describe_outbox(url: str) -> OutboxState:
    """What ``CDPTRACK_OUTBOX`` says, without touching a file or the network (a bad URL
    raises :class:`ConfigError`)."""
    outbox = open_outbox(url)  # parses only; nothing is opened or connected
    shown = redact_url(url.strip() or "memory")
    try:
        kind = type(outbox).__name__.removesuffix("Outbox").lower()
        if kind == "memory":
            return OutboxState("memory", shown, "in this process's memory: accepted events "
                               "are lost if it exits before they are sent")
        if kind == "sqlite":
            path = os.path.abspath(str(getattr(outbox, "path", "")))
            return OutboxState("sqlite", shown, f"file {path} (survives a crash)")
        options = ", ".join(f"{name} {getattr(outbox, name)}" for name in (
            "prefix", "role", "claim_idle", "max_deliveries"))
        return OutboxState("redis", shown, f"Redis Streams shared by a fleet ({options})")
    finally:
        outbox.close()


def inspect_outbox(state: OutboxState, url: str, destinations: tuple[str, ...],
                   timeout: float) -> None:
    """Look at the outbox, read-only, and fill in ``state.usable``, ``answer`` and
    ``counts``."""
    if state.kind == "memory":
        state.usable, state.answer = True, "nothing to check"
        return
    outbox = open_outbox(url)
    try:
        if state.kind == "sqlite":
            _inspect_sqlite(state, str(getattr(outbox, "path", "")))
        else:
            _inspect_redis(state, outbox, destinations, timeout)
    finally:
        with contextlib.suppress(Exception):  # a client that never connected
            outbox.close()


def _inspect_sqlite(state: OutboxState, path: str) -> None:
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    existing = directory
    while not os.path.exists(existing):  # the tracker creates missing directories
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        state.usable, state.answer = False, f"{existing} is not a directory"
        return
    if not os.access(existing, os.W_OK | os.X_OK):
        state.usable, state.answer = False, f"directory {existing} is not writable"
        return
    if not os.path.exists(path):
        state.usable = True
        state.answer = "directory writable; the file is created on first use"
        return
    if not os.access(path, os.R_OK | os.W_OK):
        state.usable, state.answer = False, f"{path} is not readable and writable"
        return
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2.0)
        try:
            tables = {row[0] for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            counts = {"undelivered": 0, "dead": 0}
            if "events" in tables:
                counts["undelivered"] = int(
                    conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])
            if "deliveries" in tables:
                for name, n in conn.execute("SELECT destination, COUNT(*) FROM deliveries "
                                            "GROUP BY destination ORDER BY destination"):
                    counts[f"waiting:{name}"] = int(n)
            if "dead_letters" in tables:
                counts["dead"] = int(
                    conn.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error as err:
        state.usable, state.answer = False, f"{path} cannot be read: {err}"
        return
    state.usable, state.counts = True, counts
    waiting = ", ".join(f"{k.partition(':')[2]} {n}" for k, n in counts.items()
                        if k.startswith("waiting:"))
    state.answer = (f"directory writable, file readable; {counts['undelivered']} events "
                    f"not yet delivered everywhere" + (f" ({waiting})" if waiting else "")
                    + f", {counts['dead']} dead letters")


def _inspect_redis(state: OutboxState, outbox: Outbox, destinations: tuple[str, ...],
                   timeout: float) -> None:
    from ..delivery.outbox_redis import RedisOutbox

    assert isinstance(outbox, RedisOutbox)
    started = time.monotonic()
    try:
        lengths = outbox.remaining(destinations)
        dead = outbox.dead_count()
    except Exception as err:  # redis errors: the client is imported lazily
        refused = "Authentication" in type(err).__name__ or "NOAUTH" in str(err)
        what = "refuses the credentials" if refused else "unreachable"
        state.usable, state.answer = False, f"{what} ({outbox.scrub(err)})"
        return
    elapsed = (time.monotonic() - started) * 1000
    state.usable = True
    state.counts = {**lengths, "dead": dead}
    streams = ", ".join(f"{name} {n}" for name, n in lengths.items())
    state.answer = (f"answers ({elapsed:.0f} ms); stream lengths: {streams}; "
                    f"{dead} dead letters")


@dataclass(frozen=True)
class Probe:
    """A request that checks an endpoint and its credentials and creates nothing."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None

    def __repr__(self) -> str:  # headers hold credentials
        return f"Probe({self.method} {self.url})"


def _reveal(secret: Secret | None) -> str:
    return secret.reveal() if secret is not None else ""


def probe_request(name: str, config: Config) -> Probe:
    """The request that checks ``name``'s base URL and credentials without an event."""
    json_type = {"Content-Type": "application/json"}
    if name == "yespo_tracker":
        headers = dict(json_type)
        if config.yespo_tracker_auth and config.yespo_api_key:
            headers["Authorization"] = basic_auth("cdptrack", _reveal(config.yespo_api_key))
        return Probe("POST", config.yespo_tracker_url, headers, b"{}")
    if name == "yespo_events":
        headers = {**json_type,
                   "Authorization": basic_auth("cdptrack", _reveal(config.yespo_api_key))}
        return Probe("POST", config.yespo_api_url.rstrip("/") + "/event", headers, b"{}")
    if name == "customerio":
        headers = {**json_type,
                   "Authorization": basic_auth(_reveal(config.customerio_api_key), ""),
                   "X-Strict-Mode": "1"}
        return Probe("POST", config.customerio_base_url.rstrip("/") + "/batch", headers,
                     b'{"batch": []}')
    if name == "orangepill":
        headers = {"x-api-key": _reveal(config.orangepill_api_key)}
        url = config.orangepill_url.rstrip("/") + "/identities/persons?limit=1"
        return Probe("GET", url, headers, None)
    raise ValueError(f"unknown destination {name!r}")


def judge(status: int) -> tuple[str, str]:
    """An HTTP status of a probe → (verdict, what it means)."""
    if 200 <= status < 300:
        return "ok", "URL and key accepted"
    if status in (400, 422):
        return "ok", "URL and key accepted (the empty probe body was refused, as expected)"
    if status in (401, 403):
        return "wrong_key", "the API refused the key: check the API key"
    if status in (404, 405):
        return "wrong_url", "no such endpoint: check the base URL"
    if status >= 500:
        return "api_error", "the API is failing; try again later"
    return "unexpected", "an answer doctor cannot interpret"


def probe(request: Probe, timeout: float, secrets: tuple[str, ...] = ()
          ) -> tuple[str, str]:
    """Send the probe; return (verdict, a line for the report)."""
    import httpx

    started = time.monotonic()
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            response = client.request(request.method, request.url, headers=request.headers,
                                      content=request.body)
    except httpx.TimeoutException:
        return "timeout", f"no answer within {timeout:g} s"
    except httpx.HTTPError as err:
        text = f"{type(err).__name__}: {err}"
        for secret in secrets:
            if secret:
                text = text.replace(secret, "<redacted>")
        return "refused", f"unreachable ({text})"
    elapsed = (time.monotonic() - started) * 1000
    verdict, meaning = judge(response.status_code)
    return verdict, f"HTTP {response.status_code} in {elapsed:.0f} ms: {meaning}"


def check_live(result: Diagnosis, timeout: float, outbox_url: str | None = None) -> None:
    """Probe each enabled destination and look at the outbox (see the module docstring)."""
    config = result.config
    if config is None:
        return
    secrets = tuple(_reveal(secret) for secret in (
        config.yespo_api_key, config.customerio_api_key, config.orangepill_api_key))
    for dest in result.destinations:
        if dest.on:
            request = probe_request(dest.name, config)
            dest.verdict, dest.answer = probe(request, timeout, secrets)
            dest.reachable = dest.verdict == "ok"
    if result.outbox is not None and outbox_url is not None:
        enabled = tuple(d.name for d in result.destinations if d.on)
        inspect_outbox(result.outbox, outbox_url, enabled, timeout)


def report(result: Diagnosis, live: bool) -> str:
    lines = ["cdptrack doctor", ""]
    for dest in result.destinations:
        mark = "on " if dest.on else "off"
        lines.append(f"  {mark}  {TITLES[dest.name]} ({dest.name})")
        if dest.on:
            lines.append(f"       {dest.detail}")
            lines.append(f"       -> {dest.url}")
            if live:
                sign = "ok" if dest.reachable else "FAIL"
                lines.append(f"       {sign}: {dest.answer}")
        else:
            lines.append(f"       {dest.detail}")
    box = result.outbox
    if box is not None:
        lines += ["", f"  outbox: {box.url}", f"       {box.detail}"]
        if box.usable is not None:
            lines.append(f"       {'ok' if box.usable else 'FAIL'}: {box.answer}")
        elif box.kind != "memory":
            lines.append("       (--live looks at it)")
    if result.settings:
        lines += ["", "  " + ", ".join(f"{k}={v}" for k, v in result.settings.items())]
    if result.options:
        lines += ["", "  middleware options from the environment:"]
        lines += [f"    {k}={v}" for k, v in result.options.items()]
    for warning in result.warnings:
        lines.append(f"  warning: {warning}")
    for error in result.errors:
        lines.append(f"  error: {error}")
    lines += ["", "all good" if result.ok else "something needs attention"]
    return "\n".join(lines)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--live", action="store_true",
                        help="also check that each enabled endpoint answers (no event sent)")
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="seconds to wait for each endpoint with --live (default 5)")
    parser.add_argument("--json", action="store_true", help="print the diagnosis as JSON")


def run(args: argparse.Namespace) -> int:
    result = diagnose(os.environ)
    if args.live and not result.errors:
        check_live(result, args.timeout, os.environ.get("CDPTRACK_OUTBOX") or "memory")
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(report(result, args.live))
    return 0 if result.ok else 1
