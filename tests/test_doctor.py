"""``cdptrack doctor`` says what is on and what is missing, never shows a key, and with
``--live`` tells reachable endpoints (a real sink) from unreachable ones (a closed port)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from cdptrack.commands.doctor import diagnose
from cdptrack.sink import Sink

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


def test_live_check_against_a_sink_and_a_closed_port() -> None:
    keys = {"CDPTRACK_YESPO_SITE_ID": "DEMO", "CDPTRACK_YESPO_API_KEY": KEY,
            "CDPTRACK_CUSTOMERIO_API_KEY": KEY, "CDPTRACK_ORANGEPILL_API_KEY": KEY}
    with Sink() as sink:
        done = doctor({**keys, **sink.env()}, "--live", "--timeout", "3")
        assert done.returncode == 0, done.stdout
        assert done.stdout.count("ok: answers (HTTP") == 4
        assert sink.requests() == []  # the probe sent no event
    dead = f"http://127.0.0.1:{closed_port()}/v1"
    done = doctor({**keys, **sink.env(), "CDPTRACK_ORANGEPILL_URL": dead}, "--live",
                  "--timeout", "3")
    assert done.returncode == 1
    assert "FAIL: unreachable" in done.stdout
    assert KEY not in done.stdout + done.stderr
