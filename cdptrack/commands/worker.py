"""``cdptrack worker``: drain a shared Redis outbox.

The Redis Streams outbox is not built yet; until it is, this command says so and exits
with status 2.  Use the SQLite outbox (one host) or the in-process sender meanwhile.
"""

from __future__ import annotations

import argparse
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--outbox", help="redis://host:port/db (default: CDPTRACK_OUTBOX)")


def run(args: argparse.Namespace) -> int:
    print("cdptrack worker: the Redis outbox is not supported yet. Web processes send "
          "their own events (CDPTRACK_OUTBOX=memory, or sqlite:///path for durability); "
          "no worker is needed for those.", file=sys.stderr)
    return 2
