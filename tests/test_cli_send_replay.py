"""``cdptrack send`` / ``replay`` / ``worker`` as a user runs them: a real process,
JSON lines on stdin, real local APIs."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

from support.api_server import Reply
from support.delivery import (
    API_KEYS,
    FourApis,
    apis_fixture,  # noqa: F401 - the "apis" fixture
    marker,
    markers_received,
    product_viewed,
)

ROOT = Path(__file__).resolve().parent.parent


def _env(apis: FourApis, **extra: str) -> dict[str, str]:
    config = apis.config()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDPTRACK_")}
    env.update({
        "PYTHONPATH": str(ROOT),
        "CDPTRACK_YESPO_SITE_ID": "site-1",
        "CDPTRACK_YESPO_API_KEY": API_KEYS["yespo_api_key"],
        "CDPTRACK_CUSTOMERIO_API_KEY": API_KEYS["customerio_api_key"],
        "CDPTRACK_ORANGEPILL_API_KEY": API_KEYS["orangepill_api_key"],
        "CDPTRACK_YESPO_TRACKER_URL": config.yespo_tracker_url,
        "CDPTRACK_YESPO_API_URL": config.yespo_api_url,
        "CDPTRACK_CUSTOMERIO_URL": config.customerio_base_url,
        "CDPTRACK_ORANGEPILL_URL": config.orangepill_url,
    })
    env.update(extra)
    return env


def _cdptrack(args: list[str], env: dict[str, str], stdin: str = ""
              ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cdptrack.cli", *args], input=stdin,
                          capture_output=True, text=True, env=env, timeout=60, cwd=ROOT)


def summary_table(stderr: str) -> dict[str, dict[str, int]]:
    """The counters table a command printed: destination -> column -> number."""
    lines = stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("destination "))
    header = lines[start].split()[1:-1]  # the last column holds the reasons
    table = {}
    for line in lines[start + 1:]:
        cells = line.split()
        if not cells or not cells[1].isdigit():
            break
        table[cells[0]] = dict(zip(header, map(int, cells[1:1 + len(header)]), strict=True))
    return table


def _lines(numbers: range) -> str:
    return "".join(json.dumps(product_viewed(i).to_dict()) + "\n" for i in numbers)


def test_send_delivers_every_event_and_exits_0(apis: FourApis) -> None:
    result = _cdptrack(["send", "--timeout", "20"], _env(apis), _lines(range(25)))
    assert result.returncode == 0, result.stderr
    for name, server in apis.by_destination().items():
        assert set(markers_received(server)) == {marker(i) for i in range(25)}, name
    assert summary_table(result.stderr)["customerio"]["sent"] == 25
    assert "\r" not in result.stderr  # no progress bar when stderr is not a terminal
    for secret in API_KEYS.values():
        assert secret not in result.stderr + result.stdout


def test_send_reports_malformed_lines_by_number_and_exits_1(apis: FourApis, tmp_path: Path
                                                            ) -> None:
    events = tmp_path / "events.jsonl"
    lines = _lines(range(2)).splitlines()
    events.write_text("\n".join([lines[0], "{not json", '{"type": "track"}', lines[1]]) + "\n")
    result = _cdptrack(["send", str(events)], _env(apis))
    assert result.returncode == 1
    assert f"{events}:2: invalid JSON" in result.stderr
    assert f"{events}:3: invalid event" in result.stderr
    assert set(markers_received(apis.customerio)) == {marker(0), marker(1)}


def test_send_dry_run_sends_nothing(apis: FourApis) -> None:
    result = _cdptrack(["send", "--dry-run"], _env(apis), _lines(range(3)))
    assert result.returncode == 0, result.stderr
    assert all(not server.received() for server in apis)
    assert summary_table(result.stderr)["customerio"]["dry_run"] == 3


def test_send_exits_1_when_something_is_dead_lettered(apis: FourApis) -> None:
    apis.events.default = Reply(400, '{"error": "bad keyValue"}')
    result = _cdptrack(["send"], _env(apis), _lines(range(2)))
    assert result.returncode == 1
    assert "dead letter: yespo_events" in result.stderr and "bad keyValue" in result.stderr


def test_renderer_skips_do_not_fail_send(apis: FourApis) -> None:
    anonymous = {"type": "track", "event": "Product Viewed", "visitor": {"sc": "ABC"},
                 "properties": {"product_id": "sku-00001"}}
    result = _cdptrack(["send"], _env(apis), json.dumps(anonymous) + "\n")
    assert result.returncode == 0, result.stderr
    assert "skipped:no_contact_key 1" in result.stderr


def test_progress_bar_on_a_terminal(apis: FourApis) -> None:
    main, secondary = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "cdptrack.cli", "send"], stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=secondary, env=_env(apis), cwd=ROOT, text=True)
        os.close(secondary)
        process.communicate(_lines(range(5)), timeout=60)
        output = b""
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(main)
    assert process.returncode == 0
    assert b"cdptrack send [" in output and b"5/5" in output


def test_replay_resends_a_dead_letter_once_the_api_accepts(apis: FourApis, tmp_path: Path
                                                           ) -> None:
    outbox = f"sqlite:///{tmp_path / 'outbox.db'}"
    env = _env(apis, CDPTRACK_OUTBOX=outbox)
    apis.orangepill.default = Reply(400, '{"message": "event definition missing"}')
    sent = _cdptrack(["send"], env, _lines(range(3)))
    assert sent.returncode == 1
    assert not markers_received(apis.orangepill)

    listed = _cdptrack(["replay", "--list"], env)
    letters = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(d["destination"], d["status"]) for d in letters] == [("orangepill", 400)] * 3
    assert "event definition missing" in letters[0]["response"]

    still_failing = _cdptrack(["replay"], env)
    assert still_failing.returncode == 1  # refused again: back in the store

    apis.orangepill.default = Reply(200)
    replayed = _cdptrack(["replay"], env)
    assert replayed.returncode == 0, replayed.stderr
    assert set(markers_received(apis.orangepill)) == {marker(i) for i in range(3)}
    assert _cdptrack(["replay", "--list"], env).stdout == ""
    # Only the dead destination was sent again; the others got each event once.
    assert all(len(v) == 1 for v in markers_received(apis.customerio).values())


def test_replay_needs_a_durable_outbox(apis: FourApis) -> None:
    result = _cdptrack(["replay", "--outbox", "memory"], _env(apis))
    assert result.returncode == 2
    assert "durable outbox" in result.stderr


def test_replay_of_a_missing_sqlite_file_is_an_error_and_creates_nothing(
        apis: FourApis, tmp_path: Path) -> None:
    typo = tmp_path / "nowhere" / "typo.db"
    result = _cdptrack(["replay", "--outbox", f"sqlite:///{typo}"], _env(apis))
    assert result.returncode == 2
    assert f"no outbox file at {typo}" in result.stderr
    assert not typo.parent.exists()


def test_replay_help_offers_only_durable_outboxes() -> None:
    result = _cdptrack(["replay", "--help"], {**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "memory" not in text
    assert "sqlite:///path" in text and "redis://" in text
    assert "once the input is read" not in text
    assert "wait for the replayed requests to be delivered" in text



def test_send_of_1000_events_prints_a_summary_not_a_line_per_request(apis: FourApis) -> None:
    result = _cdptrack(["send", "--timeout", "50"], _env(apis), _lines(range(1000)))
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    # "summary", the header and one row per destination: nothing per request.
    assert len(lines) == 2 + 4, result.stderr
    assert "HTTP Request" not in result.stderr
    assert summary_table(result.stderr)["yespo_tracker"]["sent"] == 1000
    assert result.stdout == ""


def test_send_verbose_logs_every_request(apis: FourApis) -> None:
    result = _cdptrack(["send", "-v"], _env(apis), _lines(range(20)))
    assert result.returncode == 0, result.stderr
    request_lines = [line for line in result.stderr.splitlines() if "HTTP Request" in line]
    # 20 single requests to each of three APIs, Customer.io batched.
    assert len(request_lines) >= 60
    for secret in API_KEYS.values():
        assert secret not in result.stderr


def test_dead_letter_log_line_carries_the_api_reason(apis: FourApis) -> None:
    apis.events.default = Reply(400, '{"error": "keyValue is not a contact"}')
    result = _cdptrack(["send"], _env(apis), _lines(range(1)))
    assert result.returncode == 1
    [logged] = [line for line in result.stderr.splitlines()
                if "WARNING" in line and "dead-lettered" in line]
    assert "400" in logged and "keyValue is not a contact" in logged
    assert summary_table(result.stderr)["yespo_events"]["dead"] == 1
