"""The start-up line and the shutdown summary: INFO for a clean run, the summary at
WARNING when an event was dropped or dead-lettered, so a server that shows an app's
warnings only (gunicorn, uvicorn: Python's last-resort handler) shows the losses; the
README's one-line recipe shows the INFO lines too.  Real trackers send to real local
API servers; the "process" tests run a child Python with no logging set up."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support.api_server import ApiServer, Reply
from support.delivery import FAST, product_viewed

from cdptrack.config import Config
from cdptrack.events import track
from cdptrack.tracker import Tracker, summary_level

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(name="server")
def server_fixture() -> ApiServer:
    server = ApiServer().start()
    yield server
    server.stop()


def config(server: ApiServer) -> Config:
    return Config(customerio_api_key="cio-key", customerio_url=server.url + "/v1",
                  yespo_site_id="site-1", yespo_tracker_url=server.url + "/api/v2")


def hear_info(caplog: pytest.LogCaptureFixture) -> None:
    # Each logger named: a CLI run in this process may have set a child's level.
    for name in ("cdptrack", "cdptrack.start", "cdptrack.summary"):
        caplog.set_level(logging.INFO, logger=name)


def summary_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records
            if r.name == "cdptrack.summary" and r.getMessage().startswith("shut down")]


def test_the_level_follows_the_counters() -> None:
    clean = {"customerio": {"sent": 3, "dropped": 0, "dead": 0, "skipped": 2}}
    assert summary_level(clean, drained=True) == logging.INFO
    assert summary_level(clean, drained=False) == logging.WARNING
    assert summary_level({**clean, "orangepill": {"dead": 1}}, True) == logging.WARNING
    assert summary_level({"yespo_tracker": {"dropped": 1, "dropped:missing_field:price": 1}},
                         True) == logging.WARNING


def test_a_clean_run_is_summarised_at_info(server: ApiServer,
                                           caplog: pytest.LogCaptureFixture) -> None:
    server.default = Reply(200)
    hear_info(caplog)
    tracker = Tracker(config(server), **FAST)
    tracker.capture(product_viewed(1))
    assert tracker.shutdown(10)
    [summary] = summary_records(caplog)
    assert summary.levelno == logging.INFO
    started = [r for r in caplog.records if r.getMessage().startswith("sending to ")]
    assert [r.levelno for r in started] == [logging.INFO]
    assert "yespo_tracker, customerio" in started[0].getMessage()


def test_a_dead_letter_makes_the_summary_a_warning(server: ApiServer,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    server.default = Reply(400, '{"error": "refused"}')
    hear_info(caplog)
    tracker = Tracker(config(server), **FAST)
    tracker.capture(product_viewed(1))
    tracker.shutdown(10)
    assert tracker.stats()["customerio"]["dead"] == 1
    [summary] = summary_records(caplog)
    assert summary.levelno == logging.WARNING
    assert "customerio" in summary.getMessage()


def test_a_dropped_event_makes_the_summary_a_warning(server: ApiServer,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    server.default = Reply(200)
    hear_info(caplog)
    tracker = Tracker(config(server), **FAST)
    no_price = track("Product Viewed", {"product_id": "p-1"},
                     visitor={"sc": "CDA68358-94FB-4D83-9655-3FEB3C4114A3"})
    tracker.capture(no_price)  # the Yespo tracker needs a price: dropped there
    tracker.shutdown(10)
    assert tracker.stats()["yespo_tracker"]["dropped"] == 1
    [summary] = summary_records(caplog)
    assert summary.levelno == logging.WARNING


CHILD = """
    import logging, sys
    sys.path.insert(0, {tests!r})
    from support.delivery import product_viewed
    from cdptrack import Tracker
    from cdptrack.config import Config

    if {recipe}:  # the README's recipe
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
        logging.getLogger("cdptrack").setLevel(logging.INFO)
        logging.getLogger("cdptrack.http").setLevel(logging.WARNING)
    tracker = Tracker(Config(customerio_api_key="cio-key", customerio_url={url!r}),
                      backoff=0.01, max_backoff=0.05)
    tracker.capture(product_viewed(1))
    tracker.shutdown(10)
"""


def child(server: ApiServer, *, recipe: bool) -> str:
    code = textwrap.dedent(CHILD).format(tests=str(ROOT / "tests"), recipe=recipe,
                                         url=server.url + "/v1")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDPTRACK_")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**env, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_in_a_process_without_logging_set_up_only_a_loss_is_shown(server: ApiServer) -> None:
    server.default = Reply(200)
    assert "shut down" not in child(server, recipe=False)
    server.default = Reply(400, '{"error": "refused"}')
    shown = child(server, recipe=False)
    assert "shut down (drained)" in shown and "customerio" in shown


def test_the_readme_recipe_shows_the_info_lines_without_one_per_request(
        server: ApiServer) -> None:
    server.default = Reply(200)
    shown = child(server, recipe=True)
    assert "INFO cdptrack.start: sending to customerio" in shown
    assert "INFO cdptrack.summary: shut down (drained)" in shown
    assert "HTTP Request" not in shown
