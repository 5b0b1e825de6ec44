"""No events lost on a deploy: real servers get SIGTERM while an API is still answering
503, and every product view must reach it (with the sender thread, and with
``CDPTRACK_SENDER=process``).  uvicorn >= 0.29 re-raises the signal after
its graceful shutdown (``atexit`` never runs), Django's ASGI handler and mounted
Starlette apps get no lifespan, and gunicorn's workers exit through ``atexit``."""

from __future__ import annotations

import http.client
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support.api_server import (
    ApiServer,
    Reply,
    api_fixture,  # noqa: F401 - the "api" fixture
)
from support.delivery import FAST, product_viewed
from support.redis_server import free_port

from cdptrack import shutdown_hooks
from cdptrack.config import Config
from cdptrack.tracker import Tracker

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
VIEWS = 6



def _env(api: ApiServer, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDPTRACK_")}
    env.update({"PYTHONPATH": f"{TESTS}{os.pathsep}{ROOT}",
                "CDPTRACK_CUSTOMERIO_API_KEY": "cio-test-key",
                "CDPTRACK_CUSTOMERIO_URL": api.url + "/v1", **extra})
    return env


@contextmanager
def serving(args: list[str], env: dict[str, str], port: int, log: Path
                ) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(args, env=env, cwd=TESTS, stdout=out, stderr=out,
                                   start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("server did not start") from None
                time.sleep(0.05)
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def _views(port: int, prefix: str, tail: str = "") -> None:
    for i in range(VIEWS):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            connection.request("GET", f"{prefix}/products/p-{i}{tail}")
            response = connection.getresponse()
            response.read()
            assert response.status == 200
        finally:
            connection.close()


def _stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)  # the server's own pid, as a process manager does
    return process.wait(40)


def _delivered(api: ApiServer) -> set[str]:
    return {str(message.get("properties", {}).get("product_id"))
            for _, message in api.accepted_messages("/v1")
            if message.get("event") == "Product Viewed"}


def _expect_all_delivered(api: ApiServer, log: Path) -> None:
    assert _delivered(api) == {f"p-{i}" for i in range(VIEWS)}, log.read_text()[-3000:]
    assert any(r.status == 503 for r in api.received("/v1")), "the API never failed"


@pytest.mark.parametrize("wrap", ["bare", "lifespan"])
def test_django_asgi_on_uvicorn_delivers_everything_after_sigterm(
        api: ApiServer, tmp_path: Path, wrap: str) -> None:
    api.fail_next(2, Reply(503), "/v1")
    port = free_port()
    env = _env(api, SHUTDOWN_WRAP="1" if wrap == "lifespan" else "0")
    args = [sys.executable, "-m", "uvicorn", "--port", str(port), "--host", "127.0.0.1",
            "--lifespan", "auto", "support.shutdown_django:application"]
    log = tmp_path / "server.log"
    with serving(args, env, port, log) as process:
        _views(port, "", "/")
        _stop(process)
    _expect_all_delivered(api, log)


@pytest.mark.parametrize(("app", "sender"), [("mounted", "thread"),
                                              ("fastapi_mounted", "thread"),
                                              ("fastapi_mounted", "process")])
def test_mounted_sub_app_on_uvicorn_delivers_everything_after_sigterm(
        api: ApiServer, tmp_path: Path, app: str, sender: str) -> None:
    api.fail_next(2, Reply(503), "/v1")
    port = free_port()
    args = [sys.executable, "-m", "uvicorn", "--port", str(port), "--host", "127.0.0.1",
            f"support.shutdown_apps:{app}"]
    log = tmp_path / "server.log"
    with serving(args, _env(api, CDPTRACK_SENDER=sender), port, log) as process:
        _views(port, "/shop")
        _stop(process)
    _expect_all_delivered(api, log)
    assert "no ASGI lifespan started" in log.read_text()  # the user is told


def test_the_budget_from_the_environment_bounds_the_drain_under_uvicorn(
        api: ApiServer, tmp_path: Path) -> None:
    api.default = Reply(503)  # the API never recovers: the budget decides
    port = free_port()
    args = [sys.executable, "-m", "uvicorn", "--port", str(port), "--host", "127.0.0.1",
            "support.shutdown_apps:mounted"]
    log = tmp_path / "server.log"
    with serving(args, _env(api, CDPTRACK_FLUSH_AT_EXIT="0.3"), port, log) as process:
        _views(port, "/shop")
        _stop(process)
    text = log.read_text()
    lost = re.search(r"shut down after 0\.3s with (\d+) deliveries undelivered; they are "
                     r"lost", text)
    assert lost and int(lost.group(1)) >= VIEWS, text[-3000:]


@pytest.mark.parametrize("sender", ["thread", "process"])
def test_flask_on_gunicorn_delivers_everything_after_sigterm(
        api: ApiServer, tmp_path: Path, sender: str) -> None:
    api.fail_next(2, Reply(503), "/v1")
    port = free_port()
    args = [sys.executable, "-m", "gunicorn", "-w", "1", "-b", f"127.0.0.1:{port}",
            "--control-socket", str(tmp_path / "ctl"), "support.shutdown_apps:flask_app"]
    log = tmp_path / "server.log"
    with serving(args, _env(api, CDPTRACK_SENDER=sender), port, log) as process:
        _views(port, "")
        assert _stop(process) == 0
    _expect_all_delivered(api, log)


def test_django_wsgi_on_gunicorn_delivers_everything_after_sigterm(
        api: ApiServer, tmp_path: Path) -> None:
    api.fail_next(2, Reply(503), "/v1")
    port = free_port()
    args = [sys.executable, "-m", "gunicorn", "-w", "1", "-b", f"127.0.0.1:{port}",
            "--control-socket", str(tmp_path / "ctl"),
            "support.shutdown_django:wsgi_application"]
    log = tmp_path / "server.log"
    with serving(args, _env(api), port, log) as process:
        _views(port, "", "/")
        assert _stop(process) == 0
    _expect_all_delivered(api, log)


def test_what_the_budget_could_not_deliver_is_counted_and_logged(
        api: ApiServer, caplog: pytest.LogCaptureFixture) -> None:
    api.default = Reply(503)
    config = Config(customerio_api_key="cio-test-key", customerio_url=api.url + "/v1")
    tracker = Tracker(config, flush_at_exit=0.3, handle_signals=False, **FAST)
    for i in range(3):
        tracker.capture(product_viewed(i))
    assert api.wait_until(lambda s: bool(s.received("/v1")))
    with caplog.at_level(logging.WARNING, logger="cdptrack"):
        shutdown_hooks.drain()
    assert tracker.stats()["customerio"]["dropped:shutdown"] == 3
    assert "3 deliveries undelivered; they are lost" in caplog.text


def test_the_signal_handler_chains_to_the_previous_one() -> None:
    calls: list[int] = []
    previous = signal.signal(signal.SIGUSR1, signal.SIG_DFL)  # only to restore below
    original_term = signal.getsignal(signal.SIGTERM)
    try:
        shutdown_hooks.uninstall()
        signal.signal(signal.SIGTERM, lambda signum, frame: calls.append(signum))
        assert shutdown_hooks.install()
        assert shutdown_hooks.installed(signal.SIGTERM)
        assert not shutdown_hooks.install()  # once
        signal.raise_signal(signal.SIGTERM)
        assert calls == [signal.SIGTERM]
    finally:
        shutdown_hooks.uninstall()
        signal.signal(signal.SIGTERM, original_term)
        signal.signal(signal.SIGUSR1, previous)


def test_a_script_whose_first_request_is_made_at_exit_delivers_it(api: ApiServer) -> None:
    """A short script captures and ends: the first connection is opened by the exit
    flush, when asyncio's resolver executor no longer takes work.  The API is named by
    host name (``localhost``), so the name must be resolved then; nothing may be lost."""
    url = api.url.replace("127.0.0.1", "localhost") + "/v1"
    script = (
        "from cdptrack.config import Config\n"
        "from cdptrack.tracker import Tracker\n"
        f"tracker = Tracker(Config(customerio_api_key='cio-test-key', customerio_url={url!r}))\n"
        "tracker.capture({'type': 'track', 'event': 'Product Viewed',\n"
        "                 'visitor': {'sc': 'CDA68358-94FB-4D83-9655-3FEB3C4114A3'},\n"
        "                 'properties': {'product_id': 'p-exit', 'price': 5}})\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDPTRACK_")}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert {str(m.get("properties", {}).get("product_id"))
            for _, m in api.accepted_messages("/v1")} == {"p-exit"}
