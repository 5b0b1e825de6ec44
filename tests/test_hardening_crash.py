"""No accepted request loses its events when a worker is killed: real gunicorn
``--preload`` with two sync workers and the SQLite outbox, a client in another process
asking for product pages, and workers SIGKILLed again and again under that load.  Every
request whose whole 200 the client received must have its Product Viewed delivered to a
real local Customer.io, by the surviving workers or, after the server stopped, by a
tracker opened on the same file (that is what "left in the outbox" means).

The client kills the worker that served a page as soon as it has read all of it, so
the kill lands where events built after the body was sent are lost: with the shop's
``CRASH_LATE=1`` (events committed at ``close()``, after the last chunk) this test
loses 5-6 events a run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from support.api_server import (
    ApiServer,
    api_fixture,  # noqa: F401 - the "api" fixture
)
from support.redis_server import free_port
from test_hardening_shutdown import serving

from cdptrack.config import Config
from cdptrack.tracker import Tracker

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
REQUESTS = 1500
KILLS = 5  # by the test, at moments the load is in full swing
KILL_EVERY = 250  # and by the client, just after it had a whole response
CLIENT_THREADS = 4



def workers_of(master: int) -> list[int]:
    """The live (not zombie) child processes of ``master``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            continue
        if fields and fields[0] != "Z" and int(fields[1]) == master:
            found.append(int(entry))
    return sorted(found)


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def delivered(api: ApiServer) -> set[str]:
    return {str(message.get("properties", {}).get("product_id"))
            for _, message in api.accepted_messages("/v1")
            if isinstance(message, dict) and message.get("event") == "Product Viewed"}


def test_sigkilled_gunicorn_workers_lose_no_event_of_an_answered_request(
        api: ApiServer, tmp_path: Path) -> None:
    outbox = f"sqlite:///{tmp_path / 'outbox.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDPTRACK_")}
    env.update({"PYTHONPATH": f"{TESTS}{os.pathsep}{ROOT}", "CDPTRACK_OUTBOX": outbox,
                "CDPTRACK_CUSTOMERIO_API_KEY": "cio-test-key",
                "CDPTRACK_CUSTOMERIO_URL": api.url + "/v1"})
    port = free_port()
    args = [sys.executable, "-m", "gunicorn", "--preload", "-w", "2", "-b",
            f"127.0.0.1:{port}", "--control-socket", str(tmp_path / "ctl"),
            "support.crash_shop:app"]
    log, ok_file, killed_file = (tmp_path / "server.log", tmp_path / "ok.txt",
                                 tmp_path / "killed.txt")
    killed: list[int] = []
    with serving(args, env, port, log) as server:
        while len(workers_of(server.pid)) < 2:
            time.sleep(0.05)
        client = subprocess.Popen(
            [sys.executable, str(TESTS / "support" / "crash_client.py"), str(port),
             str(REQUESTS), str(CLIENT_THREADS), str(ok_file), str(KILL_EVERY),
             str(killed_file)], cwd=TESTS)
        try:
            step = REQUESTS // (KILLS + 1)
            while len(killed) < KILLS and client.poll() is None:
                if len(lines(ok_file)) < step * (len(killed) + 1):
                    time.sleep(0.01)
                    continue
                alive = [pid for pid in workers_of(server.pid) if pid not in killed]
                if not alive:
                    time.sleep(0.01)
                    continue
                victim = alive[len(killed) % len(alive)]
                try:
                    os.kill(victim, signal.SIGKILL)
                except ProcessLookupError:  # the client killed it a moment ago
                    continue
                killed.append(victim)
            assert client.wait(300) == 0
        finally:
            if client.poll() is None:
                client.kill()
                client.wait(10)
        server.send_signal(signal.SIGTERM)
        assert server.wait(60) == 0, log.read_text()[-3000:]
    assert len(killed) == KILLS, f"only {len(killed)} kills before the client finished"
    assert len(lines(killed_file)) >= REQUESTS // KILL_EVERY - 1
    answered = lines(ok_file)
    assert len(answered) > REQUESTS // 2, log.read_text()[-3000:]

    # Whatever the workers had not sent is in the file: a tracker opened on it after
    # the server stopped takes over the dead workers' rows and delivers them.
    config = Config(customerio_api_key="cio-test-key", customerio_url=api.url + "/v1")
    drainer = Tracker(config, outbox=outbox, handle_signals=False, backoff=0.01,
                      max_backoff=0.05)
    try:
        drainer.start()
        assert drainer.flush(120), "the outbox did not drain"
    finally:
        drainer.shutdown(5)
    missing = set(answered) - delivered(api)
    assert not missing, f"{len(missing)} answered requests lost their events: " \
        f"{sorted(missing)[:20]}"
