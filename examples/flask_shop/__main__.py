"""``python -m cdptrack.examples.flask_shop [--host 127.0.0.1] [--port 5000]``."""

from __future__ import annotations

import argparse

from .app import create_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cdptrack.examples.flask_shop",
                                     description="The cdptrack Flask storefront example.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args(argv)
    create_app().run(host=args.host, port=args.port, debug=False, use_reloader=False)


if __name__ == "__main__":
    main()
