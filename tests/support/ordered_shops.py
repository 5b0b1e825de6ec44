"""Two database shops for tests that drive real servers back to back, configured from
the environment so a server process (uvicorn, gunicorn) can import them:

* ``fastapi_app``: a FastAPI + SQLModel JSON API with a bearer token
  (``setup(app, user_dependency=...)``), cart rows in the database, ``POST
  /cart/items`` answering the whole cart with ``Decimal`` prices, ``DELETE
  /cart/items/{id}`` answered 204 and ``POST /orders`` answering an order with a UUID
  key, ``Decimal`` totals and a ``datetime``, without its lines;
* ``flask_app``: a Flask + SQLAlchemy form shop whose cart is on ``g.cart`` (ORM rows)
  and whose checkout declares the order with ``track.order(uuid, total=Decimal)``
  (``ORDERED_DECLARE=objects``: and a payment object of the shop's own class).

``ORDERED_DB`` is the SQLite database file (created when missing), ``ORDERED_EVENTS``
the file where each event is appended as one JSON line when it is built (on the sender
thread for a deferred build), ``CDPTRACK_OUTBOX`` the outbox.  Nothing is sent
(a dry run to a local Customer.io).
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from flask import Flask, g, redirect, render_template_string, request
from sqlalchemy import ForeignKey, Numeric, String, Uuid, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship
from sqlmodel import Field, SQLModel
from sqlmodel import Session as ModelSession
from sqlmodel import select as model_select

from cdptrack.config import Config
from cdptrack.delivery.deferred import as_deferred
from cdptrack.events import Event
from cdptrack.integrations.fastapi import setup
from cdptrack.integrations.flask import CDPTrack
from cdptrack.observe.declare import track
from cdptrack.tracker import Tracker

PRODUCTS = {"p-1": ("Tea", Decimal("4.50")), "p-2": ("Mug", Decimal("12.00"))}


class BuiltEventsTracker(Tracker):
    """The real tracker (memory, SQLite or Redis outbox: ``CDPTRACK_OUTBOX``); every event
    is appended to ``ORDERED_EVENTS`` in the order the outbox hands it on: an event given
    to ``capture`` goes through the outbox as a build of its own, so it is written after
    the deferred builds handed over before it."""

    def __init__(self) -> None:
        super().__init__(Config(customerio_api_key="test-key", dry_run=True,
                                outbox=os.environ.get("CDPTRACK_OUTBOX", "memory"),
                                handle_signals=False))
        self._path = os.environ["ORDERED_EVENTS"]
        self._lock = threading.Lock()

    def capture(self, event: Any) -> None:
        self.capture_deferred(lambda: [event])

    def capture_deferred(self, job: Any) -> None:
        deferred = as_deferred(job)

        def build() -> Sequence[Any]:
            events = list(deferred.build())
            self._write(events)
            return events

        super().capture_deferred(build)

    def _write(self, events: Sequence[Any]) -> None:
        text = "".join(json.dumps(e.to_dict() if isinstance(e, Event) else dict(e),
                                  default=str) + "\n" for e in events)
        if not text:
            return
        with self._lock:
            fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, text.encode())
            finally:
                os.close(fd)


def _engine() -> Any:
    return create_engine(f"sqlite:///{os.environ['ORDERED_DB']}",
                         connect_args={"check_same_thread": False, "timeout": 30})


class ApiCartItem(SQLModel, table=True):
    __tablename__ = "api_cart_item"
    id: int | None = Field(default=None, primary_key=True)
    owner: str
    product_id: str
    quantity: int
    unit_price: Decimal = Field(decimal_places=2, max_digits=10)

class ApiOrder(SQLModel, table=True):
    __tablename__ = "api_order"
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    owner: str
    total: Decimal = Field(decimal_places=2, max_digits=10)
    status: str
    created: datetime


class Base(DeclarativeBase):
    pass

class Basket(Base):
    __tablename__ = "shop_basket"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    lines: Mapped[list[BasketLine]] = relationship(order_by="BasketLine.id")

class BasketLine(Base):
    __tablename__ = "shop_basket_line"
    id: Mapped[int] = mapped_column(primary_key=True)
    basket_id: Mapped[str] = mapped_column(ForeignKey("shop_basket.id"))
    product_id: Mapped[str] = mapped_column(String(16))
    quantity: Mapped[int]
    price: Mapped[Decimal] = mapped_column(Numeric(10, 2))

class ShopOrder(Base):
    __tablename__ = "shop_order"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    basket_id: Mapped[str] = mapped_column(String(64))
    total: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    placed: Mapped[datetime]


class Payment:
    """How an order was paid, as a shop's own class (not a dataclass, not a mapping)."""

    def __init__(self, method: str) -> None:
        self.method = method


# --- FastAPI + SQLModel --------------------------------------------------------------


def db(request: Request) -> Iterator[ModelSession]:
    with ModelSession(request.app.state.engine) as session:
        yield session

def current_user(authorization: Annotated[str | None, Header()] = None
                 ) -> dict[str, str]:
    if not authorization or not authorization.startswith("Bearer "):
        raise HTTPException(401)
    name = authorization.removeprefix("Bearer ")
    return {"id": name, "email": f"{name}@example.com"}

Db = Annotated[ModelSession, Depends(db)]
User = Annotated[dict[str, str], Depends(current_user)]


