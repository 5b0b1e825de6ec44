"""A process that captures events into a SQLite outbox and says which were accepted.

Run as ``python capture_child.py OUTBOX COUNT CONFIG_JSON``.  It prints ``accepted N``
after ``capture`` returned for event N (that is the durability promise's "accepted"), then
keeps going until it is killed; the test SIGKILLs it mid-stream.
"""

from __future__ import annotations

import json
import sys
import time

from cdptrack.config import Config
from cdptrack.tracker import Tracker
from support.delivery import FAST, product_viewed


def main() -> None:
    outbox, count, config_json = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    tracker = Tracker(Config(**json.loads(config_json)), outbox=outbox, **FAST)
    for i in range(count):
        tracker.capture(product_viewed(i))
        print(f"accepted {i}", flush=True)
        time.sleep(0.005)
    print("done", flush=True)
    time.sleep(3600)  # wait to be killed


if __name__ == "__main__":
    main()
