"""``cdptrack demo``: the example shop, a local sink and its inspector page, wired
together with no credentials needed.

The shop (Flask by default, ``--framework fastapi``) runs on 127.0.0.1 in a thread with
dummy credentials (site id ``DEMO``, keys ``demo-key``: masked like real ones); its
tracker sends to the sink, whose inspector shows every request live.  ``--shoppers N``
walks N simulated shoppers through the store over real HTTP; with ``--exit`` the demo
then flushes, prints what each API received and exits non-zero when a request failed
validation, an API received nothing, or a shopper hit an error.  ``--exit`` without
``--shoppers`` walks :data:`EXIT_SHOPPERS` shoppers (a demo that exits must have
browsed something).  ``CDPTRACK_*``
variables set in the environment win over the demo's own (e.g. a base URL of your own).
"""

from __future__ import annotations

import argparse
import importlib
import os
import socket
import sys
import threading
import time
import webbrowser
from collections.abc import Mapping
from typing import Any

HELP = "the example shop, a local sink and its inspector page, wired together"

DEMO_SETTINGS: dict[str, str] = {
    "CDPTRACK_YESPO_SITE_ID": "DEMO",
    "CDPTRACK_YESPO_API_KEY": "demo-key",
    "CDPTRACK_CUSTOMERIO_API_KEY": "demo-key",
    "CDPTRACK_ORANGEPILL_API_KEY": "demo-key",
}

# Shoppers walked by ``--exit`` when ``--shoppers`` is not given.
EXIT_SHOPPERS = 3


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--framework", choices=("flask", "fastapi"), default="flask",
                        help="which example shop to run (default flask)")
    parser.add_argument("--port", type=int, default=5000,
                        help="the shop's port on 127.0.0.1 (default 5000, 0 = any free)")
    parser.add_argument("--sink-port", type=int, default=8765,
                        help="the sink and inspector's port (default 8765, 0 = any free)")
    parser.add_argument("--shoppers", type=int, default=None, metavar="N",
                        help="walk N simulated shoppers through the store (default: "
                             f"none, or {EXIT_SHOPPERS} with --exit)")
    parser.add_argument("--concurrency", type=int, default=4,
                        help="shoppers at a time (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the shoppers' choices")
    parser.add_argument("--exit", action="store_true",
                        help="after the shoppers: flush, print a summary and exit "
                             "(non-zero if anything failed validation or an API got "
                             f"nothing); implies --shoppers {EXIT_SHOPPERS} when not given")
    parser.add_argument("--flush-timeout", type=float, default=30.0,
                        help="seconds to wait for delivery with --exit (default 30)")
    parser.add_argument("--record", metavar="FILE", help="also record requests to FILE")
    parser.add_argument("--fail", metavar="SPEC",
                        help="make the sink fail on purpose (see cdptrack sink --fail)")
    parser.add_argument("--no-browser", action="store_true",
                        help="do not open the inspector in a browser")


def demo_environment(sink_env: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, str]:
    """Demo credentials and the sink's URLs, with ``CDPTRACK_*`` from ``environ`` winning."""
    explicit = {k: v for k, v in environ.items() if k.startswith("CDPTRACK_") and v}
    return {**DEMO_SETTINGS, **sink_env, **explicit}


class ShopServer:
    """An example shop served on 127.0.0.1 from a background thread."""

    def __init__(self, framework: str, app: Any, port: int) -> None:
        self.framework = framework
        self.app = app
        self.requested_port = port
        self.port = 0
        self._thread: threading.Thread | None = None
        self._stop: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        if self.framework == "flask":
            self._start_werkzeug()
        else:
            self._start_uvicorn()

    def _start_werkzeug(self) -> None:
        from werkzeug.serving import make_server

        server = make_server("127.0.0.1", self.requested_port, self.app, threaded=True)
        self.port = server.server_port
        self._thread = threading.Thread(target=server.serve_forever, name="demo-shop",
                                        kwargs={"poll_interval": 0.1}, daemon=True)
        self._stop = server.shutdown
        self._thread.start()

    def _start_uvicorn(self) -> None:
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.requested_port))
        self.port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning",
                                               lifespan="off", access_log=False))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                                  name="demo-shop", daemon=True)

        def stop() -> None:
            server.should_exit = True

        self._thread, self._stop = thread, stop
        thread.start()
        deadline = time.monotonic() + 15
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not server.started:
            raise RuntimeError("the FastAPI shop did not start")

    def stop(self) -> None:
        if self._stop is not None:
            self._stop()
            self._stop = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None


def _load_shop(framework: str, config: Any, tracker: Any) -> Any:
    """The example shop's app (imported by name: the examples are an optional part of
    the installation, mapped into the package as ``cdptrack.examples``)."""
    module = importlib.import_module(f"cdptrack.examples.{framework}_shop.app")
    return module.create_app(config, tracker=tracker)


def shop_routes(framework: str, app: Any, config: Any) -> dict[str, Any] | None:
    """The example shop's route table (as ``cdptrack routes`` prints it) for the
    inspector page; ``None``, logged, if it cannot be made: the demo runs on."""
    from ..route_table import route_table

    try:
        adapter = importlib.import_module(
            f"cdptrack.integrations.{'flask' if framework == 'flask' else 'starlette'}")
        return route_table(adapter.app_routes(app), config,
                           app=f"cdptrack.examples.{framework}_shop:create_app()")
    except Exception:
        import logging

        logging.getLogger("cdptrack").warning("cdptrack demo: no route table for the "
                                              "inspector", exc_info=True)
        return None


