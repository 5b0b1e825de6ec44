"""``sender="process"``: a child process holds the memory outbox and sends; the web
process builds events and writes them to a pipe.  Checked against real local APIs and
real processes: the same wire requests as the thread sender; what a SIGKILLed web
process had handed over still delivered; a killed child replaced (its loss logged and
counted); a stopped child never blocking ``capture``; keys never in the child's command
line or environment; the callbacks called in the web process; a fork.  A SIGTERM of
gunicorn and uvicorn with the process sender: tests/test_hardening_shutdown.py."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from support.api_server import (
    ApiServer,
    Reply,
    api_fixture,  # noqa: F401 - the "api" fixture
)
from support.delivery import (
    FAST,
    SECRETS,
    FourApis,
    all_arrived,
    apis_fixture,  # noqa: F401 - the "apis" fixture
    product_viewed,
)

from cdptrack.config import Config, ConfigError
from cdptrack.delivery.outbox import DeadLetter
from cdptrack.tracker import Tracker

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent



def _tracker(config: Config, **kwargs: Any) -> Tracker:
    return Tracker(config, handle_signals=False, flush_at_exit=5.0, **FAST, **kwargs)


def vars_of(config: Config) -> dict[str, Any]:
    """``config``'s settings, keys revealed."""
    from cdptrack.delivery.sender_process import config_for_child
    return config_for_child(config)


def _wire(apis: FourApis) -> list[tuple[str, str, Any]]:
    """What each API accepted: (destination, path, JSON body), in a stable order."""
    out = []
    for name, server in apis.by_destination().items():
        for request in server.accepted():
            out.append((name, request.path, request.json))
    return sorted(out, key=lambda item: json.dumps(item, sort_keys=True))


def test_the_process_sender_sends_exactly_what_the_thread_sender_sends(
        apis: FourApis) -> None:
    events = [product_viewed(i) for i in range(12)]
    thread = _tracker(apis.config())
    for event in events:
        thread.capture(event)
    assert thread.flush(20)
    thread.shutdown(5)
    by_thread = _wire(apis)
    for server in apis:
        server.requests.clear()

    process = _tracker(apis.config(sender="process"))
    for event in events:
        process.capture(event)
    assert process.flush(20)
    stats = process.stats()
    assert process.shutdown(5)
    assert _wire(apis) == by_thread  # same requests, same message ids
    assert {name: row["sent"] for name, row in stats.items()} == {
        "yespo_tracker": 12, "yespo_events": 12, "customerio": 12, "orangepill": 12}
    assert all_arrived(apis, 12)


def test_keys_reach_the_child_through_the_pipe_only(
        apis: FourApis, monkeypatch: pytest.MonkeyPatch) -> None:
    # Keys set the usual way, in the app's environment, and read from it.
    monkeypatch.setenv("CDPTRACK_CUSTOMERIO_API_KEY", SECRETS[1])
    monkeypatch.setenv("CDPTRACK_YESPO_API_KEY", SECRETS[0])
    config = Config.from_env(**{k: v for k, v in vars_of(apis.config()).items()
                                if k in ("yespo_site_id", "orangepill_api_key")
                                or k.endswith("_url")}, sender="process")
    assert config.customerio_api_key is not None
    tracker = _tracker(config)
    tracker.capture(product_viewed(0))
    assert tracker.flush(20)
    child = tracker._process.child_pid if tracker._process else None
    assert child is not None
    seen = Path(f"/proc/{child}/cmdline").read_bytes() + Path(
        f"/proc/{child}/environ").read_bytes()
    assert Path(f"/proc/{child}/comm").read_text().strip() == "cdptrack-sender"
    tracker.shutdown(5)
    for secret in SECRETS:
        assert secret.encode() not in seen
    assert b"CDPTRACK_" not in seen
    assert "SECRET" not in repr(tracker) + repr(tracker.config)


