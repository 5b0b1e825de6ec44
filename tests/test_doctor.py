"""``cdptrack doctor`` says what is on and what is missing, never shows a key, and with
``--live`` tells reachable endpoints (a real sink) from unreachable ones (a closed port)."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from support import redis_server
from support.api_server import Reply
from support.delivery import (
    FourApis,
    apis_fixture,  # noqa: F401 - the "apis" fixture
    product_viewed,
)
from support.redis_server import RedisServer
from support.servers import wait_for

from cdptrack.commands.doctor import diagnose
from cdptrack.config import Config
from cdptrack.delivery.outbox_redis import RedisOutbox
from cdptrack.sink import Sink
from cdptrack.tracker import Tracker

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-doctor-SECRET-77"


def doctor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CDPTRACK_")}
    return subprocess.run(
        [sys.executable, "-m", "cdptrack.cli", "doctor", *args],
        env={**clean, **env, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=60,
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])



def test_nothing_configured_is_an_error_that_names_what_to_set() -> None:
    result = diagnose({})
    assert not result.ok
    assert [d.on for d in result.destinations] == [False] * 4
    assert "CDPTRACK_YESPO_SITE_ID" in result.destinations[0].detail
    done = doctor({})
    assert done.returncode == 1
    assert "set CDPTRACK_CUSTOMERIO_API_KEY" in done.stdout


def test_configured_destinations_are_listed_with_keys_masked() -> None:
    env = {"CDPTRACK_YESPO_SITE_ID": "8A412DC", "CDPTRACK_CUSTOMERIO_API_KEY": KEY,
           "CDPTRACK_CUSTOMERIO_REGION": "eu"}
    done = doctor(env)
    assert done.returncode == 0, done.stdout
    assert KEY not in done.stdout + done.stderr
    assert "site id 8A412DC" in done.stdout
    assert "https://cdp-eu.customer.io/v1" in done.stdout
    assert "off: set CDPTRACK_ORANGEPILL_API_KEY" in done.stdout
    as_json = json.loads(doctor(env, "--json").stdout)
    assert [d["on"] for d in as_json["destinations"]] == [True, False, True, False]
    assert KEY not in json.dumps(as_json)


def test_a_setting_that_cannot_work_fails() -> None:
    result = diagnose({"CDPTRACK_CUSTOMERIO_API_KEY": KEY,
                       "CDPTRACK_CUSTOMERIO_URL": "http://cdp.example.com/v1"})
    assert not result.ok
    assert any("https" in e for e in result.errors)
    assert KEY not in json.dumps(result.to_dict())


def test_typos_and_orphan_urls_are_warned_about() -> None:
    result = diagnose({"CDPTRACK_YESPO_SITEID": "X", "CDPTRACK_ORANGEPILL_API_KEY": KEY,
                       "CDPTRACK_CUSTOMERIO_URL": "https://proxy.example/v1"})
    assert result.ok  # Orangepill is on; the rest are warnings
    text = " ".join(result.warnings)
    assert "did you mean CDPTRACK_YESPO_SITE_ID" in text
    assert "CDPTRACK_CUSTOMERIO_URL is set but customerio is off" in text


def test_middleware_options_are_settings_and_are_checked() -> None:
    result = diagnose({"CDPTRACK_ORANGEPILL_API_KEY": KEY, "CDPTRACK_CURRENCY": "EUR",
                       "CDPTRACK_COOKIE_DOMAIN": ".shop.example",
                       "CDPTRACK_SESSION_SECRET": "s3cret-session-key"})
    assert result.ok, result.errors
    assert result.warnings == []
    assert result.options == {"CDPTRACK_COOKIE_DOMAIN": ".shop.example",
                              "CDPTRACK_CURRENCY": "EUR",
                              "CDPTRACK_SESSION_SECRET": "<redacted>"}
    assert "s3cret-session-key" not in json.dumps(result.to_dict())
    typo = diagnose({"CDPTRACK_ORANGEPILL_API_KEY": KEY, "CDPTRACK_CURENCY": "EUR"})
    assert any("did you mean CDPTRACK_CURRENCY" in w for w in typo.warnings)
    bad = diagnose({"CDPTRACK_ORANGEPILL_API_KEY": KEY, "CDPTRACK_PAGE_VIEWS": "some"})
    assert not bad.ok
    assert any("page_views" in e for e in bad.errors)


def test_the_command_lists_middleware_options() -> None:
    done = doctor({"CDPTRACK_ORANGEPILL_API_KEY": KEY, "CDPTRACK_CURRENCY": "EUR"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "not a cdptrack setting" not in done.stdout
    assert "CDPTRACK_CURRENCY=EUR" in done.stdout


def test_live_check_against_a_sink_and_a_closed_port() -> None:
    keys = {"CDPTRACK_YESPO_SITE_ID": "DEMO", "CDPTRACK_YESPO_API_KEY": KEY,
            "CDPTRACK_CUSTOMERIO_API_KEY": KEY, "CDPTRACK_ORANGEPILL_API_KEY": KEY}
    with Sink() as sink:
        done = doctor({**keys, **sink.env()}, "--live", "--timeout", "3")
        assert done.returncode == 0, done.stdout
        assert done.stdout.count("ok: HTTP") == 4, done.stdout
        assert sink.requests() == []  # the probe sent no event
    dead = f"http://127.0.0.1:{closed_port()}/v1"
    done = doctor({**keys, **sink.env(), "CDPTRACK_ORANGEPILL_URL": dead}, "--live",
                  "--timeout", "3")
    assert done.returncode == 1
    assert "FAIL: unreachable" in done.stdout
    assert KEY not in done.stdout + done.stderr


def test_live_check_tells_a_wrong_key_from_a_wrong_url_from_no_answer(apis: FourApis) -> None:
    apis.tracker.default = Reply(200)
    apis.events.default = Reply(401, '{"error": "Unauthorized"}')
    apis.customerio.default = Reply(404, '{"error": "not found"}')
    apis.orangepill.default = Reply(200, "{}", delay=3.0)  # answers after the timeout
    env = {"CDPTRACK_YESPO_SITE_ID": "DEMO", "CDPTRACK_YESPO_API_KEY": KEY,
           "CDPTRACK_CUSTOMERIO_API_KEY": KEY, "CDPTRACK_ORANGEPILL_API_KEY": KEY,
           "CDPTRACK_YESPO_TRACKER_URL": apis.tracker.url + "/api/v2",
           "CDPTRACK_YESPO_API_URL": apis.events.url + "/api/v1",
           "CDPTRACK_CUSTOMERIO_URL": apis.customerio.url + "/wrong/v1",
           "CDPTRACK_ORANGEPILL_URL": apis.orangepill.url + "/v1"}
    done = doctor(env, "--live", "--timeout", "0.5", "--json")
    assert done.returncode == 1
    verdicts = {d["name"]: d["verdict"] for d in json.loads(done.stdout)["destinations"]}
    assert verdicts == {"yespo_tracker": "ok", "yespo_events": "wrong_key",
                        "customerio": "wrong_url", "orangepill": "timeout"}
    text = doctor(env, "--live", "--timeout", "0.5").stdout
    assert "HTTP 401" in text and "check the API key" in text
    assert "HTTP 404" in text and "check the base URL" in text
    apis.orangepill.stop()
    refused = doctor(env, "--live", "--timeout", "0.5", "--json")
    verdicts = {d["name"]: d["verdict"] for d in json.loads(refused.stdout)["destinations"]}
    assert verdicts["orangepill"] == "refused"
    assert KEY not in done.stdout + done.stderr + text + refused.stdout + refused.stderr
    # The probes carried the keys but no event: empty bodies and a person listing.
    assert {(r.method, r.body) for r in apis.tracker.requests} == {("POST", b"{}")}
    assert {r.body for r in apis.customerio.requests} == {b'{"batch": []}'}
    assert {r.headers["Authorization"] for r in apis.events.requests} == {
        "Basic " + base64.b64encode(f"cdptrack:{KEY}".encode()).decode()}
    assert {(r.method, r.path) for r in apis.orangepill.requests} == {
        ("GET", "/v1/identities/persons?limit=1")}
    assert "HTTP Request" not in done.stderr + refused.stderr


# -- the outbox -------------------------------------------------------------------------------

REDIS_PW = "redis-pw-SECRET-31"


def test_the_outbox_is_described_without_live_and_a_redis_password_is_never_shown() -> None:
    keys = {"CDPTRACK_ORANGEPILL_API_KEY": KEY}
    done = doctor(keys)
    assert done.returncode == 0, done.stdout
    assert "outbox: memory" in done.stdout and "lost if it exits" in done.stdout
    url = f"redis://:{REDIS_PW}@127.0.0.1:{closed_port()}/0?prefix=shop7&max_deliveries=4"
    for args in ((), ("--json",)):
        done = doctor({**keys, "CDPTRACK_OUTBOX": url}, *args)
        assert done.returncode == 0, done.stdout  # nothing contacted without --live
        assert REDIS_PW not in done.stdout + done.stderr
    assert "redis://:***@127.0.0.1" in doctor({**keys, "CDPTRACK_OUTBOX": url}).stdout
    as_json = json.loads(done.stdout)["outbox"]
    assert (as_json["kind"], as_json["usable"]) == ("redis", None)
    assert "prefix shop7" in as_json["detail"] and "max_deliveries 4" in as_json["detail"]
    done = doctor({**keys, "CDPTRACK_OUTBOX": "postgres://nope"})
    assert done.returncode == 1 and "outbox must be" in done.stdout


def test_live_sqlite_outbox_says_what_waits_and_what_is_dead(tmp_path: Path) -> None:
    path = tmp_path / "data" / "outbox.db"
    with Sink(fail="400:1.0") as refusing:  # Customer.io refuses: dead letters
        config = Config(customerio_api_key=KEY, customerio_url=refusing.url + "/customerio/v1",
                        orangepill_api_key=KEY,
                        orangepill_url=f"http://127.0.0.1:{closed_port()}/v1")  # down
        tracker = Tracker(config, outbox=f"sqlite:///{path}", backoff=0.01, max_backoff=0.05)
        for i in range(3):
            tracker.capture(product_viewed(i))
        assert wait_for(lambda: tracker.stats()["customerio"]["dead"] == 3)
        tracker.shutdown(0.5)  # Orangepill's deliveries stay in the file
    env = {"CDPTRACK_ORANGEPILL_API_KEY": KEY, "CDPTRACK_OUTBOX": f"sqlite:///{path}"}
    with Sink() as sink:
        live = {**env, **sink.env()}
        done = doctor(live, "--live", "--timeout", "3")
        assert done.returncode == 0, done.stdout
        assert ("ok: directory writable, file readable; 3 events not yet delivered "
                "everywhere (orangepill 3), 3 dead letters") in done.stdout
        counts = json.loads(doctor(live, "--live", "--json").stdout)["outbox"]["counts"]
        assert counts == {"undelivered": 3, "waiting:orangepill": 3, "dead": 3}
        fresh = {**live, "CDPTRACK_OUTBOX": f"sqlite:///{tmp_path / 'new' / 'o.db'}"}
        done = doctor(fresh, "--live")
        assert done.returncode == 0, done.stdout
        assert "the file is created on first use" in done.stdout
        assert not (tmp_path / "new").exists()  # doctor creates nothing
    assert KEY not in done.stdout + done.stderr


def test_live_sqlite_outbox_that_cannot_be_used_fails(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not an SQLite database at all" * 100)
    with Sink() as sink:
        keys = {"CDPTRACK_ORANGEPILL_API_KEY": KEY, **sink.env()}
        for url, why in ((f"sqlite:///{blocker}/outbox.db", "is not a directory"),
                         (f"sqlite:///{garbage}", "cannot be read")):
            assert doctor({**keys, "CDPTRACK_OUTBOX": url}).returncode == 0  # not looked at
            done = doctor({**keys, "CDPTRACK_OUTBOX": url}, "--live", "--timeout", "3")
            assert done.returncode == 1, done.stdout
            assert "FAIL: " in done.stdout and why in done.stdout
            assert done.stdout.count("ok: HTTP 200") == 1  # the destination is fine


@pytest.mark.skipif(not redis_server.available(), reason="redis-server is not installed")
def test_live_redis_outbox_reachable_and_unreachable(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis", password=REDIS_PW) as server, Sink() as sink:
        url = server.url("shop7")
        web = RedisOutbox.from_url(url)
        for i in range(2):
            assert web.put(product_viewed(i))
        web.close()
        keys = {"CDPTRACK_ORANGEPILL_API_KEY": KEY, **sink.env(), "CDPTRACK_OUTBOX": url}
        done = doctor(keys, "--live", "--timeout", "3")
        assert done.returncode == 0, done.stdout
        assert "stream lengths: events 2, orangepill 0; 0 dead letters" in done.stdout
        assert REDIS_PW not in done.stdout + done.stderr
        wrong = {**keys, "CDPTRACK_OUTBOX": url.replace(REDIS_PW, "wrong-pw")}
        done = doctor(wrong, "--live", "--timeout", "3")
        assert done.returncode == 1, done.stdout
        assert "FAIL: refuses the credentials" in done.stdout
        assert "wrong-pw" not in done.stdout
    done = doctor(keys, "--live", "--timeout", "3")  # Redis stopped
    assert done.returncode == 1, done.stdout
    assert "FAIL: unreachable" in done.stdout
    assert REDIS_PW not in done.stdout + done.stderr
    assert "redis://:***@127.0.0.1" in done.stdout
