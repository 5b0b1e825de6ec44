"""The sink as a server: secrets never recorded, the JSON-lines record, the live feed,
injected failures, the memory bound, the wiring helpers and the ``cdptrack sink`` command."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from cdptrack.config import Config
from cdptrack.destinations import render_event
from cdptrack.sink import FailurePlan, FaultSpecError, Sink
from cdptrack.sink.samples import demo_visitor, every_kind

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-live-SECRET-4242"


def config_for(sink: Sink) -> Config:
    return Config(yespo_site_id="DEMO", yespo_api_key=KEY, customerio_api_key=KEY,
                  orangepill_api_key=KEY, **sink.config_overrides())


def send_all(sink: Sink, client: httpx.Client) -> list[int]:
    statuses = []
    for event in every_kind(demo_visitor()):
        for request in render_event(event, config_for(sink)).requests:
            try:
                response = client.request(request.method, request.url, headers=request.headers,
                                          content=request.body_bytes())
                statuses.append(response.status_code)
            except httpx.TransportError:
                statuses.append(0)
    return statuses


def test_api_keys_never_reach_records_pages_or_files(tmp_path: Path) -> None:
    record = tmp_path / "requests.jsonl"
    with Sink(record=record) as sink, httpx.Client() as client:
        send_all(sink, client)
        # A shop that echoes its key into a body is scrubbed too.
        client.post(sink.base_urls()["orangepill"] + "/identities/x/person/event/leak",
                    json={"data": {"properties": {"note": f"key={KEY}"}}},
                    headers={"x-api-key": KEY})
        served = client.get(sink.url + "/api/requests").text
        records = sink.requests()
    assert len(records) > 20
    assert KEY not in json.dumps(records)
    assert KEY not in served
    assert KEY not in record.read_text()
    headers = [r["headers"] for r in records]
    assert {h.get("authorization") for h in headers} >= {"Basic <redacted>"}
    assert {h.get("x-api-key") for h in headers} >= {"<redacted>"}
    assert records[-1]["body"]["data"]["properties"]["note"] == "key=<redacted>"


def test_record_file_has_one_json_line_per_event(tmp_path: Path) -> None:
    record = tmp_path / "sub" / "requests.jsonl"
    with Sink(record=record) as sink, httpx.Client() as client:
        send_all(sink, client)
        count = len(sink.requests())
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    assert len(lines) == count
    assert [line["id"] for line in lines] == list(range(1, count + 1))
    assert {"api", "method", "path", "status", "valid", "problems", "body", "visitor"} <= set(
        lines[0]
    )


def test_env_and_config_overrides_point_each_api_at_its_prefix() -> None:
    with Sink() as sink:
        env = sink.env()
        assert env == {
            "CDPTRACK_YESPO_TRACKER_URL": f"{sink.url}/yespo-tracker/api/v2",
            "CDPTRACK_YESPO_API_URL": f"{sink.url}/yespo/api/v1",
            "CDPTRACK_CUSTOMERIO_URL": f"{sink.url}/customerio/v1",
            "CDPTRACK_ORANGEPILL_URL": f"{sink.url}/orangepill/v1",
        }
        from_env = Config.from_env({**env, "CDPTRACK_YESPO_SITE_ID": "DEMO"})
        assert from_env == Config(yespo_site_id="DEMO", **sink.config_overrides())
        assert sink.url.startswith("http://127.0.0.1:")


def test_live_stream_delivers_requests_as_they_arrive() -> None:
    with Sink() as sink, httpx.Client(timeout=10) as client:
        url = sink.base_urls()["yespo_tracker"]
        body = {"GeneralInfo": {"eventName": "CustomerData", "siteId": "DEMO",
                                "cookies": {"sc": "S-1"}}}
        client.post(url, json=body)  # before the stream opens: replayed
        seen: list[dict[str, Any]] = []
        with client.stream("GET", sink.url + "/events/stream") as stream:
            lines = stream.iter_lines()
            poster = threading.Thread(target=lambda: httpx.post(url, json=body, timeout=10))
            event = ""
            for line in lines:
                if line.startswith("event: "):
                    event = line[7:]
                    if event == "hello":
                        poster.start()
                elif line.startswith("data: ") and event == "request":
                    seen.append(json.loads(line[6:]))
                    if len(seen) == 2:
                        break
            poster.join()
    assert [r["id"] for r in seen] == [1, 2]
    assert seen[1]["visitor"] == "S-1"


def test_polling_feed_returns_records_after_an_id() -> None:
    with Sink() as sink, httpx.Client() as client:
        send_all(sink, client)
        everything = client.get(sink.url + "/api/requests").json()
        later = client.get(sink.url + "/api/requests", params={"after": 5}).json()
    assert [r["id"] for r in later["records"]] == [r["id"] for r in everything["records"][5:]]
    assert later["last_id"] == everything["last_id"] == len(everything["records"])


def test_inspector_page_is_self_contained() -> None:
    with Sink() as sink:
        page = httpx.get(sink.url + "/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "<script" in page.text and "EventSource" in page.text
    # No CDN: nothing loaded from another origin.
    assert "src=\"http" not in page.text and "href=\"http" not in page.text


def test_fail_every_n_with_retry_after() -> None:
    plan = FailurePlan(every=3, mode="429", retry_after=7)
    with Sink(fail=plan) as sink, httpx.Client() as client:
        url = sink.base_urls()["yespo_tracker"]
        body = {"GeneralInfo": {"eventName": "CustomerData", "siteId": "D",
                                "cookies": {"sc": "S"}}}
        responses = [client.post(url, json=body) for _ in range(6)]
        assert [r.status_code for r in responses] == [200, 200, 429, 200, 200, 429]
        assert responses[2].headers["Retry-After"] == "7"
        records = sink.requests()
    assert [r["fault"] for r in records] == [None, None, "429", None, None, "429"]
    assert all(r["valid"] for r in records)  # a failure on purpose is not the shop's fault


def test_refuse_closes_the_connection_without_an_answer() -> None:
    with Sink(fail=FailurePlan(every=1, mode="refuse")) as sink, httpx.Client() as client:
        with pytest.raises(httpx.TransportError):
            client.post(sink.base_urls()["customerio"] + "/page", json={})
        # The inspector itself never fails.
        assert client.get(sink.url + "/api/summary").status_code == 200
        assert sink.requests()[0]["fault"] == "refuse"


def test_injected_failure_does_not_consume_an_idempotency_key() -> None:
    plan = FailurePlan(every=2, mode="503")  # the 2nd request fails
    with Sink(fail=plan) as sink, httpx.Client() as client:
        url = sink.base_urls()["orangepill"] + "/identities/i-1/person"
        headers = {"x-api-key": KEY, "idempotency-key": "same"}
        client.patch(sink.base_urls()["orangepill"] + "/identities/i-0/person",
                     json={"city": "A"}, headers={"x-api-key": KEY})
        assert client.patch(url, json={"city": "B"}, headers=headers).status_code == 503
        retry = client.patch(url, json={"city": "B"}, headers=headers)
        assert retry.status_code == 200
        assert [r["duplicate"] for r in sink.requests()] == [False, False, False]


def test_a_request_cut_off_mid_body_is_neither_answered_nor_remembered() -> None:
    import socket
    with Sink() as sink, httpx.Client() as client:
        host, port = sink.url.split("//")[1].split(":")
        path = "/orangepill/v1/identities/i-1/person"
        head = (f"PATCH {path} HTTP/1.1\r\nHost: {host}\r\nx-api-key: {KEY}\r\n"
                "idempotency-key: cut\r\nContent-Type: application/json\r\n"
                "Content-Length: 100\r\n\r\n")
        with socket.create_connection((host, int(port))) as raw:
            raw.sendall(head.encode() + b'{"city": "A')  # the process dies here
        # The retry with the same key runs for real, as if the first never arrived.
        retry = client.patch(sink.url + path, json={"city": "A"},
                             headers={"x-api-key": KEY, "idempotency-key": "cut"})
        assert retry.status_code == 200
        assert [r["status"] for r in sink.requests()] == [200]


def test_random_failure_spec_is_seeded_and_checked() -> None:
    plan = FailurePlan.parse("refuse:0.2,503:0.2,429:0.1", seed=7)
    draws = [plan.next() for _ in range(400)]
    modes = [d.mode if d else "ok" for d in draws]
    again = FailurePlan.parse("refuse:0.2,503:0.2,429:0.1", seed=7)
    assert modes == [d.mode if d else "ok" for d in (again.next() for _ in range(400))]
    assert 40 < modes.count("refuse") < 120 and 10 < modes.count("429") < 70
    assert 150 < modes.count("ok") < 250
    for bad in ("refuse", "boom:0.1", "503:2", "503:0.7,429:0.7", "200:0.1"):
        with pytest.raises(FaultSpecError):
            FailurePlan.parse(bad)


def test_memory_is_bounded() -> None:
    with Sink(limit=5) as sink, httpx.Client() as client:
        statuses = send_all(sink, client)
        records = sink.requests()
    assert len(statuses) > 5
    assert len(records) == 5
    assert records[-1]["id"] == len(statuses)


def test_clear_empties_the_record() -> None:
    with Sink() as sink, httpx.Client() as client:
        send_all(sink, client)
        assert client.post(sink.url + "/api/clear").status_code == 200
        assert sink.requests() == []
        assert client.get(sink.url + "/api/requests").json()["records"] == []


def test_probes_on_base_urls_answer_without_recording() -> None:
    with Sink() as sink, httpx.Client() as client:
        for url in sink.base_urls().values():
            assert client.head(url).status_code < 500
            assert client.options(url).status_code < 500
            assert client.get(url).status_code == 405
        assert sink.requests() == []


def test_sink_command_prints_its_urls_and_serves(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cdptrack.cli", "sink", "--port", "0",
         "--record", str(tmp_path / "r.jsonl"), "--fail-every", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "CDPTRACK_ORANGEPILL_URL" in line:
                break
        text = "".join(lines)
        tracker = next(
            line.split("=", 1)[1].strip() for line in lines
            if "CDPTRACK_YESPO_TRACKER_URL=" in line
        )
        assert "/yespo-tracker/api/v2" in tracker
        assert "inspector: http://127.0.0.1:" in text
        body = {"GeneralInfo": {"eventName": "CustomerData", "siteId": "D",
                                "cookies": {"sc": "S"}}}
        assert [httpx.post(tracker, json=body).status_code for _ in range(2)] == [200, 503]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 2


def test_sink_command_rejects_a_bad_failure_spec() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "cdptrack.cli", "sink", "--fail", "boom:0.1"],
                          capture_output=True, text=True, env=env, timeout=30)
    assert done.returncode == 2
    assert "unknown failure mode" in done.stderr


def test_the_banners_variables_make_a_shop_send_to_every_api() -> None:
    # What a newcomer does: start the sink, export what it prints, send an event.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDPTRACK_")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.Popen([sys.executable, "-m", "cdptrack.cli", "sink", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    try:
        assert proc.stdout is not None
        out: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [out.put(x) for x in proc.stdout or ()],
                         daemon=True).start()
        exports: dict[str, str] = {}
        lines: list[str] = []
        while True:
            try:  # a banner without the read API would otherwise be waited for forever
                line = out.get(timeout=30)
            except queue.Empty:
                pytest.fail("the banner ended without the read API:\n" + "".join(lines))
            lines.append(line)
            if line.strip().startswith("export "):
                name, _, value = line.strip().removeprefix("export ").partition("=")
                exports[name] = value
            if "/api/clear" in line:
                break
        text = "".join(lines)
        assert "dummy keys" in text and "/api/summary" in text and "/api/clear" in text
        assert {"CDPTRACK_YESPO_SITE_ID", "CDPTRACK_YESPO_API_KEY",
                "CDPTRACK_CUSTOMERIO_API_KEY", "CDPTRACK_ORANGEPILL_API_KEY"} <= set(exports)
        base = text.split("cdptrack sink on ", 1)[1].split()[0]
        event = {"type": "track", "event": "Product Viewed",
                 "visitor": {"sc": "CDA68358-94FB-4D83-9655-3FEB3C4114A3", "user_id": "u-1",
                             "email": "jane@example.com",
                             "orangepill_identity": "634b56217f6a7b0be52dffbd"},
                 "properties": {"product_id": "72354", "name": "Boot", "price": 754,
                                "currency": "USD"}}
        sent = subprocess.run([sys.executable, "-m", "cdptrack.cli", "send"],
                              input=json.dumps(event) + "\n", capture_output=True,
                              text=True, env={**env, **exports}, timeout=60)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        summary = httpx.get(base + "/api/summary").json()
        assert set(summary) == {"yespo_tracker", "yespo_events", "customerio", "orangepill"}
        assert all(entry["invalid"] == 0 for entry in summary.values())
        records = httpx.get(base + "/api/requests").json()["records"]
        assert {r["api"] for r in records} == set(summary)
        assert "sink-key" not in json.dumps(records)
        assert httpx.post(base + "/api/clear").status_code == 200
        assert httpx.get(base + "/api/summary").json() == {}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
