"""The sink answers like each API: what the renderers produce is accepted, malformed
requests get the API's status, over real HTTP to a sink on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cdptrack.config import Config
from cdptrack.destinations import render_event
from cdptrack.destinations.base import basic_auth
from cdptrack.sink import API_NAMES, Sink
from cdptrack.sink.samples import DEMO_SC, demo_visitor, every_kind

KEY = "sk-test-0123456789"


@pytest.fixture()
def sink() -> Iterator[Sink]:
    with Sink() as running:
        yield running


@pytest.fixture()
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as c:
        yield c


def config_for(sink: Sink) -> Config:
    return Config(yespo_site_id="DEMO", yespo_api_key=KEY, customerio_api_key=KEY,
                  orangepill_api_key=KEY, **sink.config_overrides())


def send_rendered(sink: Sink, client: httpx.Client, visitor: dict[str, str]) -> set[str]:
    """Render every canonical kind for ``visitor``, send it; returns the labels sent."""
    config = config_for(sink)
    labels = set()
    for event in every_kind(visitor):
        for request in render_event(event, config).requests:
            response = client.request(request.method, request.url, headers=request.headers,
                                      content=request.body_bytes())
            assert response.status_code == 200, (request.destination, request.label,
                                                 response.text)
            labels.add(f"{request.destination}:{request.label}")
    return labels


@pytest.mark.parametrize("signed_in", [True, False], ids=["signed-in", "anonymous"])
def test_every_rendered_event_kind_is_accepted_and_valid(
    sink: Sink, client: httpx.Client, signed_in: bool
) -> None:
    visitor = demo_visitor(signed_in=signed_in)
    sent = send_rendered(sink, client, visitor)
    records = sink.requests()
    invalid = [(r["api"], r["event"], r["problems"]) for r in records if not r["valid"]]
    assert invalid == []
    received = {r["api"] for r in records}
    expected = set(API_NAMES) if signed_in else {"yespo_tracker", "customerio"}
    assert received == expected
    assert {f"{r['api']}:{r['event']}" for r in records} >= {
        s for s in sent if not s.startswith("orangepill:personUpdate")}
    tracker = {r["event"] for r in records if r["api"] == "yespo_tracker"}
    assert {"ProductPage", "CategoryPage", "StatusCart", "PurchasedItems", "AddToWishlist",
            "SearchRequest", "ProductImpressions", "ProductUpdate", "CustomerData"} <= tracker


def test_customerio_batch_of_rendered_messages(sink: Sink, client: httpx.Client) -> None:
    config = config_for(sink)
    requests = [r for e in every_kind() for r in render_event(e, config, ["customerio"]).requests]
    batch = {"batch": [r.json for r in requests]}
    response = client.post(requests[0].batch_url or "", json=batch, headers=requests[0].headers)
    assert response.status_code == 200
    assert response.json() == {}
    records = sink.requests("customerio")
    assert len(records) == len(requests)
    assert {r["request_id"] for r in records} == {records[0]["request_id"]}
    assert all(r["valid"] for r in records)
    assert records[0]["batch"] == {"index": 0, "size": len(requests)}
    assert sink.summary()["customerio"]["requests"] == 1


def test_visitor_ids_are_extracted_per_api(sink: Sink, client: httpx.Client) -> None:
    send_rendered(sink, client, demo_visitor())
    by_api: dict[str, list[dict[str, Any]]] = {}
    for record in sink.requests():
        by_api.setdefault(record["api"], []).append(record)
    assert all(r["visitor"] == DEMO_SC for r in by_api["yespo_tracker"]
               if r["event"] != "ProductUpdate")  # a catalogue change has no visitor
    assert any(f"sc:{DEMO_SC}" in r["ids"] and "user:u-17" in r["ids"]
               for r in by_api["customerio"])
    assert all("identity:634b56217f6a7b0be52dffbd" in r["ids"] for r in by_api["orangepill"])
    assert all("email:jane@example.com" in r["ids"] for r in by_api["yespo_events"])


# -- Yespo tracker --------------------------------------------------------------------


def tracker_body(**info: Any) -> dict[str, Any]:
    general = {"eventName": "CategoryPage", "siteId": "DEMO", "datetime": 1579622183208,
               "cookies": {"sc": DEMO_SC}, **info}
    return {"GeneralInfo": general, "CategoryPage": {"Category": {"categoryKey": "shoes"}}}


def test_tracker_needs_no_auth_and_rejects_malformed(sink: Sink, client: httpx.Client) -> None:
    url = sink.base_urls()["yespo_tracker"]
    assert client.post(url, json=tracker_body()).status_code == 200
    bad = client.post(url, json=tracker_body(siteId=""))
    assert bad.status_code == 400
    assert "GeneralInfo.siteId" in bad.text
    broken = client.post(url, content=b"{nope", headers={"Content-Type": "application/json"})
    assert broken.status_code == 400
    assert "not valid JSON" in broken.text
    records = sink.requests("yespo_tracker")
    assert [r["valid"] for r in records] == [True, False, False]
    assert records[1]["status"] == 400


def test_tracker_wants_json_content_type(sink: Sink, client: httpx.Client) -> None:
    url = sink.base_urls()["yespo_tracker"]
    response = client.post(url, content=json.dumps(tracker_body()).encode(),
                           headers={"Content-Type": "text/plain"})
    assert response.status_code == 400
    assert "Content-Type" in response.text


def test_unknown_paths_and_methods(sink: Sink, client: httpx.Client) -> None:
    assert client.post(sink.url + "/yespo-tracker/api/v3", json={}).status_code == 404
    assert client.get(sink.base_urls()["yespo_tracker"]).status_code == 405
    assert client.post(sink.url + "/customerio/v1/nothing", json={}).status_code == 404
    assert client.post(sink.url + "/elsewhere", json={}).status_code == 404


# -- Yespo generic events -------------------------------------------------------------


def v1_event() -> dict[str, Any]:
    return {"eventTypeKey": "productCategoryViewed", "keyValue": "jane@example.com",
            "params": [{"name": "category", "value": '{"productCategoryId":"Mugs"}'}]}


def test_yespo_v1_basic_auth_validation_and_size(sink: Sink, client: httpx.Client) -> None:
    url = sink.base_urls()["yespo_events"] + "/event"
    auth = {"Authorization": basic_auth("anyone", KEY)}
    assert client.post(url, json=v1_event(), headers=auth).status_code == 200
    assert client.post(url, json=v1_event()).status_code == 401
    assert client.post(url, json=v1_event(),
                       headers={"Authorization": basic_auth("user", "")}).status_code == 401
    bad = v1_event()
    bad["params"][0]["value"] = "{broken"
    response = client.post(url, json=bad, headers=auth)
    assert response.status_code == 400
    assert "params[0].value (category): not valid JSON" in response.text
    big = v1_event()
    big["params"].append({"name": "blob", "value": "x" * 21000})
    assert client.post(url, json=big, headers=auth).status_code == 413
    statuses = [r["status"] for r in sink.requests("yespo_events")]
    assert statuses == [200, 401, 401, 400, 413]


# -- Customer.io ----------------------------------------------------------------------


def cio_headers(strict: bool = True, key: str | None = KEY) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = basic_auth(key, "")
    if strict:
        headers["X-Strict-Mode"] = "1"
    return headers


def test_customerio_strict_mode_errors(sink: Sink, client: httpx.Client) -> None:
    url = sink.base_urls()["customerio"] + "/track"
    good = {"type": "track", "event": "Product Viewed", "anonymousId": DEMO_SC,
            "properties": {"product_id": "1", "price": 3}}
    assert client.post(url, json=good, headers=cio_headers()).json() == {}
    assert client.post(url, json=good, headers=cio_headers(key=None)).status_code == 401
    bad = {**good, "properties": {"product_id": 1, "price": "3"}}
    response = client.post(url, json=bad, headers=cio_headers())
    assert response.status_code == 400
    errors = response.json()["meta"]["errors"]
    assert any("properties.product_id" in e for e in errors)
    assert any("properties.price" in e for e in errors)


def test_customerio_permissive_mode_answers_200_but_records_problems(
    sink: Sink, client: httpx.Client
) -> None:
    url = sink.base_urls()["customerio"] + "/track"
    bad = {"type": "track", "event": "Product Viewed", "properties": {"price": "3"}}
    response = client.post(url, json=bad, headers=cio_headers(strict=False))
    assert response.status_code == 200
    no_key = client.post(url, json=bad, headers=cio_headers(strict=False, key=None))
    assert no_key.status_code == 200
    records = sink.requests("customerio")
    assert [r["valid"] for r in records] == [False, False]
    assert any("Authorization" in p for p in records[1]["problems"])


def test_customerio_size_limits(sink: Sink, client: httpx.Client) -> None:
    base = sink.base_urls()["customerio"]
    message = {"type": "track", "event": "Big", "userId": "u-1", "properties": {"x": "a" * 33000}}
    response = client.post(base + "/track", json=message, headers=cio_headers())
    assert response.status_code == 400
    assert "32 KB" in json.dumps(response.json())
    small = {"type": "track", "event": "Small", "userId": "u-1", "properties": {"x": "a" * 30000}}
    batch = {"batch": [small] * 18}  # ~540 KB in all, each message under 32 KB
    response = client.post(base + "/batch", json=batch, headers=cio_headers())
    assert response.status_code == 400
    assert "500 KB" in json.dumps(response.json())
    assert client.post(base + "/batch", json={"batch": [small] * 3},
                       headers=cio_headers()).status_code == 200


def test_customerio_batch_with_one_bad_message(sink: Sink, client: httpx.Client) -> None:
    batch = {"batch": [
        {"type": "page", "anonymousId": DEMO_SC, "properties": {"url": "https://x.example/"}},
        {"type": "track", "event": "Order Completed", "userId": "u-1",
         "properties": {"total": "12"}},
    ]}
    response = client.post(sink.base_urls()["customerio"] + "/batch", json=batch,
                           headers=cio_headers())
    assert response.status_code == 400
    assert response.json()["meta"]["errors"] == [
        "batch[1].properties.total: '12' is not of type 'number'"
    ]
    assert [r["valid"] for r in sink.requests()] == [True, False]


# -- Orangepill -----------------------------------------------------------------------


def op_headers(key: str | None = KEY, idem: str | None = None) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["x-api-key"] = key
    if idem:
        headers["idempotency-key"] = idem
    return headers


def test_orangepill_needs_api_key_and_validates(sink: Sink, client: httpx.Client) -> None:
    url = sink.base_urls()["orangepill"] + "/identities/abc123/person/event/addToCart"
    body = {"data": {"properties": {"itemId": 9473370, "price": 56.3}}}
    assert client.post(url, json=body, headers=op_headers(key=None)).status_code == 401
    response = client.post(url, json=body, headers=op_headers())
    assert response.status_code == 200
    assert response.json()["definitionId"] == "addToCart"
    assert response.json()["properties"] == body["data"]["properties"]
    bad = client.post(url, json={"properties": {}}, headers=op_headers())
    assert bad.status_code == 400
    assert "data: required" in json.dumps(bad.json())
    assert client.patch(url, json=body, headers=op_headers()).status_code == 405


def test_orangepill_idempotency_key_replays_the_first_answer(
    sink: Sink, client: httpx.Client
) -> None:
    url = sink.base_urls()["orangepill"] + "/identities/abc123/person"
    first = client.patch(url, json={"city": "London"}, headers=op_headers(idem="k-1"))
    again = client.patch(url, json={"city": "Paris"}, headers=op_headers(idem="k-1"))
    other = client.patch(url, json={"address": "1 Road"}, headers=op_headers(idem="k-2"))
    assert first.status_code == again.status_code == 200
    assert again.content == first.content
    assert first.json()["person"] == {"city": "London"}
    # The replay did not run the operation again: Paris never landed.
    assert other.json()["person"] == {"city": "London", "address": "1 Road"}
    assert [r["duplicate"] for r in sink.requests("orangepill")] == [False, True, False]
    assert sink.summary()["orangepill"]["duplicates"] == 1
