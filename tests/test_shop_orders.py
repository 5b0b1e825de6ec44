"""Orders from the order object a thank-you view has (Flask + SQLAlchemy), with no
``session["last_order"]``: number before database id, Decimal totals, lines, email;
orders a shop puts on the request (Flask ``g.order``, Starlette ``request.state.order``;
Django ``request.order`` is in test_django_request_objects.py); Order Completed once per
order, whoever reloads the thank-you page, across a fleet when the outbox is Redis."""

from __future__ import annotations

import warnings
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from flask import Flask, g, redirect, render_template_string
from observe_support import ListTracker
from sqlalchemy import ForeignKey, Numeric, String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship
from sqlalchemy.pool import StaticPool

from cdptrack.integrations.fastapi import setup
from cdptrack.integrations.flask import CDPTrack
from cdptrack.observe.memory import LocalMemory, RedisMemory

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

SC = "CDA68358-94FB-4D83-9655-3FEB3C4114A3"
OTHER_SC = "0F0E4C2A-1B7D-4C55-9A0B-7A4A2B1C9D33"


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "shop_order"
    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(20))
    guest_email: Mapped[str] = mapped_column(String(80))
    currency: Mapped[str] = mapped_column(String(3))
    total_incl_tax: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    shipping_incl_tax: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    lines: Mapped[list[OrderLine]] = relationship()


class OrderLine(Base):
    __tablename__ = "order_line"
    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("shop_order.id"))
    product_id: Mapped[int]
    title: Mapped[str] = mapped_column(String(80))
    quantity: Mapped[int]
    unit_price_incl_tax: Mapped[Decimal] = mapped_column(Numeric(10, 2))


def database() -> Any:
    engine = create_engine("sqlite://", poolclass=StaticPool,
                           connect_args={"check_same_thread": False})
    Base.metadata.create_all(engine)
    with Session(engine) as db:
        db.add(Order(id=1, number="100000", guest_email="x@example.com", currency="EUR",
                     total_incl_tax=Decimal("1.00"), shipping_incl_tax=Decimal("0")))
        db.add(Order(id=2, number="100001", guest_email="jane@example.com",
                     currency="EUR", total_incl_tax=Decimal("64.40"),
                     shipping_incl_tax=Decimal("4.50"),
                     lines=[OrderLine(product_id=10, title="Boot", quantity=1,
                                      unit_price_incl_tax=Decimal("59.90"))]))
        db.commit()
    return engine


def shop(tracker: Any) -> Flask:
    engine = database()
    app = Flask(__name__)

    @app.before_request
    def open_db() -> None:
        g.db = Session(engine)

    @app.teardown_request
    def close_db(exc: BaseException | None) -> None:
        db = g.pop("db", None)
        if db is not None:
            db.close()  # the order rows are detached after this

    @app.get("/checkout/thank-you/<int:order_pk>/")
    def thank_you(order_pk: int) -> str:
        order = g.db.get(Order, order_pk)
        return render_template_string("<p>Order {{ order.number }}</p>", order=order)

    @app.get("/checkout/success/<number>/")
    def success(number: str) -> str:
        # The shop's own helper put the order on g; the view renders no "order".
        g.order = g.db.query(Order).filter_by(number=number).one()
        return "<p>Thank you</p>"

    @app.post("/checkout/place-order")
    def place_order() -> Any:
        g.order = g.db.get(Order, 2)  # the order this checkout step just placed
        return redirect("/checkout/success/100001/")

    CDPTrack(app, tracker=tracker)
    return app


def check_order_100001(props: dict[str, Any]) -> None:
    assert props["order_id"] == "100001"
    assert (props["total"], props["shipping"], props["currency"]) == (64.4, 4.5, "EUR")
    assert [(p["product_id"], p["quantity"], p["price"]) for p in props["products"]] == [
        ("10", 1, 59.9)]


def test_thank_you_page_with_an_order_row_sends_order_completed_once() -> None:
    tracker = ListTracker()
    client = shop(tracker).test_client()
    client.set_cookie("sc", SC)
    for _ in range(2):  # a reload of the thank-you page
        response = client.get("/checkout/thank-you/2/")
        response.close()
        assert response.data == b"<p>Order 100001</p>"
    event = tracker.one("Order Completed")
    props = event.properties
    assert props["order_id"] == "100001"  # the order number, not the database id "2"
    assert props["total"] == 64.4 and props["revenue"] == 64.4
    assert props["shipping"] == 4.5 and props["currency"] == "EUR"
    assert props["products"] == [
        {"product_id": "10", "quantity": 1, "price": 59.9, "name": "Boot"}]
    assert event.visitor.email == "jane@example.com"


