"""Helpers for delivery tests: four local APIs, a config pointing at them, events that
every destination accepts, and ways to find one event in what each API received."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from cdptrack.config import Config
from cdptrack.events import Event, track

from .api_server import ApiServer

API_KEYS = {
    "yespo_api_key": "yespo-SECRET-key-1234",
    "customerio_api_key": "cio-SECRET-key-5678",
    "orangepill_api_key": "op-SECRET-key-9012",
}
SECRETS = tuple(API_KEYS.values())

# Fast retries for tests (production defaults are 0.5 s doubling to 30 s).
FAST = {"backoff": 0.01, "max_backoff": 0.05, "max_retry_after": 0.2}


@dataclass
class FourApis:
    """One local server per destination, so one can fail while the others work."""

    tracker: ApiServer
    events: ApiServer
    customerio: ApiServer
    orangepill: ApiServer

    def __iter__(self) -> Iterator[ApiServer]:
        return iter((self.tracker, self.events, self.customerio, self.orangepill))

    def by_destination(self) -> dict[str, ApiServer]:
        return {"yespo_tracker": self.tracker, "yespo_events": self.events,
                "customerio": self.customerio, "orangepill": self.orangepill}

    def config(self, **overrides: Any) -> Config:
        values: dict[str, Any] = {
            "yespo_site_id": "site-1",
            **API_KEYS,
            "yespo_tracker_url": self.tracker.url + "/api/v2",
            "yespo_api_url": self.events.url + "/api/v1",
            "customerio_url": self.customerio.url + "/v1",
            "orangepill_url": self.orangepill.url + "/v1",
        }
        values.update(overrides)
        return Config(**values)


@pytest.fixture(name="apis")
def apis_fixture() -> Iterator[FourApis]:
    """Import ``apis_fixture`` into a test module to get the ``apis`` fixture."""
    servers = FourApis(ApiServer(), ApiServer(), ApiServer(), ApiServer())
    for server in servers:
        server.start()
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()


def product_viewed(i: int, **visitor: str) -> Event:
    """An event every destination takes: it has a contact key and an Orangepill id."""
    who = {"sc": "CDA68358-94FB-4D83-9655-3FEB3C4114A3", "email": f"buyer{i}@example.com",
           "orangepill_identity": "634b56217f6a7b0be52dffbd", **visitor}
    return track("Product Viewed", {"product_id": f"sku-{i:05d}", "price": 10 + i,
                                    "currency": "USD"}, visitor=who)


def marker(i: int) -> str:
    return f"sku-{i:05d}"


def markers_received(server: ApiServer, prefix: str = "/") -> dict[str, list[Any]]:
    """``sku-NNNNN`` -> every accepted message that mentions it (duplicates included)."""
    found: dict[str, list[Any]] = {}
    for request, message in server.accepted_messages(prefix):
        text = json.dumps(message)
        start = text.find("sku-")
        while start != -1:
            key = text[start:start + 9]
            found.setdefault(key, []).append((request, message))
            start = text.find("sku-", start + 9)
    return found


def all_arrived(apis: FourApis, n: int) -> bool:
    wanted = {marker(i) for i in range(n)}
    return all(wanted <= set(markers_received(server)) for server in apis)
