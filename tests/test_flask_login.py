"""A Flask shop using the real Flask-Login: ``current_user`` becomes the visitor of every
event, and reaches the APIs through the real Tracker and the local sink."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask, redirect

from cdptrack.config import Config
from cdptrack.integrations.flask import CDPTrack
from cdptrack.observe.declare import track
from cdptrack.sink import Sink
from cdptrack.tracker import Tracker

flask_login = pytest.importorskip("flask_login")


@dataclass
class User(flask_login.UserMixin):  # type: ignore[misc,name-defined]
    id: str
    email: str
    name: str
    orangepill_identity: str


USERS = {"7": User("7", "jane@example.com", "Jane Smith", "634b56217f6a7b0be52dffbd")}


def build_shop(tracker: Tracker) -> Flask:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = "test-secret"
    login = flask_login.LoginManager(app)
    login.user_loader(USERS.get)

    @app.post("/login")
    @track.sign_in()
    def sign_in() -> Any:
        flask_login.login_user(USERS["7"])
        return redirect("/")

    @app.get("/")
    def home() -> str:
        return "<h1>Trailhead</h1>"

    @app.get("/product/<product_id>")
    def product_detail(product_id: str) -> str:
        track.product(product_id=product_id, price="19.90", currency="USD")
        return f"<h1>Product {product_id}</h1>"

    CDPTrack(app, tracker=tracker, user_loader=lambda request: flask_login.current_user)
    return app


@pytest.fixture
def sink() -> Iterator[Sink]:
    with Sink() as running:
        yield running


def test_current_user_is_the_visitor_at_every_api(sink: Sink) -> None:
    config = Config(yespo_site_id="SITE", yespo_api_key="k-yespo", customerio_api_key="k-cio",
                    orangepill_api_key="k-op", **sink.config_overrides())
    tracker = Tracker(config, backoff=0.01, max_backoff=0.05)
    client = build_shop(tracker).test_client()
    client.get("/product/1").close()  # anonymous
    client.post("/login").close()
    client.get("/product/2").close()  # signed in
    assert tracker.flush(20)
    tracker.shutdown()

    records = sink.requests()
    assert records and all(r["valid"] for r in records), [r["problems"] for r in records]
    cio = [r["body"] for r in records if r["api"] == "customerio"]
    identify = [m for m in cio if m["type"] == "identify"]
    assert len(identify) == 1  # once at sign-in, not on the later page
    assert identify[0]["userId"] == "7"
    assert identify[0]["traits"]["email"] == "jane@example.com"
    viewed = {m["properties"]["product_id"]: m for m in cio if m.get("event") == "Product Viewed"}
    assert "userId" not in viewed["1"] and viewed["1"]["anonymousId"]
    assert viewed["2"]["userId"] == "7"
    assert viewed["2"]["properties"]["price"] == 19.9
    # The user's Orangepill identity and email reach the APIs that need them.
    op_paths = [r["path"] for r in records if r["api"] == "orangepill"]
    assert any("/identities/634b56217f6a7b0be52dffbd/person/event/productViewed" in p
               for p in op_paths)
    yespo = [r["body"] for r in records if r["api"] == "yespo_events"]
    assert any(b["eventTypeKey"] == "productViewed" and b["keyValue"] == "jane@example.com"
               for b in yespo)
