"""``cdptrack doctor``: what is configured, what is missing, and (``--live``) whether each
endpoint answers.

The live check sends no event and no credentials: a ``HEAD`` to each enabled
destination's base URL.  Any HTTP answer (even 404 or 405) proves the host is reachable;
a connection error or a timeout does not.  Exit status: 0 when at least one destination
is on and nothing is wrong, 1 otherwise (a setting that cannot work, no destination on,
or with ``--live`` an endpoint that does not answer).
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from ..config import CREDENTIAL_FIELDS, DESTINATIONS, URL_FIELDS, Config, ConfigError, env_name

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


@dataclass
class Diagnosis:
    destinations: list[Destination] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors and all(d.reachable is not False for d in self.destinations)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "destinations": [vars(d) for d in self.destinations],
            "errors": self.errors,
            "warnings": self.warnings,
            "settings": self.settings,
        }


def known_variables() -> set[str]:
    return {"CDPTRACK_" + f.name.upper() for f in fields(Config)}


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
    settings = config.describe()
    result.settings = {k: v for k, v in settings.items()
                       if k in ("outbox", "dry_run", "customerio_region", "customerio_strict")}
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


def probe(url: str, timeout: float) -> tuple[bool, str]:
    """Does anything answer HTTP at ``url``?  Sends no event and no credentials."""
    import httpx

    started = time.monotonic()
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            response = client.head(url)
    except httpx.TimeoutException:
        return False, f"no answer within {timeout:g} s"
    except httpx.HTTPError as err:
        return False, f"unreachable ({type(err).__name__}: {err})"
    elapsed = (time.monotonic() - started) * 1000
    return True, f"answers (HTTP {response.status_code}, {elapsed:.0f} ms)"


def check_live(result: Diagnosis, timeout: float) -> None:
    for dest in result.destinations:
        if dest.on:
            dest.reachable, dest.answer = probe(dest.url, timeout)


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
    if result.settings:
        lines += ["", "  " + ", ".join(f"{k}={v}" for k, v in result.settings.items())]
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
        check_live(result, args.timeout)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(report(result, args.live))
    return 0 if result.ok else 1
