"""Carts kept where real shops keep them, through real frameworks and databases:
a Flask shop's ``CartLine`` table (SQLAlchemy) on ``g.cart``, a FastAPI JSON cart API
(SQLModel) whose endpoints answer with the whole cart, a cart loader option."""

from __future__ import annotations

import warnings
from decimal import Decimal
from typing import Any

import pytest
from fastapi import FastAPI
from flask import Flask, g, redirect, request, session
from observe_support import ListTracker
from sqlalchemy import ForeignKey, Numeric, String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship
from sqlalchemy.pool import StaticPool
from sqlmodel import Field, SQLModel, select
from sqlmodel import Session as ModelSession
from starlette.requests import Request

from cdptrack.integrations.fastapi import setup
from cdptrack.integrations.flask import CDPTrack

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

SC = "CDA68358-94FB-4D83-9655-3FEB3C4114A3"


# --- a Flask shop with a Cart / CartLine table -------------------------------------------


class Base(DeclarativeBase):
    pass


class Product(Base):
    __tablename__ = "product"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    price: Mapped[Decimal] = mapped_column(Numeric(10, 2))


class Cart(Base):
    __tablename__ = "cart"
    id: Mapped[int] = mapped_column(primary_key=True)
    lines: Mapped[list[CartLine]] = relationship(back_populates="cart",
                                                 cascade="all, delete-orphan")


class CartLine(Base):
    __tablename__ = "cart_line"
    id: Mapped[int] = mapped_column(primary_key=True)
    cart_id: Mapped[int] = mapped_column(ForeignKey("cart.id"))
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id"))
    quantity: Mapped[int]
    price: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    cart: Mapped[Cart] = relationship(back_populates="lines")
    product: Mapped[Product] = relationship()


def flask_shop(tracker: ListTracker, **options: Any) -> Flask:
    engine = create_engine("sqlite://", poolclass=StaticPool,
                           connect_args={"check_same_thread": False})
    Base.metadata.create_all(engine)
    with Session(engine) as db:
        db.add_all([Product(id=10, name="Boot", price=Decimal("59.90")),
                    Product(id=11, name="Sock", price=Decimal("4.50"))])
        db.commit()
    app = Flask(__name__)
    app.config["SECRET_KEY"] = "test"

    @app.before_request
    def load_cart() -> None:
        g.db = Session(engine)
        cart_id = session.get("cart_ref")
        g.cart = g.db.get(Cart, cart_id) if cart_id else None

    @app.teardown_request
    def close_db(exc: BaseException | None) -> None:
        db = g.pop("db", None)
        if db is not None:
            db.close()

    @app.post("/cart/add")
    def cart_add() -> Any:
        if g.cart is None:
            g.cart = Cart()
            g.db.add(g.cart)
            g.db.flush()
            session["cart_ref"] = g.cart.id
        pid, qty = int(request.form["product_id"]), int(request.form["quantity"])
        line = next((x for x in g.cart.lines if x.product_id == pid), None)
        if line is None:
            product = g.db.get(Product, pid)
            g.cart.lines.append(CartLine(product=product, quantity=qty, price=product.price))
        else:
            line.quantity += qty
        g.db.commit()
        return redirect("/cart")

    @app.post("/cart/remove/<int:product_id>")
    def cart_remove(product_id: int) -> Any:
        for line in list(g.cart.lines):
            if line.product_id == product_id:
                g.cart.lines.remove(line)
        g.db.commit()
        return redirect("/cart")

    @app.get("/cart")
    def cart_page() -> str:
        return "<p>cart</p>"

    CDPTrack(app, tracker=tracker, currency="EUR", **options)
    return app


def test_flask_cart_line_table_changes_become_cart_updated() -> None:
    tracker = ListTracker()
    client = flask_shop(tracker).test_client()
    client.set_cookie("sc", SC)
    client.post("/cart/add", data={"product_id": "10", "quantity": "2"}).close()
    first = tracker.one("Cart Updated")
    assert first.properties["added"] == [
        {"product_id": "10", "quantity": 2, "price": 59.9, "name": "Boot"}]
    assert first.properties["products"] == first.properties["added"]
    assert first.properties["currency"] == "EUR"
    assert first.visitor.sc == SC
    tracker.clear()
    client.get("/cart").close()  # nothing changed: no event
    assert tracker.named("Cart Updated") == []
    client.post("/cart/add", data={"product_id": "11", "quantity": "1"}).close()
    client.post("/cart/remove/10").close()
    second, third = tracker.named("Cart Updated")
    assert [line["product_id"] for line in second.properties["added"]] == ["11"]
    assert second.properties["removed"] == []
    assert third.properties["removed"][0]["product_id"] == "10"
    assert [p["product_id"] for p in third.properties["products"]] == ["11"]