def test_a_stopped_child_never_blocks_capture_and_the_overflow_is_counted(
        api: ApiServer) -> None:
    config = Config(customerio_api_key="cio-test-key", customerio_url=api.url + "/v1",
                    sender="process")
    tracker = _tracker(config, max_queue=50)
    tracker.capture(product_viewed(0))
    assert tracker.flush(20)
    child = tracker._process.child_pid if tracker._process else None
    assert child is not None
    big = {"note": "x" * 20_000}  # a few of these fill the pipe
    os.kill(child, signal.SIGSTOP)
    try:
        started = time.monotonic()
        for i in range(400):
            event = product_viewed(i + 1)
            tracker.capture({**event.to_dict(), "properties": {
                **event.properties, **big}})
        spent = time.monotonic() - started
    finally:
        os.kill(child, signal.SIGCONT)
    assert spent < 5.0  # nothing waited for the stopped child
    assert tracker.flush(30)
    stats = tracker.stats()["customerio"]
    tracker.shutdown(5)
    assert stats["dropped:queue_full"] > 0
    assert stats["sent"] + stats["dropped:queue_full"] == 401


def test_a_killed_child_is_replaced_and_its_loss_logged(
        api: ApiServer, caplog: pytest.LogCaptureFixture) -> None:
    config = Config(customerio_api_key="cio-test-key", customerio_url=api.url + "/v1",
                    sender="process")
    tracker = _tracker(config)
    tracker.capture(product_viewed(0))
    assert tracker.flush(20)
    process = tracker._process
    assert process is not None
    first = process.child_pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while process.running() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(1.1)  # at most one start a second
    with caplog.at_level(logging.WARNING, logger="cdptrack"):
        tracker.capture(product_viewed(1))
        assert tracker.flush(20)
    second = process.child_pid
    tracker.shutdown(5)
    assert second is not None and second != first
    assert "the sender process exited" in caplog.text
    ids = {m["properties"]["product_id"] for _, m in api.accepted_messages("/v1")
           if m.get("type") == "track"}
    assert ids == {"sku-00000", "sku-00001"}


