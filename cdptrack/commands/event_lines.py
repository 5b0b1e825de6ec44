"""Canonical events read from JSON-lines files, as ``render`` and ``send`` take them.

A malformed line is reported on ``err`` with its file name and line number and counted;
the lines after it are still read.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import IO

from ..events import Event, EventError


class EventLines:
    """Iterate ``(source name, line number, event)``; ``bad`` counts malformed lines."""

    def __init__(self, sources: list[IO[str]], err: IO[str]) -> None:
        self.sources = sources
        self.err = err
        self.bad = 0

    def __iter__(self) -> Iterator[tuple[str, int, Event]]:
        for source in self.sources:
            name = getattr(source, "name", "<stdin>")
            for number, line in enumerate(source, start=1):
                if not line.strip():
                    continue
                try:
                    yield name, number, Event.from_dict(json.loads(line))
                except json.JSONDecodeError as error:
                    self._report(f"{name}:{number}: invalid JSON: {error.msg} "
                                 f"(column {error.colno})")
                except EventError as error:
                    self._report(f"{name}:{number}: invalid event: {error}")

    def _report(self, message: str) -> None:
        self.bad += 1
        print(message, file=self.err)