def test_the_shops_session_and_response_are_unchanged() -> None:
    plain_tracker = ListTracker()
    with_app = flask_shop(plain_tracker).test_client()
    response = with_app.post("/cart/add", data={"product_id": "10", "quantity": "1"})
    assert response.status_code == 302 and response.headers["Location"] == "/cart"
    with with_app.session_transaction() as shop_session:
        assert dict(shop_session) == {"cart_ref": 1}


def test_a_cart_loader_option_is_a_cart_source() -> None:
    tracker = ListTracker()
    seen: list[Any] = []

    def loader(req: Any) -> list[dict[str, Any]]:
        seen.append(req.path)
        return [{"sku": "S-1", "qty": 3, "unit_price": Decimal("2.50")}]

    app = Flask(__name__)

    @app.post("/basket/update")
    def update() -> str:
        return "ok"

    CDPTrack(app, tracker=tracker, cart_loader=loader)
    client = app.test_client()
    client.set_cookie("sc", SC)
    client.post("/basket/update").close()
    event = tracker.one("Cart Updated")
    assert event.properties["added"] == [{"product_id": "S-1", "quantity": 3, "price": 2.5,
                                          "sku": "S-1"}]
    assert seen == ["/basket/update"]


def test_a_failing_cart_loader_is_counted_and_the_request_goes_on() -> None:
    tracker = ListTracker()
    app = Flask(__name__)

    @app.post("/cart/update")
    def update() -> str:
        return "ok"

    def broken(req: Any) -> Any:
        raise RuntimeError("database down")

    CDPTrack(app, tracker=tracker, cart_loader=broken)
    client = app.test_client()
    client.set_cookie("sc", SC)
    response = client.post("/cart/update")
    response.close()
    assert response.status_code == 200 and response.data == b"ok"
    assert tracker.named("Cart Updated") == []
    assert app.extensions["cdptrack"].observer.counters["errors_cart"] == 1


# --- a FastAPI JSON cart API on SQLModel ------------------------------------------------


class Item(SQLModel, table=True):
    __tablename__ = "cart_api_item"  # SQLModel's metadata is shared by every test module

    id: int | None = Field(default=None, primary_key=True)
    visitor: str
    product_id: str
    quantity: int
    unit_price: Decimal = Field(decimal_places=2, max_digits=10)


def fastapi_shop(tracker: ListTracker) -> FastAPI:
    engine = create_engine("sqlite://", poolclass=StaticPool,
                           connect_args={"check_same_thread": False})
    SQLModel.metadata.create_all(engine)
    app = FastAPI()

    def whole_cart(db: ModelSession, visitor: str) -> dict[str, Any]:
        items = db.exec(select(Item).where(Item.visitor == visitor)).all()
        return {"items": [{"id": i.id, "product_id": i.product_id, "quantity": i.quantity,
                           "unit_price": str(i.unit_price)} for i in items],
                "total": str(sum(i.unit_price * i.quantity for i in items))}

    @app.post("/api/v1/cart/items")
    def add_item(body: dict[str, Any]) -> dict[str, Any]:
        with ModelSession(engine) as db:
            db.add(Item(visitor="v", product_id=body["product_id"],
                        quantity=body["quantity"], unit_price=Decimal(body["unit_price"])))
            db.commit()
            return whole_cart(db, "v")

    @app.patch("/api/v1/cart/items/{item_id}")
    def change_item(item_id: int, body: dict[str, Any]) -> dict[str, Any]:
        with ModelSession(engine) as db:
            item = db.get(Item, item_id)
            assert item is not None
            item.quantity = body["quantity"]
            db.commit()
            return whole_cart(db, "v")

    @app.delete("/api/v1/cart/items/{item_id}")
    def delete_item(item_id: int) -> dict[str, Any]:
        with ModelSession(engine) as db:
            db.delete(db.get(Item, item_id))
            db.commit()
            return whole_cart(db, "v")

    @app.get("/api/v1/products/{pid}/reviews")
    def reviews(pid: str) -> dict[str, Any]:
        return {"items": [{"id": 1, "quantity": 1}]}  # cart-shaped, but no cart route

    setup(app, tracker=tracker)
    return app


def test_a_json_cart_api_sends_cart_updated_for_add_change_and_delete() -> None:
    tracker = ListTracker()
    client = TestClient(fastapi_shop(tracker))
    client.cookies.set("sc", SC)
    answer = client.post("/api/v1/cart/items",
                         json={"product_id": "P-1", "quantity": 1, "unit_price": "19.90"})
    assert answer.json()["total"] == "19.90"  # the shop's answer, untouched
    client.post("/api/v1/cart/items",
                json={"product_id": "P-2", "quantity": 2, "unit_price": "5.00"})
    client.patch("/api/v1/cart/items/1", json={"quantity": 3})
    client.delete("/api/v1/cart/items/2")
    client.get("/api/v1/products/P-1/reviews")
    events = tracker.named("Cart Updated")
    assert [(e.properties["added"], e.properties["removed"]) for e in events] == [
        ([{"product_id": "P-1", "quantity": 1, "price": 19.9}], []),
        ([{"product_id": "P-2", "quantity": 2, "price": 5.0}], []),
        ([{"product_id": "P-1", "quantity": 2, "price": 19.9}], []),
        ([], [{"product_id": "P-2", "quantity": 2, "price": 5.0}]),
    ]
    assert events[-1].properties["products"] == [
        {"product_id": "P-1", "quantity": 3, "price": 19.9}]


