"""The inspector shows what the shop's tracker did not send and why, in a real headless
Chromium: the counts of a tracker in the same process (as ``cdptrack demo`` wires
them) and those a shop elsewhere reports over HTTP; hostile reason text stays text."""

from __future__ import annotations

import pytest
from support.browser import (
    ARGS,
    CHROMIUM,
    needs_chromium,
    sink_fixture,  # noqa: F401 - the "sink" fixture
)

from cdptrack import Tracker
from cdptrack.config import Config
from cdptrack.sink import Sink
from cdptrack.sink.unsent import report_stats

KEY = "sk-unsent-SECRET-77"
SC = "CDA68358-94FB-4D83-9655-3FEB3C4114A3"
HOSTILE = "<img src=x onerror=window.__pwned=1>"

pytestmark = needs_chromium


def test_board_sums_watched_and_reported_trackers_and_refuses_junk(sink: Sink) -> None:
    sink.unsent.watch(lambda: {"customerio": {"sent": 3, "skipped:no_identity": 2}})
    sink.unsent.report("shop-1", {"customerio": {"skipped:no_identity": 1,
                                                 "dropped:invalid_field:filters.value": 4,
                                                 "dropped": 4, "enqueued": 9}})
    assert sink.unsent.view() == {"customerio": {
        "skipped": {"no_identity": 3}, "dropped": {"invalid_field:filters.value": 4}}}
    for junk in (["x"], {"customerio": {"skipped:x": -1}}, {"customerio": {"skipped:x": "9"}}):
        with pytest.raises(ValueError):
            sink.unsent.report("shop-2", junk)


def test_inspector_lists_what_was_not_sent_and_why(sink: Sink) -> None:
    from playwright.sync_api import expect, sync_playwright

    tracker = Tracker(Config(yespo_site_id="8A412DC", yespo_api_key=KEY,
                             customerio_api_key=KEY, **sink.config_overrides()),
                      handle_signals=False)
    sink.watch_tracker(tracker)  # as cdptrack demo does
    try:
        # An anonymous product view without a price: Yespo v1/event has no contact key
        # for it, the Yespo tracker refuses a product without a price; a property
        # named by hostile input cannot be encoded and is left out.
        tracker.capture({"type": "track", "event": "Product Viewed",
                         "visitor": {"sc": SC},
                         "properties": {"product_id": "72354", HOSTILE: object()}})
        tracker.capture({"type": "track", "event": "Product List Filtered",
                         "visitor": {"sc": SC},
                         "properties": {"filters": [{"type": "size", "value": 42}]}})
        assert tracker.flush(20)
        stats = tracker.stats()
        assert stats["yespo_tracker"]["dropped:missing_field:price"] == 1
        assert stats["customerio"]["dropped:invalid_field:filters.value"] == 1
        # A shop in another process reports its own counts over HTTP.
        report_stats(sink.url, {"orangepill": {"skipped:no_identity": 5,
                                               f"dropped:{HOSTILE}": 1}}, source="shop-2")

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                page = browser.new_page()
                page.goto(sink.url + "/")
                box = page.get_by_test_id("unsent")
                expect(box).to_be_visible()
                rows = page.get_by_test_id("unsent-row")
                expected = {
                    ("yespo_tracker", "missing_field:price"): 1,
                    ("yespo_events", "no_contact_key"): 2,
                    ("customerio", "invalid_field:filters.value"): 1,
                    ("customerio", f"dropped_property:{HOSTILE}"): 1,
                    ("orangepill", "no_identity"): 5,
                    ("orangepill", HOSTILE): 1,
                }
                for (api, reason), n in expected.items():
                    row = rows.filter(has=page.locator(
                        f'[data-testid="unsent-reason"]:text-is("{reason}")')).and_(
                        page.locator(f'[data-api="{api}"]'))
                    expect(row).to_have_count(1)
                    expect(row.get_by_test_id("unsent-count")).to_have_text(str(n))
                assert page.evaluate("window.__pwned") is None  # text, never markup
                assert page.locator("#unsent img").count() == 0
                assert KEY not in page.content()

                # More skips arrive: the page follows without a reload.
                tracker.capture({"type": "track", "event": "Product Viewed",
                                 "visitor": {"sc": SC}, "properties": {"product_id": "9"}})
                assert tracker.flush(20)
                price = rows.filter(has=page.locator(
                    '[data-testid="unsent-reason"]:text-is("missing_field:price")'))
                expect(price.get_by_test_id("unsent-count")).to_have_text("2")
            finally:
                browser.close()
    finally:
        tracker.shutdown(5)