def make_fastapi_app() -> Any:
    engine = _engine()
    SQLModel.metadata.create_all(engine, tables=[ApiCartItem.__table__,  # type: ignore[attr-defined]
                                                 ApiOrder.__table__])  # type: ignore[attr-defined]

    def whole_cart(session: ModelSession, owner: str) -> dict[str, Any]:
        rows = session.exec(model_select(ApiCartItem).where(ApiCartItem.owner == owner)
                            .order_by(ApiCartItem.id)).all()  # type: ignore[arg-type]
        items = [{"id": r.id, "product_id": r.product_id, "quantity": r.quantity,
                  "unit_price": r.unit_price} for r in rows]
        return {"items": items, "total": sum((r.unit_price * r.quantity for r in rows),
                                             Decimal(0))}

    app = FastAPI()
    app.state.engine = engine

    @app.post("/token")
    def token(body: dict[str, str]) -> dict[str, str]:
        return {"access_token": body["username"], "token_type": "bearer"}

    @app.post("/cart/items")
    def add_item(body: dict[str, Any], session: Db, user: User) -> dict[str, Any]:
        _, price = PRODUCTS[body["product_id"]]
        session.add(ApiCartItem(owner=user["id"], product_id=body["product_id"],
                                quantity=body["quantity"], unit_price=price))
        session.commit()
        return whole_cart(session, user["id"])

    @app.get("/cart")
    def show_cart(session: Db, user: User) -> dict[str, Any]:
        return whole_cart(session, user["id"])

    @app.delete("/cart/items/{item_id}", status_code=204)
    def remove_item(item_id: int, session: Db, user: User) -> None:
        row = session.get(ApiCartItem, item_id)
        if row is None or row.owner != user["id"]:
            raise HTTPException(404)
        session.delete(row)
        session.commit()

    @app.post("/orders", status_code=201)
    def place_order(session: Db, user: User) -> dict[str, Any]:
        rows = session.exec(model_select(ApiCartItem).where(ApiCartItem.owner == user["id"])).all()
        order = ApiOrder(owner=user["id"], status="placed",
                         total=sum((r.unit_price * r.quantity for r in rows), Decimal(0)),
                         created=datetime.now(timezone.utc))
        session.add(order)
        for row in rows:
            session.delete(row)
        session.commit()
        session.refresh(order)
        return {"id": order.id, "total": order.total, "status": order.status,
                "created": order.created}

    setup(app, tracker=BuiltEventsTracker(), user_dependency=current_user)
    return app


# --- Flask + SQLAlchemy --------------------------------------------------------------


def make_flask_app() -> Any:
    engine = _engine()
    Base.metadata.create_all(engine)
    app = Flask(__name__)

    @app.before_request
    def open_db() -> None:
        g.db = Session(engine)
        owner = request.cookies.get("sc", "anonymous")
        basket = g.db.get(Basket, owner)
        if basket is None:
            basket = Basket(id=owner)
            g.db.add(basket)
            g.db.commit()
        g.cart = basket

    @app.after_request
    def worker(response: Any) -> Any:
        response.headers["X-Worker"] = str(os.getpid())
        return response

    @app.teardown_request
    def close_db(exc: BaseException | None) -> None:
        db = g.pop("db", None)
        if db is not None:
            db.close()

    @app.post("/cart/add")
    def add() -> Any:
        product_id = request.form["product_id"]
        g.db.add(BasketLine(basket_id=g.cart.id, product_id=product_id,
                            quantity=int(request.form["quantity"]),
                            price=PRODUCTS[product_id][1]))
        g.db.commit()
        return redirect("/cart", 303)

    @app.get("/cart")
    def cart() -> str:
        return render_template_string(
            "<ul>{% for line in cart.lines %}<li>{{ line.product_id }}</li>{% endfor %}</ul>",
            cart=g.cart)

    @app.post("/cart/remove/<int:line_id>")
    def remove(line_id: int) -> Any:
        line = g.db.get(BasketLine, line_id)
        if line is not None:
            g.db.delete(line)
            g.db.commit()
        return redirect("/cart", 303)

    @app.post("/checkout")
    def checkout() -> Any:
        lines = list(g.cart.lines)
        order = ShopOrder(basket_id=g.cart.id, placed=datetime.now(timezone.utc),
                          total=sum((x.price * x.quantity for x in lines), Decimal(0)))
        g.db.add(order)
        for line in lines:
            g.db.delete(line)
        g.db.commit()
        g.db.refresh(g.cart)
        if os.environ.get("ORDERED_DECLARE") == "objects":
            # An object of the shop's own class: not known to be readable later, so
            # this request is built on its own thread (the property is left out).
            track.order(order.id, total=order.total, payment=Payment("card"))
        else:
            track.order(order.id, total=order.total, placed=order.placed)
        return f"<p>Order {order.id} placed</p>"

    @app.get("/cart/lines")
    def line_ids() -> dict[str, Any]:
        ids = g.db.scalars(select(BasketLine.id).where(BasketLine.basket_id == g.cart.id)
                           .order_by(BasketLine.id)).all()
        return {"ids": list(ids)}

    CDPTrack(app, tracker=BuiltEventsTracker(), currency="USD")
    return app


fastapi_app = make_fastapi_app() if os.environ.get("ORDERED_SHOP") == "fastapi" else None
flask_app = make_flask_app() if os.environ.get("ORDERED_SHOP") == "flask" else None