@pytest.mark.parametrize("body", [b"not json", b'{"items": "nope"}', b"[1, 2]"])
def test_an_unreadable_cart_answer_sends_nothing_and_breaks_nothing(body: bytes) -> None:
    from starlette.responses import Response

    tracker = ListTracker()
    app = FastAPI()

    @app.post("/cart/items")
    def add() -> Response:
        return Response(body, media_type="application/json")

    setup(app, tracker=tracker)
    client = TestClient(app)
    client.cookies.set("sc", SC)
    response = client.post("/cart/items")
    assert response.content == body
    assert tracker.named("Cart Updated") == []


# --- a FastAPI shop whose cart is an ORM row on request.state ----------------------------


def test_request_state_cart_rows_are_read_while_their_database_session_is_open() -> None:
    """The common ``@app.middleware("http")`` database session (outside cdptrack here)
    closes its session as soon as ``call_next`` has the response's start, while the body
    may still be on its way; the view put the cart row on ``request.state.cart`` and
    answered without touching its lazily loaded lines.  cdptrack reads them at response
    start, while the session is still open."""
    engine = create_engine("sqlite://", poolclass=StaticPool,
                           connect_args={"check_same_thread": False})
    Base.metadata.create_all(engine)
    with Session(engine) as db:
        db.add_all([Product(id=10, name="Boot", price=Decimal("59.90")), Cart(id=1)])
        db.commit()

    app = FastAPI()

    @app.post("/cart/add")
    def cart_add(request: Request, body: dict[str, Any]) -> dict[str, str]:
        db: Session = request.state.db
        cart = db.get(Cart, 1)
        assert cart is not None
        db.add(CartLine(cart_id=1, product_id=body["product_id"],
                        quantity=body["quantity"], price=Decimal("59.90")))
        db.commit()  # expires the cart: its lines load when someone reads them
        request.state.cart = cart
        return {"ok": "added"}

    tracker = ListTracker()
    setup(app, tracker=tracker)

    @app.middleware("http")
    async def database_session(request: Request, call_next: Any) -> Any:
        request.state.db = Session(engine)
        try:
            return await call_next(request)
        finally:
            request.state.db.close()  # the cart row is detached from here on

    client = TestClient(app)
    client.cookies.set("sc", SC)
    assert client.post("/cart/add", json={"product_id": 10, "quantity": 2}).json() == {
        "ok": "added"}
    event = tracker.one("Cart Updated")
    assert event.properties["added"] == [
        {"product_id": "10", "quantity": 2, "price": 59.9, "name": "Boot"}]


def test_a_cart_no_source_shows_is_warned_about_once_per_route_and_counted(
        caplog: pytest.LogCaptureFixture) -> None:
    """A shop whose cart lives in a table that only the cart page's template shows (no
    ``g.cart``, no ``cart_loader``, nothing in the session): adding to it sends nothing,
    so the shop owner is told once, with what to do, and the misses are counted."""
    engine = create_engine("sqlite://", poolclass=StaticPool,
                           connect_args={"check_same_thread": False})
    Base.metadata.create_all(engine)
    with Session(engine) as db:
        db.add_all([Product(id=10, name="Boot", price=Decimal("59.90")), Cart(id=1)])
        db.commit()
    app = Flask(__name__)
    app.config["SECRET_KEY"] = "test"

    @app.post("/cart/add-table-line")  # a route no other test warns about
    def cart_add() -> Any:
        with Session(engine) as db:
            db.add(CartLine(cart_id=1, product_id=int(request.form["product_id"]),
                            quantity=1, price=Decimal("59.90")))
            db.commit()
        return redirect("/cart")

    tracker = ListTracker()
    CDPTrack(app, tracker=tracker, defer_events=False)
    client = app.test_client()
    client.set_cookie("sc", SC)
    with caplog.at_level("WARNING", logger="cdptrack"):
        for _ in range(3):
            client.post("/cart/add-table-line", data={"product_id": "10"}).close()
    warned = [r.getMessage() for r in caplog.records if "cart_not_found" in r.getMessage()]
    assert len(warned) == 1 and "/cart/add-table-line" in warned[0] and "cart_loader" in warned[0]
    assert tracker.named("Cart Updated") == []
    assert app.extensions["cdptrack"].stats()["cart_not_found"] == 3
