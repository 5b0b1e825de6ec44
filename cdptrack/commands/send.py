"""``cdptrack send``: deliver canonical events (JSON lines from stdin or files) through
the same outbox and sender an app uses.

A progress bar is drawn on stderr when it is a terminal, a plain summary otherwise.
Malformed lines (bad JSON, or an event that fails validation) are reported on stderr
with file and line number and not sent.  Exit status: 0 when every event was delivered
(or skipped by a renderer with a counted reason such as ``no_contact_key``); 1 when a line
was malformed, something was dead-lettered, or events were not delivered in time (with
the SQLite outbox they stay there for the next run or ``cdptrack replay``); 2 for a
configuration error.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import IO, TextIO

from ..config import Config, ConfigError
from ..delivery.counters import format_table
from ..delivery.progress import Progress
from ..tracker import Tracker
from .event_lines import EventLines

# Drops that mean an event was lost, as opposed to a renderer's "not for this API".
LOSS_REASONS = frozenset({"queue_full", "shutdown", "invalid", "error", "render_error"})
# Dead letters printed after the summary; the rest are counted in the table.
SHOWN_DEAD_LETTERS = 5


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "files", nargs="*", type=argparse.FileType("r", encoding="utf-8"),
        help="JSON-lines files of canonical events (default: stdin)",
    )
    add_delivery_options(parser)
    parser.add_argument("--dry-run", action="store_true",
                        help="build and log the requests, send nothing")


def add_delivery_options(
    parser: argparse.ArgumentParser,
    outbox_help: str = "memory, sqlite:///path or redis://host:port/db "
                       "(default: CDPTRACK_OUTBOX, else memory)",
    timeout_help: str = "seconds to wait for delivery once the input is read "
                        "(default 60); also bounds each request's retries",
) -> None:
    """``--outbox``, ``--timeout`` and ``--quiet``, shared by send and replay."""
    parser.add_argument("--outbox", help=outbox_help)
    parser.add_argument("--timeout", type=float, default=60.0, help=timeout_help)
    parser.add_argument("-q", "--quiet", action="store_true", help="no summary on stderr")


def run(args: argparse.Namespace) -> int:
    try:
        config = Config.from_env(outbox=args.outbox, dry_run=True if args.dry_run else None)
        tracker = Tracker(config, max_retry_time=max(0.0, args.timeout), flush_at_exit=0.0)
    except ConfigError as error:
        print(f"cdptrack send: configuration error: {error}", file=sys.stderr)
        return 2
    if not config.enabled():
        print("cdptrack send: no destination is configured (set CDPTRACK_YESPO_SITE_ID, "
              "CDPTRACK_YESPO_API_KEY, CDPTRACK_CUSTOMERIO_API_KEY or "
              "CDPTRACK_ORANGEPILL_API_KEY)", file=sys.stderr)
        return 2
    mute_summary_log(args)
    sources: list[IO[str]] = args.files or [sys.stdin]
    return send_stream(sources, tracker, sys.stderr, timeout=args.timeout, quiet=args.quiet)


def send_stream(sources: list[IO[str]], tracker: Tracker, err: TextIO, *,
                timeout: float = 60.0, quiet: bool = False,
                progress: Progress | None = None) -> int:
    bar = progress or Progress("cdptrack send", err)
    lines = EventLines(sources, err)
    accepted = 0
    limit = 1000  # events in flight before reading more input (back-pressure)
    for _name, _number, event in lines:
        tracker.capture(event)
        accepted += 1
        if accepted % 100 == 0:
            pending = tracker.pending()
            bar.update(accepted - pending, None, f"{accepted} read")
            while pending >= limit:
                time.sleep(0.01)
                pending = tracker.pending()
    delivered = wait_delivered(tracker, accepted, timeout, bar)
    bar.close()
    stats = tracker.stats()
    tracker.shutdown(1.0)
    lost = report(stats, tracker, err, quiet=quiet, what="send")
    if not delivered:
        left = tracker.pending()
        where = ("they stay in the outbox for the next run" if tracker.outbox.durable
                 else "they are lost")
        print(f"cdptrack send: {left} events not delivered within {timeout:g}s; {where}",
              file=err)
    if lines.bad:
        print(f"cdptrack send: {lines.bad} malformed line(s) not sent", file=err)
    return 0 if delivered and not lost and not lines.bad else 1


def mute_summary_log(args: argparse.Namespace) -> None:
    """The command prints the counters table itself; the tracker's own table at shutdown
    (INFO, or WARNING after a loss) would repeat it (it is still logged with ``-v``)."""
    if not getattr(args, "verbose", False):
        logging.getLogger("cdptrack.summary").setLevel(logging.ERROR)


def wait_delivered(tracker: Tracker, total: int, timeout: float, bar: Progress) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if tracker.flush(0.1):
            bar.update(total, total, force=True)
            return True
        bar.update(max(0, total - tracker.pending()), total)
        if time.monotonic() >= deadline:
            return False


def report(stats: dict[str, dict[str, int]], tracker: Tracker, err: TextIO, *,
           quiet: bool, what: str) -> int:
    """Print the per-destination summary table and the first dead letters; return how
    many requests were lost or dead.  ``skipped:<reason>`` (by design) is never a loss."""
    lost = 0
    for row in stats.values():
        lost += row.get("dead", 0)
        lost += sum(n for key, n in row.items()
                    if key.startswith("dropped:") and key[8:] in LOSS_REASONS)
    if quiet:
        return lost
    print(f"cdptrack {what}: summary", file=err)
    print(format_table(stats), file=err)
    letters = tracker.dead_letters(SHOWN_DEAD_LETTERS + 1)
    for letter in letters[:SHOWN_DEAD_LETTERS]:
        print(f"cdptrack {what}: dead letter: {letter.destination} {letter.method} "
              f"{letter.url} -> {letter.status or 'no answer'} ({letter.reason}, "
              f"{letter.attempts} attempts): {letter.response[:200]}", file=err)
    if len(letters) > SHOWN_DEAD_LETTERS:
        print(f"cdptrack {what}: more dead letters: `cdptrack replay --list` shows them "
              "all (with a durable outbox)", file=err)
    return lost