def test_what_a_killed_web_process_handed_over_is_still_delivered(
        api: ApiServer, tmp_path: Path) -> None:
    api.fail_next(3, Reply(503), "/v1")  # the child is still retrying when its parent dies
    script = tmp_path / "killed.py"
    script.write_text(textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(TESTS)!r})
        from support.delivery import product_viewed
        from cdptrack.config import Config
        from cdptrack.tracker import Tracker
        tracker = Tracker(Config(customerio_api_key="cio-test-key",
                                 customerio_url={api.url + "/v1"!r}, sender="process"),
                          backoff=0.05, max_backoff=0.1, handle_signals=False)
        for i in range(20):
            tracker.capture(product_viewed(i))
        print(tracker._process.child_pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """))
    env = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{ROOT}"}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                          timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
    child = int(done.stdout.split()[0])
    assert api.wait_until(lambda s: len({
        m["properties"]["product_id"] for _, m in s.accepted_messages("/v1")
        if m.get("type") == "track"}) == 20, timeout=30)
    deadline = time.monotonic() + 15
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        state = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "Z":
            break
        time.sleep(0.05)
    alive = Path(f"/proc/{child}").exists() and Path(
        f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    assert not alive  # it drained and went away on its own


def test_callbacks_run_in_the_web_process(api: ApiServer) -> None:
    api.script("/v1", Reply(400, body='{"error": "bad"}'))
    letters: list[DeadLetter] = []
    drops: list[tuple[Any, str, str]] = []
    config = Config(customerio_api_key="cio-test-key", customerio_url=api.url + "/v1",
                    sender="process")
    tracker = _tracker(config, on_error=letters.append,
                       on_drop=lambda e, d, r: drops.append((e, d, r)))
    tracker.capture(product_viewed(0))  # refused with 400: a dead letter
    tracker.capture({"type": "track", "event": "", "visitor": {"sc": "x"}})  # invalid
    assert tracker.flush(20)
    tracker.shutdown(5)
    assert len(letters) == 1 and letters[0].status == 400
    assert letters[0].destination == "customerio"
    assert [(d, r) for _, d, r in drops] == [("customerio", "invalid")]


def test_dead_letters_are_read_and_replayed_in_the_child(api: ApiServer) -> None:
    api.script("/v1", Reply(400, body='{"error": "bad"}'))
    config = Config(customerio_api_key="cio-test-key", customerio_url=api.url + "/v1",
                    sender="process")
    tracker = _tracker(config)
    tracker.capture(product_viewed(7))
    assert tracker.flush(20)
    letters = tracker.dead_letters()
    assert [(d.destination, d.status) for d in letters] == [("customerio", 400)]
    assert tracker.replay_dead() == 1  # the API takes it now
    assert tracker.flush(20)
    sent = tracker.stats()["customerio"]["sent"]
    tracker.shutdown(5)
    assert sent == 1 and tracker.dead_letters() == []


def test_the_process_sender_is_for_the_memory_outbox(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="memory outbox"):
        Config(customerio_api_key="k", sender="process",
               outbox=f"sqlite:///{tmp_path}/o.db")
    with pytest.raises(ConfigError, match="memory outbox"):
        Tracker(Config(customerio_api_key="k", sender="process"),
                outbox=f"sqlite:///{tmp_path}/o.db", handle_signals=False)
    with pytest.raises(ConfigError, match="sender"):
        Config(sender="fork")  # type: ignore[arg-type]
    assert Config.from_env({"CDPTRACK_SENDER": "process"}).sender == "process"


def test_the_child_reads_whole_lines_across_partial_writes() -> None:
    from cdptrack.delivery.sender_child import _lines

    read_end, write_end = os.pipe()
    try:
        os.write(write_end, b'{"a":1}\n{"b":')
        os.write(write_end, b'2}\n{"c":3')
        os.close(write_end)
        assert list(_lines(read_end, 0.0)) == [b'{"a":1}', b'{"b":2}', b'{"c":3']
    finally:
        os.close(read_end)


def test_after_a_fork_each_process_has_its_own_sender_process(
        api: ApiServer, tmp_path: Path) -> None:
    """gunicorn --preload: a tracker used before the fork.  The forked worker sends
    through a child of its own, and the parent's child still ends when the parent
    stops (the worker closed its copy of the pipe)."""
    script = tmp_path / "forked.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys, time
        sys.path.insert(0, {str(TESTS)!r})
        from support.delivery import product_viewed
        from cdptrack.config import Config
        from cdptrack.tracker import Tracker
        tracker = Tracker(Config(customerio_api_key="cio-test-key",
                                 customerio_url={api.url + "/v1"!r}, sender="process"),
                          handle_signals=False)
        tracker.capture(product_viewed(0))
        assert tracker.flush(20)
        parents_child = tracker._process.child_pid
        pid = os.fork()
        if pid == 0:  # the worker
            tracker.capture(product_viewed(1))
            ok = tracker.flush(20)
            print("worker", tracker._process.child_pid, ok, flush=True)
            time.sleep(3)  # still alive while the parent stops
            tracker.shutdown(5)
            os._exit(0)
        time.sleep(1)
        tracker.capture(product_viewed(2))
        ok = tracker.shutdown(5)
        started = time.monotonic()
        while os.path.exists(f"/proc/{{parents_child}}") and time.monotonic() - started < 2:
            with open(f"/proc/{{parents_child}}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
            time.sleep(0.05)
        print("parent", parents_child, ok, round(time.monotonic() - started, 1), flush=True)
        os.waitpid(pid, 0)
    """))
    env = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{ROOT}"}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    lines = dict(line.split(" ", 1) for line in done.stdout.decode().splitlines())
    worker_child, worker_ok = lines["worker"].split()
    parent_child, parent_ok, parent_wait = lines["parent"].split()
    assert worker_ok == "True" and parent_ok == "True"
    assert worker_child != parent_child
    assert float(parent_wait) < 2  # its end of the pipe closed in the worker too
    ids = sorted(m["properties"]["product_id"] for _, m in api.accepted_messages("/v1")
                 if m.get("type") == "track")
    assert ids == ["sku-00000", "sku-00001", "sku-00002"]


def test_the_start_line_names_the_sender_process(
        api: ApiServer, caplog: pytest.LogCaptureFixture) -> None:
    config = Config(customerio_api_key="cio-test-key", customerio_url=api.url + "/v1",
                    sender="process")
    tracker = _tracker(config)
    with caplog.at_level(logging.INFO, logger="cdptrack.start"):
        tracker.start()
    child = tracker._process.child_pid if tracker._process else None
    started = time.monotonic()
    tracker.flush(0.3)  # bounded, whatever the child's start-up takes
    spent = time.monotonic() - started
    tracker.shutdown(5)
    assert f"sending to customerio (memory outbox in sender process {child}" in caplog.text
    assert spent < 1.0  # the old bound was the timeout plus 1 s
