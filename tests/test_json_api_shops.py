"""JSON API shops whose cart endpoints answer with the one line they changed, through
real frameworks and databases.

Shaped like two public shops (see tests/shop_data.py): a Flask + SQLAlchemy API with
UUID ids, ``Cart`` / ``CartItem`` / ``Order`` tables and token sign-in
(thesillypeanut-zz/online-marketplace-api), and a FastAPI + SQLModel API with cart rows
naming a ``book_id``, a ``/book/{category}`` listing and a bearer token
(Oluwaseun241/BookNexus).  Neither answers a cart change with the whole cart, neither
order answer has lines, and neither shop's code mentions cdptrack beyond installing it.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from decimal import Decimal
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Header, HTTPException, Request, status
from flask import Flask, Response, jsonify, request, stream_with_context
from observe_support import ListTracker
from sqlalchemy import ForeignKey, String, Uuid, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.pool import StaticPool
from sqlmodel import Field, SQLModel, select
from sqlmodel import Session as ModelSession
from support.servers import wsgiref_server

from cdptrack.events import Event
from cdptrack.integrations.fastapi import setup
from cdptrack.integrations.flask import CDPTrack

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

SC = "CDA68358-94FB-4D83-9655-3FEB3C4114A3"


def plain(lines: list[dict[str, Any]]) -> list[tuple[str, Any, Any]]:
    return sorted((line["product_id"], line["quantity"], line.get("price")) for line in lines)


# --- Flask + SQLAlchemy: UUID ids, line answers, 204 deletes ---------------------------


class Base(DeclarativeBase):
    pass


class Product(Base):
    __tablename__ = "market_product"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    title: Mapped[str] = mapped_column(String(120))
    price: Mapped[float]
    inventory_count: Mapped[int]


class Cart(Base):
    __tablename__ = "market_cart"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    customer: Mapped[str]


class CartItem(Base):
    __tablename__ = "market_cart_item"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    cart_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("market_cart.id"))
    product_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("market_product.id"))
    quantity: Mapped[int]


class Order(Base):
    __tablename__ = "market_order"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    cart_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("market_cart.id"))
    date_ordered: Mapped[datetime]
    subtotal: Mapped[float]


def item_json(item: CartItem) -> dict[str, Any]:
    return {"id": str(item.id), "quantity": item.quantity, "cart_id": str(item.cart_id),
            "product_id": str(item.product_id)}


def marketplace(tracker: ListTracker) -> tuple[Flask, list[str]]:
    """The Flask API; returns it and its product ids (UUIDs as text)."""
    engine = create_engine("sqlite://", poolclass=StaticPool,
                           connect_args={"check_same_thread": False})
    Base.metadata.create_all(engine)
    with Session(engine) as db:
        products = [Product(title="Wolfsbane Potion", price=10.4, inventory_count=3),
                    Product(title="Polyjuice Potion", price=20.0, inventory_count=500)]
        db.add_all(products)
        db.commit()
        ids = [str(p.id) for p in products]
    tokens = {"tok-jane": "jane"}
    app = Flask(__name__)

    def customer() -> str:
        name = tokens.get(request.headers.get("x-access-token", ""))
        if name is None:
            raise PermissionError
        return name

    @app.errorhandler(PermissionError)
    def unauthorized(exc: Exception) -> tuple[str, int]:
        return "Unauthorized: Token is missing!", 401

    @app.get("/api/v1/products/<product_id>")
    def get_product(product_id: str) -> Response:
        with Session(engine) as db:
            found = db.get(Product, uuid.UUID(product_id))
            assert found is not None
            return jsonify({"id": str(found.id), "title": found.title, "price": found.price,
                            "inventory_count": found.inventory_count})

    @app.get("/api/v1/users/login")
    def login() -> Response:
        return jsonify({"token": "tok-jane"})

    @app.post("/api/v1/cart-items/")
    def create_cart_item() -> tuple[Response, int]:
        who = customer()
        with Session(engine) as db:
            cart = db.scalars(select(Cart).where(Cart.customer == who)).first()
            if cart is None:
                cart = Cart(customer=who)
                db.add(cart)
                db.flush()
            cart_id = cart.id
            item = CartItem(cart_id=cart_id, product_id=uuid.UUID(request.json["product_id"]),
                            quantity=request.json["quantity"])
            db.add(item)
            db.commit()
            return jsonify(item_json(item)), 201

    @app.put("/api/v1/cart-items/<cart_item_id>")
    def edit_cart_item(cart_item_id: str) -> Response:
        customer()
        with Session(engine) as db:
            item = db.get(CartItem, uuid.UUID(cart_item_id))
            assert item is not None
            item.quantity = request.json["quantity"]
            db.commit()
            return jsonify(item_json(item))

    @app.delete("/api/v1/cart-items/<cart_item_id>")
    def delete_cart_item(cart_item_id: str) -> tuple[str, int]:
        customer()
        with Session(engine) as db:
            db.delete(db.get(CartItem, uuid.UUID(cart_item_id)))
            db.commit()
        return "", 204

    @app.post("/api/v1/orders/")
    def create_order() -> tuple[Response, int]:
        customer()
        with Session(engine) as db:
            cart_id = uuid.UUID(request.json["cart_id"])
            subtotal = 0.0
            for item in db.scalars(select(CartItem).where(CartItem.cart_id == cart_id)):
                product = db.get(Product, item.product_id)
                assert product is not None
                subtotal += item.quantity * product.price
            order = Order(cart_id=cart_id, subtotal=subtotal,
                          date_ordered=datetime.now(timezone.utc))
            db.add(order)
            db.commit()
            return jsonify({"id": str(order.id), "cart_id": str(order.cart_id),
                            "date_ordered": order.date_ordered.isoformat(),
                            "subtotal": order.subtotal}), 201

    @app.post("/api/v1/cart-items/stream")
    def stream_items() -> Response:
        def chunks() -> Iterator[str]:
            yield '{"items": ['
            yield '{"id": "l-9", "product_id": "P-9", "quantity": 1, "price": 2.5}'
            yield "]}"
        return Response(stream_with_context(chunks()), mimetype="application/json")

    CDPTrack(app, tracker=tracker, currency="USD",
             user_loader=lambda req: {"id": tokens[req.headers["x-access-token"]]}
             if req.headers.get("x-access-token") in tokens else None)
    return app, ids


@contextmanager
def served(app: Any) -> Iterator[str]:
    """``app`` on a real WSGI server (wsgiref) on 127.0.0.1; yields its base URL."""
    with wsgiref_server(app) as port:
        yield f"http://127.0.0.1:{port}"


def flask_journey(base: str, ids: list[str]) -> dict[str, Any]:
    with httpx.Client(base_url=base + "/api/v1", cookies={"sc": SC}) as client:
        for pid in ids:
            client.get(f"/products/{pid}").raise_for_status()
        token = client.get("/users/login").json()["token"]
        h = {"x-access-token": token}
        first = client.post("/cart-items/", json={"product_id": ids[0], "quantity": 1},
                            headers=h)
        second = client.post("/cart-items/", json={"product_id": ids[1], "quantity": 2},
                             headers=h)
        changed = client.put(f"/cart-items/{first.json()['id']}", json={"quantity": 3},
                             headers=h)
        deleted = client.delete(f"/cart-items/{second.json()['id']}", headers=h)
        order = client.post("/orders/", json={"cart_id": first.json()["cart_id"]}, headers=h)
        return {"first": first, "changed": changed, "deleted": deleted, "order": order}


@pytest.fixture
def flask_run() -> Iterator[tuple[ListTracker, list[str], dict[str, Any]]]:
    tracker = ListTracker()
    app, ids = marketplace(tracker)
    with served(app) as base:
        answers = flask_journey(base, ids)
    yield tracker, ids, answers


def test_flask_json_product_answers_fill_product_viewed(
        flask_run: tuple[ListTracker, list[str], dict[str, Any]]) -> None:
    tracker, ids, _ = flask_run
    viewed = [e.properties for e in tracker.named("Product Viewed")]
    assert [(p["product_id"], p["name"], p["price"], p["in_stock"]) for p in viewed] == [
        (ids[0], "Wolfsbane Potion", 10.4, True), (ids[1], "Polyjuice Potion", 20, True)]


def test_flask_cart_line_answers_and_a_204_delete_become_cart_updated(
        flask_run: tuple[ListTracker, list[str], dict[str, Any]]) -> None:
    tracker, ids, answers = flask_run
    assert answers["deleted"].status_code == 204 and answers["deleted"].content == b""
    assert set(answers["first"].json()) == {"id", "quantity", "cart_id", "product_id"}
    carts = tracker.named("Cart Updated")
    # add, add, change quantity 1 → 3, delete the second line, then the order empties it
    assert [(plain(e.properties["added"]), plain(e.properties["removed"])) for e in carts] == [
        ([(ids[0], 1, 10.4)], []),
        ([(ids[1], 2, 20)], []),
        ([(ids[0], 2, 10.4)], []),
        ([], [(ids[1], 2, 20)]),
        ([], []),
    ]
    assert plain(carts[3].properties["products"]) == [(ids[0], 3, 10.4)]
    assert carts[4].properties["products"] == []
    # Prices and names come from the product pages seen; line ids never leave.
    assert carts[0].properties["added"][0]["name"] == "Wolfsbane Potion"
    assert all("line_id" not in line for e in carts for line in e.properties["products"])
    assert {e.visitor.sc for e in carts} == {SC}


def test_flask_order_without_lines_is_completed_from_the_last_cart(
        flask_run: tuple[ListTracker, list[str], dict[str, Any]]) -> None:
    tracker, ids, answers = flask_run
    order = tracker.one("Order Completed")
    assert order.properties["order_id"] == answers["order"].json()["id"]
    assert order.properties["total"] == pytest.approx(31.2)  # the order's subtotal
    assert plain(order.properties["products"]) == [(ids[0], 3, 10.4)]
    assert order.properties["currency"] == "USD"
    assert order.visitor.user_id == "jane"  # user_loader: the token's user


def test_flask_streamed_json_cart_answer_is_read_and_sent_unchanged() -> None:
    tracker = ListTracker()
    app, _ = marketplace(tracker)
    with served(app) as base, httpx.Client(base_url=base, cookies={"sc": SC}) as client, \
            client.stream("POST", "/api/v1/cart-items/stream") as answer:
        body = b"".join(answer.iter_raw())
    assert body == (b'{"items": [{"id": "l-9", "product_id": "P-9", "quantity": 1, '
                    b'"price": 2.5}]}')
    event = tracker.one("Cart Updated")
    assert event.properties["added"] == [{"product_id": "P-9", "quantity": 1, "price": 2.5}]


def test_a_json_answer_on_other_routes_or_too_big_is_not_read() -> None:
    tracker = ListTracker()
    app = Flask(__name__)
    big = {"id": "p-1", "title": "x" * (300 * 1024), "price": 5}

    @app.get("/products/<pid>")
    def product(pid: str) -> Response:
        return jsonify(big)

    @app.get("/reviews/<pid>")
    def reviews(pid: str) -> Response:
        return jsonify({"id": pid, "price": 1})

    CDPTrack(app, tracker=tracker)
    client = app.test_client()
    response = client.get("/products/p-1")
    assert response.get_json() == big
    response.close()
    client.get("/reviews/p-1").close()
    (viewed,) = tracker.named("Product Viewed")
    assert viewed.properties == {"product_id": "p-1"}  # too big: not read, not broken


class MarketUser(Base):
    __tablename__ = "market_user"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    username: Mapped[str] = mapped_column(String(50))
    email: Mapped[str | None] = mapped_column(String(120), default=None)


def test_a_user_loader_returning_a_row_with_a_uuid_key_identifies_the_visitor() -> None:
    """The README's token ``user_loader`` returns the shop's ``User`` row; its primary key
    is a UUID (SQLAlchemy ``Uuid``, sqlalchemy-utils ``UUIDType``): the visitor is known
    by it, not anonymous."""
    engine = create_engine("sqlite://", poolclass=StaticPool,
                           connect_args={"check_same_thread": False})
    Base.metadata.create_all(engine, tables=[MarketUser.__table__])
    with Session(engine) as db:
        jane = MarketUser(username="jane", email="jane@example.com")
        db.add(jane)
        db.commit()
        jane_id = jane.id
    tokens = {"tok-jane": jane_id}
    tracker = ListTracker()
    app = Flask(__name__)

    @app.get("/api/v1/products/<product_id>")
    def get_product(product_id: str) -> Response:
        return jsonify({"id": product_id, "title": "Felix Felicis", "price": 2.3})

    def token_user(req: Any) -> MarketUser | None:
        user_id = tokens.get(req.headers.get("x-access-token", ""))
        if user_id is None:
            return None
        with Session(engine) as db:
            return db.get(MarketUser, user_id)

    CDPTrack(app, tracker=tracker, user_loader=token_user)
    with served(app) as base, httpx.Client(base_url=base, cookies={"sc": SC}) as client:
        client.get("/api/v1/products/p-1").raise_for_status()
        for _ in range(2):
            client.get("/api/v1/products/p-2",
                       headers={"x-access-token": "tok-jane"}).raise_for_status()
    anonymous, known, again = tracker.named("Product Viewed")
    assert anonymous.visitor.user_id is None
    assert known.visitor.user_id == again.visitor.user_id == str(jane_id)
    assert known.visitor.email == "jane@example.com"
    identify = tracker.one("identify")  # once, when the user first appears
    assert identify.visitor.user_id == str(jane_id)


# --- FastAPI + SQLModel: book_id lines, a /book/{category} listing, bearer tokens -----


class Book(SQLModel, table=True):
    __tablename__ = "nexus_book"
    id: str = Field(default_factory=lambda: str(uuid.uuid4()), primary_key=True)
    title: str
    categories: str
    amount: Decimal = Field(decimal_places=2, max_digits=10)


class CartRow(SQLModel, table=True):
    __tablename__ = "nexus_cart"
    id: int | None = Field(default=None, primary_key=True)
    quantity: int
    book_id: str = Field(foreign_key="nexus_book.id")
    user_id: str | None = None


class BookOrder(SQLModel, table=True):
    __tablename__ = "nexus_order"
    id: int | None = Field(default=None, primary_key=True)
    cart_id: int
    payment_card_number: str


def nexus_db(request: Request) -> Iterator[ModelSession]:
    with ModelSession(request.app.state.engine) as db:
        yield db


def nexus_user(authorization: Annotated[str | None, Header()] = None) -> dict[str, str]:
    """The shop's ``get_current_user``: the bearer token's user."""
    if authorization != "Bearer tok-jane":
        raise HTTPException(status.HTTP_401_UNAUTHORIZED)
    return {"id": "jane", "email": "jane@example.com"}


NexusDb = Annotated[ModelSession, Depends(nexus_db)]
NexusUser = Annotated[dict[str, str], Depends(nexus_user)]


def booknexus(tracker: ListTracker) -> tuple[FastAPI, list[str]]:
    engine = create_engine("sqlite://", poolclass=StaticPool,
                           connect_args={"check_same_thread": False})
    SQLModel.metadata.create_all(engine, tables=[Book.__table__, CartRow.__table__,
                                                 BookOrder.__table__])
    with ModelSession(engine) as db:
        books = [Book(title="Dune", categories="fiction", amount=Decimal("19.90")),
                 Book(title="SICP", categories="computing", amount=Decimal("45.00"))]
        db.add_all(books)
        db.commit()
        ids = [b.id for b in books]
    app = FastAPI()
    app.state.engine = engine

    @app.get("/book", response_model=list[Book])
    def every_book(db: NexusDb) -> Any:
        return db.exec(select(Book)).all()

    @app.get("/book/{category}", response_model=list[Book],
             status_code=status.HTTP_202_ACCEPTED)
    def by_category(categories: str, db: NexusDb) -> Any:
        return db.exec(select(Book).where(Book.categories == categories)).all()

    @app.post("/login")
    def login() -> dict[str, str]:
        return {"access_token": "tok-jane", "token_type": "bearer"}

    @app.post("/cart")
    def add_to_cart(body: dict[str, Any], db: NexusDb,
                    user: NexusUser) -> Any:
        row = CartRow(book_id=body["book_id"], quantity=body["quantity"])
        db.add(row)
        db.commit()
        db.refresh(row)
        return row

    @app.delete("/cart/{id}", status_code=status.HTTP_202_ACCEPTED)
    def delete_cart(id: int, db: NexusDb,
                    user: NexusUser) -> dict[str, str]:
        db.delete(db.get(CartRow, id))
        db.commit()
        return {"detail": f"Cart with id {id} is sucessfully deleted"}

    @app.post("/cart/checkout")
    def checkout(body: dict[str, Any], db: NexusDb, user: NexusUser) -> Any:
        order = BookOrder(cart_id=body["cart_id"],
                          payment_card_number=body["payment_card_number"])
        db.add(order)
        db.commit()
        db.refresh(order)
        return order

    setup(app, tracker=tracker, user_dependency=nexus_user)
    return app, ids


def fastapi_journey(tracker: ListTracker) -> tuple[list[str], dict[str, Any]]:
    app, ids = booknexus(tracker)
    client = TestClient(app)
    client.cookies.set("sc", SC)
    assert client.get("/book").status_code == 200  # a listing: no event, prices seen
    assert client.get("/book/fiction", params={"categories": "fiction"}).status_code == 202
    token = client.post("/login").json()["access_token"]
    h = {"Authorization": f"Bearer {token}"}
    first = client.post("/cart", json={"book_id": ids[0], "quantity": 1}, headers=h).json()
    second = client.post("/cart", json={"book_id": ids[1], "quantity": 2}, headers=h).json()
    deleted = client.delete(f"/cart/{second['id']}", headers=h)
    order = client.post("/cart/checkout", json={"cart_id": first["id"],
                                                "payment_card_number": "4111"}, headers=h)
    return ids, {"first": first, "deleted": deleted, "order": order.json()}


def test_fastapi_category_path_parameter_makes_a_category_page() -> None:
    tracker = ListTracker()
    ids, _ = fastapi_journey(tracker)
    listed = tracker.one("Product List Viewed").properties
    assert listed["category"] == "fiction"
    assert [(p["product_id"], p["name"], p["price"]) for p in listed["products"]] == [
        (ids[0], "Dune", 19.9)]


def test_fastapi_cart_rows_naming_a_book_id_become_cart_updated() -> None:
    tracker = ListTracker()
    ids, answers = fastapi_journey(tracker)
    assert answers["deleted"].json() == {
        "detail": f"Cart with id {answers['first']['id'] + 1} is sucessfully deleted"}
    carts = tracker.named("Cart Updated")
    assert [(plain(e.properties["added"]), plain(e.properties["removed"])) for e in carts] == [
        ([(ids[0], 1, 19.9)], []),
        ([(ids[1], 2, 45)], []),  # priced from the GET /book listing's answer
        ([], [(ids[1], 2, 45)]),
        ([], []),  # bought
    ]
    assert carts[0].properties["added"][0]["name"] == "Dune"
    assert carts[1].properties["added"][0]["name"] == "SICP"


def test_fastapi_checkout_answer_with_an_order_id_completes_the_order() -> None:
    tracker = ListTracker()
    ids, answers = fastapi_journey(tracker)
    order: Event = tracker.one("Order Completed")
    assert order.properties["order_id"] == str(answers["order"]["id"])
    assert plain(order.properties["products"]) == [(ids[0], 1, 19.9)]
    assert order.properties["total"] == 19.9  # summed from the cart's priced lines
    assert order.visitor.email == "jane@example.com"  # user_dependency: the token's user
    assert "payment_card_number" not in order.properties
    assert tracker.named("identify")