def test_memory_reports_each_order_once_and_stays_bounded() -> None:
    memory = LocalMemory(carts=2, orders=2)
    assert memory.first_report("a:1") and not memory.first_report("a:1")
    assert memory.first_report("a:2") and memory.first_report("a:3")
    assert memory.first_report("a:1")  # the oldest was forgotten: bounded
    assert memory.swap_cart("v1", {}) is None
    memory.swap_cart("v2", {"p": {"product_id": "p", "quantity": 1}})
    memory.swap_cart("v3", {})
    assert memory.swap_cart("v1", {}) is None  # forgotten


def test_a_fleet_on_redis_agrees_on_carts_and_orders(tmp_path: Path) -> None:
    from support import redis_server

    if not redis_server.available():
        pytest.skip("redis-server is not installed")
    with redis_server.RedisServer(tmp_path) as server:
        url = server.url(prefix="shop1")
        one, two = RedisMemory(url), RedisMemory(url)  # two web processes
        assert one.first_report(f"{SC}:100001") is True
        assert two.first_report(f"{SC}:100001") is False
        cart = {"10": {"product_id": "10", "quantity": 2, "price": 59.9}}
        assert one.swap_cart(SC, cart) is None
        assert two.swap_cart(SC, {}) == cart
        assert one.failures == two.failures == 0


def test_redis_down_falls_back_to_this_process_memory() -> None:
    from support import redis_server

    memory = RedisMemory(f"redis://127.0.0.1:{redis_server.free_port()}/0")
    assert memory.first_report("v:1") is True
    assert memory.first_report("v:1") is False
    assert memory.failures == 2


def test_flask_g_order_on_a_thank_you_page_is_completed_once_per_order() -> None:
    tracker = ListTracker()
    app = shop(tracker)
    client, other = app.test_client(), app.test_client()
    client.set_cookie("sc", SC)
    other.set_cookie("sc", OTHER_SC)  # the thank-you link opened on another device
    for browser in (client, client, other):
        response = browser.get("/checkout/success/100001/")
        response.close()
        assert response.data == b"<p>Thank you</p>"
    event = tracker.one("Order Completed")
    check_order_100001(event.properties)
    assert event.visitor.sc == SC and event.visitor.email == "jane@example.com"
    assert app.extensions["cdptrack"].observer.counters["orders_deduplicated"] == 2


def test_flask_g_order_on_a_checkout_post_is_completed() -> None:
    tracker = ListTracker()
    client = shop(tracker).test_client()
    client.set_cookie("sc", SC)
    client.post("/checkout/place-order").close()
    check_order_100001(tracker.one("Order Completed").properties)
    client.get("/checkout/success/100001/").close()  # the redirect's page: not again
    assert len(tracker.named("Order Completed")) == 1


def starlette_shop(tracker: Any) -> FastAPI:
    engine = database()
    app = FastAPI()

    @app.middleware("http")
    async def load_order(request: Request, call_next: Any) -> Any:
        # A shop's middleware: the order a thank-you URL names, on request.state.
        number = request.url.path.rstrip("/").rsplit("/", 1)[-1]
        with Session(engine) as db:
            request.state.order = db.query(Order).filter_by(number=number).one_or_none()
            return await call_next(request)

    @app.get("/checkout/thank-you/{number}", response_class=HTMLResponse)
    def thank_you(number: str) -> str:
        return "<p>Thank you</p>"

    setup(app, tracker=tracker)
    return app


def test_starlette_request_state_order_is_completed_once_per_order() -> None:
    tracker = ListTracker()
    app = starlette_shop(tracker)
    with TestClient(app) as client:
        for sc in (SC, SC, OTHER_SC):
            client.cookies.set("sc", sc)
            response = client.get("/checkout/thank-you/100001")
            assert response.status_code == 200 and response.text == "<p>Thank you</p>"
    event = tracker.one("Order Completed")
    check_order_100001(event.properties)
    assert event.visitor.sc == SC and event.visitor.email == "jane@example.com"


class FleetTracker(ListTracker):
    """A web process's tracker whose outbox is a shared Redis: its observer keeps the
    orders reported in that Redis."""

    def __init__(self, outbox: str) -> None:
        super().__init__()
        self.config = SimpleNamespace(outbox=outbox)


def test_a_fleet_on_redis_reports_each_order_once_whichever_process_and_visitor(
        tmp_path: Path) -> None:
    from support import redis_server

    if not redis_server.available():
        pytest.skip("redis-server is not installed")
    with redis_server.RedisServer(tmp_path) as server:
        url = server.url(prefix="fleet")
        one, two = FleetTracker(url), FleetTracker(url)
        first, second = shop(one).test_client(), shop(two).test_client()
        first.set_cookie("sc", SC)
        second.set_cookie("sc", OTHER_SC)
        first.get("/checkout/success/100001/").close()
        second.get("/checkout/success/100001/").close()  # another host, another visitor
        check_order_100001(one.one("Order Completed").properties)
        assert two.named("Order Completed") == []
        second.get("/checkout/success/100000/").close()  # another order: sent
        assert two.one("Order Completed").properties["order_id"] == "100000"
