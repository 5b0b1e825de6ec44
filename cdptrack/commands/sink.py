"""``cdptrack sink``: run the local collector and its inspector page until interrupted."""

from __future__ import annotations

import argparse
import sys

HELP = "a local collector that answers like the four APIs and shows requests live"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1; anything else is exposed)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765, 0 = any)")
    parser.add_argument("--record", metavar="FILE",
                        help="also append every request as a JSON line to FILE")
    parser.add_argument("--fail", metavar="SPEC",
                        help="fail on purpose, e.g. refuse:0.2,503:0.2,429:0.1 "
                             "(modes: refuse, slow, or an HTTP status)")
    parser.add_argument("--fail-every", type=int, metavar="N",
                        help="fail every N-th API request (deterministic), see --fail-mode")
    parser.add_argument("--fail-mode", default="503", metavar="MODE",
                        help="mode for --fail-every: refuse, slow or a status (default 503)")
    parser.add_argument("--fail-seed", type=int, metavar="SEED",
                        help="seed for --fail's random draws (repeatable runs)")
    parser.add_argument("--retry-after", type=int, default=1, metavar="SECONDS",
                        help="Retry-After sent with injected 429/503 (default 1)")
    parser.add_argument("--slow-seconds", type=float, default=2.0,
                        help="delay of the 'slow' failure mode (default 2)")
    parser.add_argument("--limit", type=int, default=5000,
                        help="requests kept in memory for the inspector (default 5000)")


def run(args: argparse.Namespace) -> int:
    from ..sink import FailurePlan, FaultSpecError, Sink

    failures = None
    if args.fail or args.fail_every:
        try:
            failures = FailurePlan.parse(
                args.fail, every=args.fail_every, mode=args.fail_mode, seed=args.fail_seed,
                retry_after=args.retry_after, slow_seconds=args.slow_seconds,
            )
        except FaultSpecError as err:
            print(f"cdptrack sink: {err}", file=sys.stderr)
            return 2
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: binding to {args.host}: anyone who can reach this address can "
              "post to the sink and read what it recorded", file=sys.stderr)
    sink = Sink(args.host, args.port, record=args.record, fail=failures, limit=args.limit)
    try:
        sink.start()
    except OSError as err:
        print(f"cdptrack sink: cannot listen on {args.host}:{args.port}: {err}", file=sys.stderr)
        return 1
    print(banner(sink), flush=True)
    try:
        sink.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        sink.stop()
    return 0


def banner(sink: object) -> str:
    """What to tell a person who just started a sink: the page and the settings."""
    from ..sink import Sink

    assert isinstance(sink, Sink)
    lines = [f"cdptrack sink on {sink.url}", f"  inspector: {sink.url}/", "",
             "Point a shop at it with these variables. A shop sends nothing to an API",
             "whose key is unset, so set dummy keys too (the sink takes any key and",
             "never records it):"]
    lines += [f"  export {name}={value}" for name, value in sink.shop_env().items()]
    lines += ["", "What it received, as JSON: GET /api/summary (counts per API), "
                  "GET /api/requests",
              "(the records); POST /api/clear forgets them."]
    if sink.failures:
        lines += ["", f"Failing on purpose: {sink.failures.describe()}"]
    if sink.recorder.path:
        lines += ["", f"Recording to {sink.recorder.path}"]
    return "\n".join(lines)
