"""A visitor's events are built in the order of the visitor's requests, whichever thread
builds them: journeys driven back to back (no pause between requests) against real
servers give exactly the events of the same journey driven slowly.

The shops (tests/support/ordered_shops.py) keep carts in the database and money in
``Decimal``; their order answers carry a UUID, ``Decimal`` totals and a ``datetime``,
the values that once made a request "not detachable", built at once on the request
thread while the earlier requests' builds still waited in the sender's queue (a lost
Product Removed, an order sent with a deleted line, a plain GET /cart sending a cart
change)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.servers import free_port, wait_port

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
RUNS = 20


@contextmanager
def server(args: list[str], env: dict[str, str], stop: int = signal.SIGTERM,
           log: bool = False) -> Iterator[str]:
    """A real server process on a free port; stopped gracefully (its tracker flushes).
    ``log``: its standard error is written to ``server.log`` next to the events."""
    port = free_port()
    full_env = {**os.environ, "PYTHONPATH": f"{TESTS / 'support'}{os.pathsep}{ROOT}",
                **env}
    process = subprocess.Popen(
        [sys.executable, "-m", *[a.replace("PORT", str(port)) for a in args]],
        env=full_env, cwd=TESTS, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True)
    try:
        wait_port(port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, stop)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
        assert process.stderr is not None
        text = process.stderr.read().decode(errors="replace")
        if log:
            Path(env["ORDERED_EVENTS"]).with_name("server.log").write_text(text)
        assert "Traceback" not in text, text


def uvicorn(app: str) -> list[str]:
    return ["uvicorn", "--host", "127.0.0.1", "--port", "PORT", "--log-level", "warning",
            app]


def gunicorn(app: str, workers: int = 1, *extra: str) -> list[str]:
    return ["gunicorn", "-w", str(workers), "-b", "127.0.0.1:PORT", *extra, app]


def built_events(path: Path) -> dict[str, list[dict[str, Any]]]:
    """The events the server built, per visitor (``sc``), in the order they were built."""
    per_visitor: dict[str, list[dict[str, Any]]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            event = json.loads(line)
            per_visitor.setdefault(event["visitor"]["sc"], []).append(event)
    return per_visitor


def summary(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What a journey's events say, without ids and times that differ between runs."""
    def ids(lines: list[dict[str, Any]] | None) -> list[tuple[str, int]]:
        return sorted((line["product_id"], line.get("quantity", 1)) for line in lines or ())

    out: list[tuple[Any, ...]] = []
    for e in events:
        if e["type"] == "page":
            continue
        props = e.get("properties") or {}
        if e["type"] == "identify":
            out.append(("identify", e["traits"].get("email")))
        elif e.get("event") == "Cart Updated":
            out.append(("Cart Updated", ids(props["products"]), ids(props["added"]),
                        ids(props["removed"])))
        elif e.get("event") == "Order Completed":
            out.append(("Order Completed", ids(props.get("products")), props.get("total")))
        else:
            out.append((e.get("event") or e["type"],))
    return out


def shop_env(tmp_path: Path, shop: str, outbox: str = "memory") -> dict[str, str]:
    return {"ORDERED_SHOP": shop, "ORDERED_DB": str(tmp_path / "shop.db"),
            "ORDERED_EVENTS": str(tmp_path / "events.jsonl"), "CDPTRACK_OUTBOX": outbox}


# --- FastAPI + SQLModel under uvicorn ---------------------------------------------------


def api_journey(client: httpx.Client, pause: float = 0) -> str:
    """Sign in with a token, add two lines, look at the cart, delete a line (204),
    place the order (answered without its lines); returns the visitor id."""
    sc = str(uuid.uuid4()).upper()
    client.cookies.clear()
    client.cookies.set("sc", sc)
    name = "u" + sc[:8].lower()

    def step(method: str, url: str, **kw: Any) -> httpx.Response:
        answer = client.request(method, url, **kw)
        assert answer.status_code < 300, (method, url, answer.status_code, answer.text)
        time.sleep(pause)
        return answer

    token = step("POST", "/token", json={"username": name}).json()["access_token"]
    h = {"Authorization": f"Bearer {token}"}
    step("POST", "/cart/items", json={"product_id": "p-1", "quantity": 2}, headers=h)
    cart = step("POST", "/cart/items", json={"product_id": "p-2", "quantity": 1},
                headers=h).json()
    step("GET", "/cart", headers=h)
    step("DELETE", f"/cart/items/{cart['items'][1]['id']}", headers=h)
    step("POST", "/orders", headers=h)
    step("GET", "/cart", headers=h)
    return sc


API_EVENTS = [
    ("identify", None),  # the token's user, first seen with the first cart change
    ("Cart Updated", [("p-1", 2)], [("p-1", 2)], []),
    ("Cart Updated", [("p-1", 2), ("p-2", 1)], [("p-2", 1)], []),
    ("Cart Updated", [("p-1", 2)], [], [("p-2", 1)]),
    ("identify", None),  # a checkout says who is buying again
    ("Order Completed", [("p-1", 2)], 9),
    ("Cart Updated", [], [], []),  # bought, not removed
]


def expected_api_events(sc: str) -> list[tuple[Any, ...]]:
    email = "u" + sc[:8].lower() + "@example.com"
    return [(e[0], email) if e[0] == "identify" else e for e in API_EVENTS]


