"""``cdptrack replay``: send the dead letters in a durable outbox again.

Each dead letter is re-rendered from its canonical event with the current configuration
(credentials are never stored), so a fixed key or a fixed renderer applies, and sent
through the same sender as the app's events, with a progress bar on a terminal.  A letter
refused again goes back to the dead-letter store.  Exit status: 0 when every replayed
request was accepted, 1 when some failed again or could not be replayed, 2 for a
configuration error (for example a memory outbox, which keeps nothing to replay, or a
SQLite outbox file that does not exist).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from ..config import DESTINATIONS, Config, ConfigError
from ..delivery.outbox_sqlite import SQLiteOutbox
from ..delivery.progress import Progress
from ..tracker import Tracker
from .send import add_delivery_options, mute_summary_log, report, wait_delivered


def configure(parser: argparse.ArgumentParser) -> None:
    add_delivery_options(
        parser,
        outbox_help="the durable outbox holding the dead letters: sqlite:///path (an "
                    "existing file) or redis://host:port/db (default: CDPTRACK_OUTBOX)",
        timeout_help="seconds to wait for the replayed requests to be delivered "
                     "(default 60); also bounds each request's retries",
    )
    parser.add_argument("-d", "--destination", choices=DESTINATIONS,
                        help="replay only this destination's dead letters")
    parser.add_argument("--limit", type=int, default=100_000,
                        help="replay at most this many dead letters (oldest first)")
    parser.add_argument("--list", action="store_true",
                        help="print the dead letters as JSON lines and send nothing")


def run(args: argparse.Namespace) -> int:
    err = sys.stderr
    try:
        config = Config.from_env(outbox=args.outbox)
        tracker = Tracker(config, max_retry_time=max(0.0, args.timeout), flush_at_exit=0.0)
    except ConfigError as error:
        print(f"cdptrack replay: configuration error: {error}", file=err)
        return 2
    if not tracker.outbox.durable:
        print("cdptrack replay: needs a durable outbox holding dead letters: pass "
              "--outbox sqlite:///path/to/outbox.db or set CDPTRACK_OUTBOX", file=err)
        return 2
    mute_summary_log(args)
    if isinstance(tracker.outbox, SQLiteOutbox) and not os.path.isfile(tracker.outbox.path):
        # Opening it would create an empty file (and directories) and find nothing: a typo.
        print(f"cdptrack replay: no outbox file at {tracker.outbox.path}: check the path "
              "(three slashes for a relative path, four for an absolute one)", file=err)
        return 2
    letters = tracker.dead_letters(args.limit, args.destination)
    if args.list:
        for letter in letters:
            print(json.dumps({
                "id": letter.id, "destination": letter.destination,
                "message_id": letter.message_id, "method": letter.method, "url": letter.url,
                "status": letter.status, "reason": letter.reason, "attempts": letter.attempts,
                "response": letter.response, "created": letter.created,
            }, ensure_ascii=False))
        return 0
    # "*": an event that died before it was split per destination; it goes back to all.
    enabled = {*config.enabled(), "*"}
    ready = [d.id for d in letters if d.destination in enabled and d.id is not None]
    blocked = len(letters) - len(ready)
    if blocked:
        print(f"cdptrack replay: {blocked} dead letter(s) are for destinations that are not "
              "configured now; left in place", file=err)
    if not ready:
        if not args.quiet:
            print("cdptrack replay: no dead letters to replay", file=err)
        tracker.shutdown(1.0)
        return 1 if blocked else 0
    moved = tracker.replay_dead(ready)
    bar = Progress("cdptrack replay", err)
    delivered = wait_delivered(tracker, moved, args.timeout, bar)
    bar.close()
    stats = tracker.stats()
    tracker.shutdown(1.0)
    lost = report(stats, tracker, err, quiet=args.quiet, what="replay")
    if not args.quiet:
        print(f"cdptrack replay: {moved} dead letter(s) replayed", file=err)
    if not delivered:
        print(f"cdptrack replay: not all delivered within {args.timeout:g}s; they stay in "
              "the outbox", file=err)
    return 0 if delivered and not lost and not blocked else 1
