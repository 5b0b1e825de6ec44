"""``cdptrack render`` through the installed command, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

SECRETS = {
    "CDPTRACK_YESPO_SITE_ID": "8A412DC",
    "CDPTRACK_YESPO_API_KEY": "yespo-TOPSECRET",
    "CDPTRACK_CUSTOMERIO_API_KEY": "cio-TOPSECRET",
    "CDPTRACK_ORANGEPILL_API_KEY": "op-TOPSECRET",
}
KNOWN = {"sc": "CDA68358-94FB-4D83-9655-3FEB3C4114A3", "user_id": "u-17",
         "email": "jane@example.com", "orangepill_identity": "634b56217f6a7b0be52dffbd"}
ANONYMOUS = {"sc": "0B5C2A9E-1111-4D83-9655-3FEB3C4114A3"}


def render(lines: list[str], env: dict[str, str] | None = None,
           *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CDPTRACK_")}
    return subprocess.run(
        [sys.executable, "-m", "cdptrack.cli", "render", *args],
        input="\n".join(lines) + "\n", capture_output=True, text=True,
        env={**clean, **(env or {})}, timeout=60, check=False,
    )


def event(**data: Any) -> str:
    return json.dumps({"type": "track", **data})


def test_every_event_kind_renders_for_known_and_anonymous_visitors() -> None:
    kinds = [
        {"type": "page", "properties": {"url": "https://shop.example/"}},
        {"event": "Product Viewed", "properties": {"product_id": "1", "price": "9.90"}},
        {"event": "Product List Viewed", "properties": {"category": "Mugs"}},
        {"event": "Cart Updated", "properties": {"products": [{"product_id": "1"}],
                                                  "added": [{"product_id": "1"}]}},
        {"event": "Order Completed", "properties": {"order_id": "o1", "total": 9.9}},
        {"event": "Products Searched", "properties": {"query": "mug", "results": 2}},
        {"type": "identify", "traits": {"first_name": "Jane"}},
    ]
    lines = [event(**{**k, "visitor": v}) for v in (KNOWN, ANONYMOUS) for k in kinds]
    result = render(lines, SECRETS)
    assert result.returncode == 0, result.stderr
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert {o["destination"] for o in out} == {"yespo_tracker", "yespo_events", "customerio",
                                               "orangepill"}
    for line in out:
        assert set(line) == {"destination", "method", "url", "headers", "json"}
    # Anonymous visitors have no contact key or identity: those are counted on stderr.
    assert "no_contact_key" in result.stderr and "no_identity" in result.stderr
    cio = [o["json"] for o in out if o["destination"] == "customerio"]
    assert any(m.get("anonymousId") == ANONYMOUS["sc"] for m in cio)
    assert any(m.get("userId") == "u-17" for m in cio)


def test_secrets_never_appear_in_the_output() -> None:
    result = render([event(event="Product Viewed", visitor=KNOWN,
                           properties={"product_id": "1"})], SECRETS)
    assert result.returncode == 0
    assert "TOPSECRET" not in result.stdout + result.stderr
    headers = [json.loads(line)["headers"] for line in result.stdout.splitlines()]
    assert all(h.get("Authorization", "<redacted>") == "<redacted>" for h in headers)
    assert any(h.get("x-api-key") == "<redacted>" for h in headers)


def test_malformed_lines_are_reported_with_line_numbers_and_others_still_render() -> None:
    lines = [
        event(event="Product Viewed", visitor=KNOWN, properties={"product_id": "1"}),
        "{not json",
        event(event="Product Viewed", properties={"price": "free"}),
        event(event="Product Viewed", visitor=KNOWN, properties={"product_id": "2"}),
    ]
    result = render(lines, SECRETS, "--destination", "customerio")
    assert result.returncode == 1
    assert "<stdin>:2: invalid JSON" in result.stderr
    assert "<stdin>:3: invalid event: properties.price" in result.stderr
    ids = [json.loads(line)["json"]["properties"]["product_id"]
           for line in result.stdout.splitlines()]
    assert ids == ["1", "2"]


def test_without_configuration_all_four_destinations_render_with_placeholders() -> None:
    result = render([event(event="Product Viewed", visitor=KNOWN,
                           properties={"product_id": "1", "price": 10})])
    assert result.returncode == 0
    destinations = [json.loads(line)["destination"] for line in result.stdout.splitlines()]
    assert destinations == ["yespo_tracker", "yespo_events", "customerio", "orangepill"]
    assert "placeholder" in result.stderr
