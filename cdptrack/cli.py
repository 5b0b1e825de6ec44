"""The ``cdptrack`` command.  Each subcommand lives in ``cdptrack/commands/<name>.py`` and
exposes ``HELP``, ``configure(parser)`` and ``run(args) -> int``; it is imported only when
used, so ``cdptrack render`` never pays for the sink's or the demo's imports."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from types import ModuleType

COMMANDS: dict[str, str] = {
    "demo": "the example shop, a local sink and its inspector page, wired together",
    "sink": "a local collector that answers like the four APIs and shows requests live",
    "render": "canonical events (JSON lines on stdin) to wire requests, nothing sent",
    "send": "deliver canonical events (JSON lines) through the outbox and sender",
    "replay": "re-send dead letters from a durable outbox",
    "worker": "drain a shared (Redis) outbox",
    "doctor": "what is configured, what is missing, and whether endpoints answer",
    "routes": "the app's routes: page kind, key, and the events a GET / a POST sends",
}


# Optional packages and the extra that installs each.
EXTRAS = {"jsonschema": "sink", "flask": "flask", "fastapi": "fastapi", "uvicorn": "fastapi",
          "starlette": "starlette", "redis": "redis", "django": "django"}


VERBOSE_HELP = "log every HTTP request and debug details (default: warnings and summaries)"

# Loggers that write a line per HTTP request, and the tracker's start-up line (the
# commands say what they do themselves); heard only with -v.
CHATTY_LOGGERS = ("cdptrack.http", "cdptrack.start", "httpx", "httpcore")


def configure_logging(verbose: bool) -> None:
    """Log to stderr: cdptrack's own INFO lines by default, and with ``verbose`` DEBUG
    lines plus one line per HTTP request (thousands for a big ``send``)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"cdptrack.commands.{name}")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except ModuleNotFoundError as error:
        package = (error.name or "").split(".")[0]
        if package not in EXTRAS:
            raise
        print(f"cdptrack: this command needs the '{package}' package: "
              f"pip install 'cdptrack[{EXTRAS[package]}]'", file=sys.stderr)
        return 2


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Only the chosen subcommand's module is imported.
    chosen = next((a for a in argv if a in COMMANDS), None)
    parser = argparse.ArgumentParser(prog="cdptrack")
    parser.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, summary in COMMANDS.items():
        cmd = sub.add_parser(name, help=summary, description=summary)
        # Also after the command (`cdptrack send -v`); SUPPRESS keeps a `-v` given before it.
        cmd.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                         help=VERBOSE_HELP)
        if name == chosen:
            _module(name).configure(cmd)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    configure_logging(args.verbose)
    try:
        return int(_module(args.command).run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
