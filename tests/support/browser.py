"""What the browser tests share: Debian's Chromium, the flags it runs headless with in
a container, a skip marker for machines without it, and a running sink fixture."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from cdptrack.sink import Sink

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
needs_chromium = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                    reason=f"Debian chromium is not installed at {CHROMIUM}")


@pytest.fixture(name="sink")
def sink_fixture() -> Iterator[Sink]:
    """A local sink (its inspector page included), stopped after the test."""
    with Sink() as running:
        yield running
