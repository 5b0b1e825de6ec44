"""API keys never stored or logged in any encoding: an API that echoes the request's
headers in its 400 body, and keys pasted with a trailing newline or a control character."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from support import redis_server
from support.delivery import API_KEYS, FAST, SECRETS, product_viewed
from support.redis_server import RedisServer

from cdptrack.config import Config, ConfigError, Secret
from cdptrack.delivery.outbox import scrub
from cdptrack.tracker import Tracker

ROOT = Path(__file__).resolve().parent.parent


def encoded_forms(secret: str) -> list[str]:
    """What a leaked key looks like: raw, Basic auth (key as user, as password, both),
    URL- and JSON-encoded."""
    b64 = base64.b64encode
    return [secret, quote(secret, safe=""), json.dumps(secret)[1:-1],
            b64(f"{secret}:".encode()).decode(), b64(f":{secret}".encode()).decode(),
            b64(f"someone:{secret}".encode()).decode(),
            b64(f"ab:{secret}".encode()).decode()]


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        for form in encoded_forms(secret):
            assert form not in text, (form, text)


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = json.dumps({"error": "bad request", "you_sent": dict(self.headers.items()),
                           "raw": str(self.headers)}).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_PUT = do_PATCH = do_GET = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def handle(self) -> None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            super().handle()  # a client that gave up: nothing to answer


@pytest.fixture(name="echo")
def echo_fixture() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def echo_config(url: str, **overrides: Any) -> Config:
    return Config(yespo_site_id="site-1", **API_KEYS, yespo_tracker_url=url + "/api/v2",
                  yespo_api_url=url + "/api/v1", customerio_url=url + "/v1",
                  orangepill_url=url + "/v1", **overrides)


def _outboxes(tmp_path: Path) -> Iterator[tuple[str, str]]:
    yield "memory", "memory"
    yield "sqlite", f"sqlite:///{tmp_path / 'outbox.db'}"


def _dead_letters_scrubbed(tracker: Tracker) -> None:
    tracker.capture(product_viewed(1, email="jane@example.com",
                                   orangepill_identity="634b56217f6a7b0be52dffbd"))
    assert tracker.flush(20)
    deadline = time.monotonic() + 20  # a Redis web process's flush: Redis has them
    while len(tracker.dead_letters()) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    letters = tracker.dead_letters()
    assert {d.destination for d in letters} == {
        "yespo_tracker", "yespo_events", "customerio", "orangepill"}
    for letter in letters:
        assert letter.status == 400
        assert "you_sent" in letter.response  # the echo was stored, scrubbed
        assert_no_secret(letter.response)
        assert_no_secret(json.dumps(letter.request))
    echoed = " ".join(d.response for d in letters)
    assert "<redacted>" in echoed


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_echoed_keys_never_reach_dead_letters_or_logs(
        echo: str, tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture) -> None:
    url = dict(_outboxes(tmp_path))[kind]
    caplog.set_level(logging.DEBUG, logger="cdptrack")
    tracker = Tracker(echo_config(echo), outbox=url, **FAST)
    try:
        _dead_letters_scrubbed(tracker)
    finally:
        tracker.shutdown(5)
    assert_no_secret(caplog.text)
    if kind == "sqlite":
        assert_no_secret(Path(url[len("sqlite:///"):]).read_bytes().decode("latin-1"))
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "CDPTRACK_OUTBOX": url,
               "CDPTRACK_CUSTOMERIO_API_KEY": API_KEYS["customerio_api_key"]}
        listed = subprocess.run([sys.executable, "-m", "cdptrack.cli", "replay", "--list"],
                                capture_output=True, text=True, env=env, timeout=60,
                                cwd=ROOT)
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.count("you_sent") == 4
        assert_no_secret(listed.stdout + listed.stderr)


@pytest.mark.skipif(not redis_server.available(), reason="redis-server is not installed")
def test_echoed_keys_never_reach_redis_dead_letters(echo: str, tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis") as server:
        tracker = Tracker(echo_config(echo), outbox=server.url(prefix="scrub",
                                                               role="worker"), **FAST)
        try:
            _dead_letters_scrubbed(tracker)
        finally:
            tracker.shutdown(5)


@pytest.mark.parametrize("secret", ["cio-SECRET-key-5678", "k3y-short", "a" * 40, "ключ-SECRET-1"])
def test_scrub_removes_every_encoding_whatever_stands_next_to_it(secret: str) -> None:
    for form in encoded_forms(secret):
        for text in (form, f"Basic {form}", f'{{"authorization": "Basic {form}=="}}',
                     f"x{form}y"):
            scrubbed = scrub(text, [secret])
            assert form not in scrubbed, (form, scrubbed)
            assert "<redacted>" in scrubbed


def test_scrub_leaves_other_text_alone() -> None:
    text = '{"error": "missing field email", "code": 400}'
    assert scrub(text, SECRETS) == text


def test_a_pasted_trailing_newline_is_stripped() -> None:
    config = Config(customerio_api_key="cio-SECRET-key-5678\n", orangepill_api_key=" op \t",
                    yespo_api_key=Secret("yespo-SECRET-key-1234\r\n"),
                    yespo_site_id=" site-1\n")
    assert config.customerio_api_key == Secret("cio-SECRET-key-5678")
    assert config.orangepill_api_key == Secret("op")
    assert config.yespo_api_key == Secret("yespo-SECRET-key-1234")
    assert config.yespo_site_id == "site-1"
    assert Config.from_env({"CDPTRACK_CUSTOMERIO_API_KEY": "\n"}).customerio_api_key is None


@pytest.mark.parametrize("bad", ["cio-SECRET\n-5678", "cio-SECRET\x00x", "cio-SECRÉT-x",
                                 "cio-SECRET\x7f"])
def test_control_characters_are_a_config_error_that_does_not_show_the_key(bad: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Config(customerio_api_key=bad)
    message = str(raised.value) + repr(raised.value)
    assert "customerio_api_key" in message
    assert "SECRET" not in message and "SECR" not in message
