"""The inspector page in a real headless Chromium: requests appear live while a shopper
posts real rendered requests, a destination filter narrows them, a row opens to its
payload, and problems are shown; no key is ever on the page."""

from __future__ import annotations

import httpx
from support.browser import (
    ARGS,
    CHROMIUM,
    needs_chromium,
    sink_fixture,  # noqa: F401 - the "sink" fixture
)

from cdptrack.config import Config
from cdptrack.destinations import render_event
from cdptrack.sink import Sink
from cdptrack.sink.samples import demo_visitor, every_kind

KEY = "sk-browser-SECRET-31"
SHOPPER_B = "7F3C2A10-1B2C-4D5E-8F90-ABCDEF012345"

pytestmark = needs_chromium


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


def post_product_page(sink: Sink, sc: str) -> None:
    """One valid Yespo tracker request (one event, one request) for visitor ``sc``."""
    config = Config(yespo_site_id="DEMO", **sink.config_overrides())
    [event] = [e for e in every_kind({"sc": sc}) if e.event == "Product Viewed"][:1]
    [request] = render_event(event, config, ["yespo_tracker"]).requests
    httpx.post(request.url, headers=request.headers, content=request.body_bytes())


def test_history_loads_before_the_live_stream_without_gaps_or_flashes(sink: Sink) -> None:
    """The page shows what was recorded before it opened, says "Loading" (never "Waiting
    for the first request") until it knows, and takes the live stream up from where the
    history ended, so a request recorded in between is shown once."""
    from playwright.sync_api import Route, expect, sync_playwright

    post_product_page(sink, SHOPPER_B)
    held: list[Route] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.route("**/api/requests*", lambda route: held.append(route))  # hold it
            page.goto(sink.url + "/", wait_until="domcontentloaded")
            expect(page.get_by_test_id("empty-title")).to_have_text("Loading recorded requests…")
            for _ in range(500):  # the route handler runs while playwright is waited on
                if held:
                    break
                page.wait_for_timeout(20)
            assert len(held) == 1

            post_product_page(sink, SHOPPER_B)  # recorded while the history is on its way
            held[0].continue_()
            rows = page.get_by_test_id("request-row")
            expect(rows).to_have_count(2)
            expect(page.get_by_test_id("empty")).to_be_hidden()
            expect(page.get_by_test_id("live-status")).to_have_text("live")
            assert sorted(rows.evaluate_all("rs => rs.map(r => r.dataset.id)")) == ["1", "2"]

            # History rows do not flash; a request arriving live does.
            assert rows.evaluate_all("rs => rs.filter(r => r.classList.contains('fresh'))"
                                     ".length") == 0
            page.evaluate("""() => { window.flashed = [];
              new MutationObserver(() => document.querySelectorAll('.row.fresh')
                .forEach(r => window.flashed.push(r.dataset.id)))
                .observe(document.body, {subtree: true, childList: true}); }""")
            post_product_page(sink, SHOPPER_B)
            expect(rows).to_have_count(3)
            page.wait_for_function("() => window.flashed.length > 0")
            assert set(page.evaluate("window.flashed")) == {"3"}
        finally:
            browser.close()


def test_counts_are_labelled_and_singular_when_one(sink: Sink) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(sink.url + "/")
            expect(page.get_by_test_id("live-status")).to_have_text("live")
            expect(page.get_by_test_id("empty-title")).to_have_text(
                "Waiting for the first request…")

            post_product_page(sink, SHOPPER_B)
            expect(page.get_by_test_id("request-row")).to_have_count(1)
            expect(page.get_by_test_id("total")).to_contain_text("1 event · 1 visitor ·")
            expect(page.locator(".jmeta")).to_have_text("1 event · 1 API")
            expect(page.get_by_test_id("dest-summary-yespo_tracker")).to_have_text(
                "event in 1 request")
            expect(page.get_by_test_id("dest-summary-customerio")).to_have_text(
                "events in 0 requests")

            # A Customer.io batch: several events in one request.
            config = Config(customerio_api_key=KEY, **sink.config_overrides())
            events = [e for e in every_kind({"sc": SHOPPER_B}) if e.type == "track"][:3]
            bodies = [render_event(e, config, ["customerio"]).requests[0] for e in events]
            first = bodies[0]
            assert first.batch_url is not None
            httpx.post(first.batch_url, headers=first.headers,
                       json={"batch": [{**r.json, "type": "track"} for r in bodies]})
            expect(page.get_by_test_id("dest-count-customerio")).to_have_text("3")
            expect(page.get_by_test_id("dest-summary-customerio")).to_have_text(
                "events in 1 request")
            expect(page.get_by_test_id("total")).to_contain_text("4 events · 1 visitor ·")
            expect(page.locator(".jmeta")).to_have_text("4 events · 2 APIs")
        finally:
            browser.close()


def test_the_demo_shops_route_table_is_shown_and_stays_inert(sink: Sink) -> None:
    from playwright.sync_api import expect, sync_playwright
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from cdptrack.commands.demo import shop_routes
    from cdptrack.integrations.starlette import app_routes
    from cdptrack.route_table import route_table

    config = Config(customerio_api_key=KEY, **sink.config_overrides())
    document = shop_routes("flask", __import__(
        "cdptrack.examples.flask_shop", fromlist=["create_app"]).create_app(config), config)
    assert document is not None
    hostile = '/q/"><img src=x onerror="window.__xss=1">'
    other = Starlette(routes=[Route(hostile, lambda request: PlainTextResponse("x"))])
    document["routes"] += route_table(app_routes(other), config)["routes"]
    sink.routes = document
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(sink.url + "/")
            routes = page.get_by_test_id("routes")
            expect(routes).to_be_visible()
            routes.locator("summary").click()
            product = page.locator('[data-testid="route-row"][data-route="/product/<product_id>"]')
            expect(product.get_by_test_id("route-kind")).to_have_text("product")
            expect(product.get_by_test_id("route-source")).to_have_text("convention")
            expect(product.get_by_test_id("route-event")).to_have_text(["page", "Product Viewed"])
            expect(page.locator(f'[data-testid="route-row"][data-route=\'{hostile}\']')
                   ).to_have_count(1)
            assert page.locator("#routes img").count() == 0
            assert page.evaluate("window.__xss") is None
            assert KEY not in page.content()
        finally:
            browser.close()
