"""``cdptrack render``: canonical events (JSON lines on stdin) → wire requests, one JSON
line each, secrets redacted, nothing sent.

Destinations are the ones the environment configures; with none configured, all four are
rendered with placeholder credentials so the command is useful before any key exists.
A malformed line is reported on stderr with its line number and the others still render;
the exit status is 1 when any line was malformed, else 0.  Events a destination does not
take are counted per reason on stderr, never dropped silently.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from typing import IO

from ..config import DESTINATIONS, Config, ConfigError
from ..destinations import render_event
from .event_lines import EventLines

PLACEHOLDERS = {
    "yespo_site_id": "YOUR_SITE_ID",
    "yespo_api_key": "placeholder",
    "customerio_api_key": "placeholder",
    "orangepill_api_key": "placeholder",
}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "files", nargs="*", type=argparse.FileType("r", encoding="utf-8"),
        help="JSON-lines files of canonical events (default: stdin)",
    )
    parser.add_argument(
        "-d", "--destination", action="append", choices=DESTINATIONS, dest="destinations",
        help="render only for this destination (repeatable)",
    )
    parser.add_argument("--pretty", action="store_true", help="indent each request")
    parser.add_argument("-q", "--quiet", action="store_true", help="no summary on stderr")


def run(args: argparse.Namespace) -> int:
    try:
        config = Config.from_env()
    except ConfigError as error:
        print(f"cdptrack render: configuration error: {error}", file=sys.stderr)
        return 2
    if not config.enabled():
        config = config.with_overrides(**PLACEHOLDERS)
        if not args.quiet:
            print("cdptrack render: no destination configured; rendering all four with "
                  "placeholder credentials", file=sys.stderr)
    sources: list[IO[str]] = args.files or [sys.stdin]
    return render_stream(sources, config, args.destinations, sys.stdout, sys.stderr,
                         pretty=args.pretty, quiet=args.quiet)


def render_stream(
    sources: list[IO[str]],
    config: Config,
    destinations: list[str] | None,
    out: IO[str],
    err: IO[str],
    *,
    pretty: bool = False,
    quiet: bool = False,
) -> int:
    chosen = destinations or list(config.enabled())
    lines = EventLines(sources, err)
    events = 0
    requests = 0
    skipped: Counter[tuple[str, str]] = Counter()
    for name, number, event in lines:
        events += 1
        rendered = render_event(event, config, chosen)
        for request in rendered.requests:
            requests += 1
            out.write(json.dumps(request.to_public_dict(), ensure_ascii=False,
                                 indent=2 if pretty else None) + "\n")
        # A deferred one (an Orangepill identity the sender would look up or create
        # first) is not rendered here: nothing is sent by this command.
        for destination, reason in rendered.skipped + rendered.deferred:
            skipped[(destination, reason)] += 1
            if not quiet and reason != "no_mapping":  # by design; summed below
                print(f"{name}:{number}: {event.label} not sent to {destination}: "
                      f"{reason}", file=err)
    out.flush()
    if not quiet:
        print(f"cdptrack render: {events} event(s) → {requests} request(s); "
              f"{sum(skipped.values())} not sent, {lines.bad} malformed line(s)", file=err)
        for (destination, reason), count in sorted(skipped.items()):
            print(f"  {destination}: {reason}: {count}", file=err)
    return 1 if lines.bad else 0