def shopper_count(shoppers: int | None, exit_after: bool) -> int:
    """Shoppers to walk: the ``--shoppers`` given, else :data:`EXIT_SHOPPERS` with
    ``--exit`` (which judges what the APIs received), else none."""
    if shoppers is not None:
        return max(0, shoppers)
    return EXIT_SHOPPERS if exit_after else 0


def run(args: argparse.Namespace) -> int:
    import logging

    from ..config import Config, ConfigError
    from ..sink import FailurePlan, FaultSpecError, Sink
    from ..tracker import Tracker

    shoppers = shopper_count(args.shoppers, args.exit)

    if not getattr(args, "verbose", False):
        # One INFO line per delivered request would bury the summary.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        if shoppers:
            logging.getLogger("werkzeug").setLevel(logging.WARNING)
    try:
        failures = FailurePlan.parse(args.fail) if args.fail else None
    except FaultSpecError as err:
        print(f"cdptrack demo: {err}", file=sys.stderr)
        return 2
    sink = Sink("127.0.0.1", args.sink_port, record=args.record, fail=failures)
    try:
        sink.start()
    except OSError as err:
        print(f"cdptrack demo: the sink cannot listen on port {args.sink_port}: {err} "
              "(try --sink-port 0)", file=sys.stderr)
        return 1
    tracker: Any = None
    shop: ShopServer | None = None
    try:
        try:
            config = Config.from_env(demo_environment(sink.env(), os.environ))
        except ConfigError as err:
            print(f"cdptrack demo: {err}", file=sys.stderr)
            return 2
        tracker = Tracker(config, max_retry_time=max(5.0, args.flush_timeout / 2))
        sink.watch_tracker(tracker)  # the inspector shows what it did not send, and why
        shop = ShopServer(args.framework, _load_shop(args.framework, config, tracker),
                          args.port)
        try:
            shop.start()
        except OSError as err:
            print(f"cdptrack demo: the shop cannot listen on port {args.port}: {err} "
                  "(try --port 0)", file=sys.stderr)
            return 1
        sink.routes = shop_routes(args.framework, shop.app, config)
        print(_banner(shop, sink, config), flush=True)
        if not args.no_browser and not args.exit:
            webbrowser.open(sink.url + "/")
        runs: list[Any] = []
        if shoppers > 0:
            from .demo_shoppers import run_shoppers

            print(f"\n{shoppers} shoppers are walking through the store…", flush=True)
            runs = run_shoppers(shop.url, shoppers, args.framework, seed=args.seed,
                                concurrency=args.concurrency)
        if not args.exit:
            print("\nPress Ctrl-C to stop.", flush=True)
            while True:
                time.sleep(3600)
        flushed = tracker.flush(args.flush_timeout)
        return _summarize(sink, config, tracker, runs, flushed)
    except KeyboardInterrupt:
        return 0
    finally:
        if shop is not None:
            shop.stop()
        if tracker is not None:
            tracker.shutdown(2.0)
        sink.stop()


def _banner(shop: ShopServer, sink: Any, config: Any) -> str:
    lines = [
        f"cdptrack demo ({shop.framework} shop)",
        f"  shop:      {shop.url}/",
        f"  inspector: {sink.url}/",
        "",
        "Destinations (dummy credentials, masked everywhere):",
    ]
    urls = {
        "yespo_tracker": config.yespo_tracker_url, "yespo_events": config.yespo_api_url,
        "customerio": config.customerio_base_url, "orangepill": config.orangepill_url,
    }
    for name in config.enabled():
        lines.append(f"  {name:<14} -> {urls[name]}")
    return "\n".join(lines)


def _summarize(sink: Any, config: Any, tracker: Any, runs: list[Any], flushed: bool) -> int:
    summary = sink.summary()
    ours = {name for name, url in sink.base_urls().items()
            if url in (config.yespo_tracker_url, config.yespo_api_url,
                       config.customerio_base_url, config.orangepill_url)}
    problems: list[str] = []
    lines = ["", "What each API received:"]
    for name in config.enabled():
        entry = summary.get(name)
        if name not in ours:
            lines.append(f"  {name:<14} (sent to your own URL, not this sink)")
            continue
        if not entry:
            lines.append(f"  {name:<14} nothing")
            problems.append(f"{name} received nothing")
            continue
        lines.append(
            f"  {name:<14} {entry['requests']:>4} requests  {entry['events']:>4} events  "
            f"{entry['valid']:>4} valid  {entry['invalid']:>3} invalid"
            + (f"  {entry['faults']} failed on purpose" if entry["faults"] else "")
        )
        by_event = ", ".join(f"{k} {v}" for k, v in entry["by_event"].items())
        lines.append(f"      {by_event}")
        for problem, count in list(entry["problems"].items())[:5]:
            lines.append(f"      invalid ({count}x): {problem}")
        if entry["invalid"]:
            problems.append(f"{name}: {entry['invalid']} invalid")
    stats = tracker.stats()
    dead = {name: s.get("dead", 0) for name, s in stats.items() if s.get("dead", 0)}
    if dead:
        problems.append(f"dead letters: {dead}")
    if not flushed:
        problems.append("delivery did not finish within --flush-timeout")
    errors = [e for run in runs for e in run.errors]
    if runs:
        orders = sum(1 for run in runs if run.order_id)
        lines.append(f"\nShoppers: {len(runs)}, orders placed: {orders}, "
                     f"shop errors: {len(errors)}")
        for error in errors[:5]:
            lines.append(f"  {error}")
        if errors:
            problems.append(f"{len(errors)} shop errors")
    lines.append("")
    lines.append("OK" if not problems else "FAILED: " + "; ".join(problems))
    print("\n".join(lines), flush=True)
    return 0 if not problems else 1