def test_fastapi_journeys_back_to_back_under_uvicorn_give_the_events_of_slow_ones(
        tmp_path: Path) -> None:
    env = shop_env(tmp_path, "fastapi")
    with server(uvicorn("ordered_shops:fastapi_app"), env, signal.SIGINT) as url, \
            httpx.Client(base_url=url) as client:
        slow = api_journey(client, pause=0.3)
        visitors = [api_journey(client) for _ in range(RUNS)]
    built = built_events(tmp_path / "events.jsonl")
    assert summary(built[slow]) == expected_api_events(slow)
    wrong = [(sc, summary(built.get(sc, []))) for sc in visitors
             if summary(built.get(sc, [])) != expected_api_events(sc)]
    assert not wrong, f"{len(wrong)} of {RUNS} journeys: {wrong[:2]}"


# --- Flask + SQLAlchemy under gunicorn --------------------------------------------------


def form_journey(client: httpx.Client, pause: float = 0,
                 workers: set[str] | None = None) -> str:
    """Add two lines (POST-redirect-GET), delete one, check out (the order declared
    with its UUID and ``Decimal`` total), look at the cart again; returns the visitor
    id."""
    sc = str(uuid.uuid4()).upper()
    client.cookies.clear()
    client.cookies.set("sc", sc)

    def step(method: str, url: str, **kw: Any) -> httpx.Response:
        answer = client.request(method, url, **kw)
        assert answer.status_code < 400, (method, url, answer.status_code, answer.text)
        if workers is not None:
            workers.add(answer.headers["X-Worker"])
        time.sleep(pause)
        return answer

    step("POST", "/cart/add", data={"product_id": "p-1", "quantity": "2"})
    step("GET", "/cart")
    step("POST", "/cart/add", data={"product_id": "p-2", "quantity": "1"})
    line = step("GET", "/cart/lines").json()["ids"][1]
    step("POST", f"/cart/remove/{line}")
    step("POST", "/checkout")
    step("GET", "/cart")
    return sc


FORM_EVENTS = [
    ("Cart Updated", [("p-1", 2)], [("p-1", 2)], []),
    ("Cart Updated", [("p-1", 2), ("p-2", 1)], [("p-2", 1)], []),
    ("Cart Updated", [("p-1", 2)], [], [("p-2", 1)]),
    ("Order Completed", [("p-1", 2)], 9),
    ("Cart Updated", [], [], []),
]


@pytest.mark.parametrize(("worker", "declare"), [
    ("sync", "values"), ("gthread", "values"),
    ("sync", "objects"),  # built on the request thread, in its turn
])
def test_flask_journeys_back_to_back_under_gunicorn_give_the_events_of_slow_ones(
        tmp_path: Path, worker: str, declare: str) -> None:
    env = {**shop_env(tmp_path, "flask"), "ORDERED_DECLARE": declare}
    with server(gunicorn("ordered_shops:flask_app", 1, "-k", worker), env) as url, \
            httpx.Client(base_url=url) as client:
        slow = form_journey(client, pause=0.3)
        visitors = [form_journey(client) for _ in range(RUNS)]
    built = built_events(tmp_path / "events.jsonl")
    assert summary(built[slow]) == FORM_EVENTS
    wrong = [(sc, summary(built.get(sc, []))) for sc in visitors
             if summary(built.get(sc, [])) != FORM_EVENTS]
    assert not wrong, f"{len(wrong)} of {RUNS} journeys: {wrong[:2]}"


# --- several worker processes -----------------------------------------------------------


def test_gunicorn_workers_sharing_a_sqlite_outbox_agree_on_carts_and_orders(
        tmp_path: Path) -> None:
    """Two gunicorn workers, one SQLite outbox file: whichever worker serves each
    request, a journey's events are those of one process."""
    env = shop_env(tmp_path, "flask", f"sqlite:///{tmp_path / 'outbox.db'}")
    served: list[set[str]] = []
    with server(gunicorn("ordered_shops:flask_app", 2, "--preload"), env) as url:
        for _ in range(RUNS):
            workers: set[str] = set()
            # A new connection per request: either worker may take it.
            with httpx.Client(base_url=url, headers={"Connection": "close"}) as client:
                served.append(workers)
                visitor = form_journey(client, workers=workers)
                served[-1] = workers | {visitor}
    built = built_events(tmp_path / "events.jsonl")
    mixed = [s for s in served if len(s) > 2]  # the visitor and two workers
    assert mixed, "no journey was served by both workers"
    wrong = [(sc, summary(events)) for sc, events in built.items()
             if summary(events) != FORM_EVENTS]
    assert len(built) == RUNS and not wrong, f"{len(wrong)} of {RUNS} journeys: {wrong[:2]}"


def test_several_gunicorn_workers_with_the_memory_outbox_are_warned_about(
        tmp_path: Path) -> None:
    env = shop_env(tmp_path, "flask")
    with server(gunicorn("ordered_shops:flask_app", 2, "--preload"), env, log=True) as url, \
            httpx.Client(base_url=url, headers={"Connection": "close"}) as client:
        for _ in range(4):
            form_journey(client)
    log = (tmp_path / "server.log").read_text()
    assert "gunicorn runs 2 worker processes, but the outbox is in memory" in log
    assert "CDPTRACK_OUTBOX=sqlite:///" in log
    with server(gunicorn("ordered_shops:flask_app", 1), env, log=True) as url, \
            httpx.Client(base_url=url) as client:
        form_journey(client)
    assert "worker processes" not in (tmp_path / "server.log").read_text()
