"""A small progress bar for ``cdptrack send`` and ``cdptrack replay``.

Drawn on stderr only when stderr is a terminal (redirected output gets a plain summary
instead, so logs and CI output stay readable); redrawn at most ten times a second.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

WIDTH = 30


class Progress:
    def __init__(self, label: str, stream: TextIO | None = None,
                 enabled: bool | None = None) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._last_draw = 0.0
        self._drawn = False

    def update(self, done: int, total: int | None, note: str = "", force: bool = False
               ) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        if total:
            share = min(1.0, done / total)
            bar = "#" * int(share * WIDTH)
            text = f"{self.label} [{bar:<{WIDTH}}] {done}/{total}"
        else:
            text = f"{self.label} {done} done"
        if note:
            text += f"  {note}"
        self.stream.write("\r" + text + "\x1b[K")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self.enabled and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
