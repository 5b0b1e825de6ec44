"""The inspector page in a real headless Chromium: requests appear live while a shopper
posts real rendered requests, a destination filter narrows them, a row opens to its
payload, and problems are shown; no key is ever on the page."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from cdptrack.config import Config
from cdptrack.destinations import render_event
from cdptrack.sink import Sink
from cdptrack.sink.samples import demo_visitor, every_kind

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
KEY = "sk-browser-SECRET-31"
SHOPPER_B = "7F3C2A10-1B2C-4D5E-8F90-ABCDEF012345"

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason=f"Debian chromium is not installed at {CHROMIUM}")


@pytest.fixture()
def sink() -> Iterator[Sink]:
    with Sink() as running:
        yield running


def shop(sink: Sink, visitor: dict[str, str]) -> int:
    """Post what the renderers produce for one shopper's events; returns the count."""
    config = Config(yespo_site_id="DEMO", yespo_api_key=KEY, customerio_api_key=KEY,
                    orangepill_api_key=KEY, **sink.config_overrides())
    sent = 0
    with httpx.Client(timeout=10) as client:
        for event in every_kind(visitor):
            for request in render_event(event, config).requests:
                client.request(request.method, request.url, headers=request.headers,
                               content=request.body_bytes())
                sent += 1
    return sent


def test_inspector_shows_requests_live_filters_and_opens_payloads(sink: Sink) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(sink.url + "/")
            expect(page.get_by_test_id("live-status")).to_have_text("live")
            expect(page.get_by_test_id("empty")).to_be_visible()
            rows = page.get_by_test_id("request-row")
            expect(rows).to_have_count(0)

            # A signed-in shopper browses while the page is open.
            first = shop(sink, demo_visitor())
            expect(rows).to_have_count(len(sink.requests()))
            assert first > 20
            expect(page.get_by_test_id("empty")).to_be_hidden()
            counts = {api: len(sink.requests(api)) for api in
                      ("yespo_tracker", "yespo_events", "customerio", "orangepill")}
            for api, count in counts.items():
                expect(page.get_by_test_id(f"dest-count-{api}")).to_have_text(str(count))

            # A second, anonymous shopper arrives: a second journey appears live.
            shop(sink, demo_visitor(SHOPPER_B, signed_in=False))
            expect(rows).to_have_count(len(sink.requests()))
            journeys = page.get_by_test_id("journey")
            expect(journeys.filter(has_text=SHOPPER_B)).to_have_count(1)
            newest = journeys.first.get_by_test_id("journey-visitor")
            expect(newest).to_have_text(SHOPPER_B)

            # Filter by destination.
            page.get_by_test_id("filter-dest-customerio").click()
            cio = len(sink.requests("customerio"))
            expect(rows).to_have_count(cio)
            assert set(rows.evaluate_all("rs => rs.map(r => r.dataset.api)")) == {"customerio"}
            # ... and by event name.
            page.get_by_test_id("filter-event").select_option("Product Viewed")
            expect(rows).to_have_count(2)

            # Open one payload.
            rows.first.click()
            payload = page.get_by_test_id("payload")
            expect(payload).to_be_visible()
            expect(payload).to_contain_text('"event": "Product Viewed"')
            expect(page.get_by_test_id("valid-note")).to_be_visible()
            expect(page.get_by_test_id("headers")).to_contain_text("<redacted>")

            # A malformed request is flagged and its problems are shown.
            page.get_by_test_id("filter-dest-all").click()
            page.get_by_test_id("filter-event").select_option("")
            httpx.post(sink.base_urls()["yespo_tracker"], json={
                "GeneralInfo": {"eventName": "ProductPage", "siteId": "DEMO",
                                "cookies": {"sc": SHOPPER_B}},
                "ProductPage": {"Product": {"price": "754 USD"}}})
            page.get_by_test_id("filter-problems").check()
            expect(rows).to_have_count(1)
            rows.first.click()
            problems = page.get_by_test_id("problems")
            expect(problems).to_contain_text("ProductPage.Product.productKey: required")
            expect(page.get_by_test_id("dest-invalid-yespo_tracker")).to_have_text("1 invalid")

            # A fresh page replays everything recorded so far.
            page.reload()
            expect(rows).to_have_count(len(sink.requests()))
            page.get_by_test_id("filter-dest-yespo_tracker").click()
            page.locator('[data-testid=request-row][data-valid=false]').click()
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path="/tmp/inspector.png")

            assert KEY not in page.content()
        finally:
            browser.close()
