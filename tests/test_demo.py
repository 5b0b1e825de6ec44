"""``cdptrack demo --shoppers N --exit`` end to end, as a user runs it: the example shop,
the tracker, the sink and simulated shoppers in one process on free ports; every API
receives valid requests of every page kind, orders count once despite a reload of the
thank-you page, and the dummy key never shows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from cdptrack.sink import Sink

ROOT = Path(__file__).resolve().parent.parent
SHOPPERS = 20

# What each API must receive from a full shopper journey (product, category, cart,
# search, wishlist, sign-in, checkout pages).
EXPECTED: dict[str, set[str]] = {
    "yespo_tracker": {"CategoryPage", "ProductPage", "StatusCart", "SearchRequest",
                      "AddToWishlist", "CustomerData", "PurchasedItems"},
    "yespo_events": {"productCategoryViewed", "productViewed", "cartUpdated", "orderCreated"},
    "customerio": {"Product List Viewed", "Product Viewed", "Product Added", "Product Removed",
                   "Products Searched", "Product Added to Wishlist", "identify",
                   "Order Completed"},
    "orangepill": {"categoryViewed", "productViewed", "cartUpdated", "productsSearched",
                   "addedToWishlist", "person update", "orderCompleted", "create person"},
}
# The Flask storefront serves HTML pages, which are page views too.
PAGE_VIEWS = {"yespo_events": "pageViewed", "customerio": "page", "orangepill": "pageViewed"}


def run_demo(tmp_path: Path, *args: str, env: dict[str, str] | None = None
             ) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    record = tmp_path / "demo.jsonl"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CDPTRACK_")}
    done = subprocess.run(
        [sys.executable, "-m", "cdptrack.cli", "demo", "--port", "0", "--sink-port", "0",
         "--no-browser", "--exit", "--record", str(record), *args],
        env={**clean, **(env or {}), "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=120,
    )
    records = [json.loads(line) for line in record.read_text().splitlines()] \
        if record.exists() else []
    return done, records


@pytest.mark.parametrize("framework", ["flask", "fastapi"])
def test_demo_shoppers_fill_every_api_with_valid_requests(tmp_path: Path, framework: str
                                                          ) -> None:
    done, records = run_demo(tmp_path, "--framework", framework,
                             "--shoppers", str(SHOPPERS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    assert f"Shoppers: {SHOPPERS}, orders placed: {SHOPPERS}, shop errors: 0" in done.stdout
    invalid = [(r["api"], r["event"], r["problems"]) for r in records if not r["valid"]]
    assert invalid == []
    received: dict[str, Counter[str]] = {}
    for record in records:
        received.setdefault(record["api"], Counter())[record["event"]] += 1
    for api, kinds in EXPECTED.items():
        expected = kinds | ({PAGE_VIEWS[api]} if framework == "flask" and api in PAGE_VIEWS
                            else set())
        assert expected <= set(received.get(api, {})), (api, received.get(api))
    # One order per shopper, even though every shopper reloads the thank-you page.
    assert received["customerio"]["Order Completed"] == SHOPPERS
    assert received["yespo_tracker"]["PurchasedItems"] == SHOPPERS
    assert received["yespo_events"]["orderCreated"] == SHOPPERS
    # Each shopper is its own visitor.
    visitors = {r["visitor"] for r in records if r["api"] == "yespo_tracker"}
    assert len(visitors) == SHOPPERS
    # The shops keep no Orangepill identity: one person is created per signed-in
    # shopper, and every person event names an identity a create answered with.
    creates = [r for r in records if r["api"] == "orangepill" and r["event"] == "create person"]
    created = {r["response"]["id"] for r in creates if r["status"] == 200}
    assert len(creates) == len(created) == SHOPPERS
    named = {r["path"].split("/identities/")[1].split("/")[0] for r in records
             if r["api"] == "orangepill" and r["event"] != "create person"}
    assert named == created
    # The dummy key is masked like a real one.
    assert "demo-key" not in done.stdout + done.stderr
    assert "demo-key" not in json.dumps(records)


def test_explicit_base_urls_win_over_the_demos_sink(tmp_path: Path) -> None:
    with Sink() as own:
        url = own.base_urls()["orangepill"]
        done, records = run_demo(tmp_path, "--shoppers", "2",
                                 env={"CDPTRACK_ORANGEPILL_URL": url})
        mine = own.requests()
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"orangepill     -> {url}" in done.stdout
    assert "sent to your own URL" in done.stdout
    assert mine and {r["api"] for r in mine} == {"orangepill"}
    assert all(r["valid"] for r in mine)
    assert "orangepill" not in {r["api"] for r in records}


def test_exit_without_shoppers_walks_a_few_and_succeeds(tmp_path: Path) -> None:
    # `cdptrack demo --no-browser --exit`, as the README's set-up block runs it.
    done, records = run_demo(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 shoppers are walking through the store" in done.stdout
    assert "Shoppers: 3" in done.stdout
    assert {r["api"] for r in records} == set(EXPECTED)
    assert all(r["valid"] for r in records)


def test_demo_fails_when_an_api_receives_nothing(tmp_path: Path) -> None:
    # No shoppers: nothing is browsed, so no API receives anything.
    done, records = run_demo(tmp_path, "--shoppers", "0")
    assert done.returncode == 1
    assert "yespo_tracker  nothing" in done.stdout
    assert "FAILED" in done.stdout
    assert records == []
