"""A JSON shop API that signs in with ``POST /token`` (FastAPI's OAuth2 password flow) and
authenticates later requests with ``Authorization: Bearer ...``: no session at all.

The shop is FastAPI + SQLModel (users, tokens, products and orders in SQLite tables), its
``get_current_user`` a real ``OAuth2PasswordBearer`` dependency.  With zero changes to
its routes, cdptrack must find the signed-in user (``setup(user_dependency=...)``, or the
dependency putting it on ``request.state.user``), identify them once per visitor, and
Orangepill, at the real local sink, must receive the person created for them and then
their person events with that identity id.  The token appears nowhere.

(No ``from __future__ import annotations`` here: the shop's dependencies are local to
``make_shop``, and FastAPI resolves string annotations in the module's globals.)"""


import secrets
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import pytest

pytest.importorskip("python_multipart")

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.security import OAuth2PasswordBearer, OAuth2PasswordRequestForm
from fastapi.testclient import TestClient
from sqlalchemy.pool import StaticPool
from sqlmodel import Field, Session, SQLModel, create_engine, select

from cdptrack import Tracker
from cdptrack.config import Config
from cdptrack.integrations.fastapi import setup
from cdptrack.sink import Sink

PASSWORD = "correct horse battery staple"


class ShopUser(SQLModel, table=True):
    __tablename__ = "bearer_shop_user"  # SQLModel's metadata is shared by every test module
    id: int | None = Field(default=None, primary_key=True)
    email: str
    full_name: str
    password: str


class ApiToken(SQLModel, table=True):
    __tablename__ = "bearer_api_token"  # SQLModel's metadata is shared by every test module
    token: str = Field(primary_key=True)
    user_id: int


class Item(SQLModel, table=True):
    __tablename__ = "bearer_item"  # SQLModel's metadata is shared by every test module
    id: int | None = Field(default=None, primary_key=True)
    name: str
    price: Decimal = Field(max_digits=10, decimal_places=2)


class Purchase(SQLModel, table=True):
    __tablename__ = "bearer_purchase"  # SQLModel's metadata is shared by every test module
    id: int | None = Field(default=None, primary_key=True)
    number: str
    user_id: int
    item_id: int
    quantity: int
    total: Decimal = Field(max_digits=10, decimal_places=2)


def make_shop(tracker: Tracker, via: str) -> FastAPI:
    """The shop.  ``via``: how cdptrack learns the user: ``"dependency"`` (setup's
    ``user_dependency``) or ``"request_state"`` (the dependency sets
    ``request.state.user``)."""
    engine = create_engine("sqlite://", connect_args={"check_same_thread": False},
                           poolclass=StaticPool)
    SQLModel.metadata.create_all(engine)
    with Session(engine) as db:
        db.add(ShopUser(email="jane@example.com", full_name="Jane Smith", password=PASSWORD))
        db.add(Item(name="Leather Boot", price=Decimal("149.00")))
        db.add(Item(name="Wool Scarf", price=Decimal("39.90")))
        db.commit()

    def database() -> Iterator[Session]:
        with Session(engine) as db:
            yield db

    oauth2_scheme = OAuth2PasswordBearer(tokenUrl="token", auto_error=False)
    app = FastAPI()

    def get_current_user(request: Request,
                         token: Annotated[str | None, Depends(oauth2_scheme)],
                         db: Annotated[Session, Depends(database)]) -> ShopUser | None:
        if token is None:
            return None
        found = db.get(ApiToken, token)
        user = db.get(ShopUser, found.user_id) if found else None
        if user is None:
            raise HTTPException(401, "bad token", headers={"WWW-Authenticate": "Bearer"})
        if via == "request_state":
            request.state.user = user
        return user

    CurrentUser = Annotated[ShopUser | None, Depends(get_current_user)]

    @app.post("/token")
    def login(form: Annotated[OAuth2PasswordRequestForm, Depends()],
              db: Annotated[Session, Depends(database)]) -> dict[str, str]:
        user = db.exec(select(ShopUser).where(ShopUser.email == form.username)).first()
        if user is None or not secrets.compare_digest(user.password, form.password):
            raise HTTPException(400, "Incorrect username or password")
        token = secrets.token_urlsafe(24)
        db.add(ApiToken(token=token, user_id=user.id or 0))
        db.commit()
        return {"access_token": token, "token_type": "bearer"}

    @app.get("/products/{product_id}")
    def product(product_id: int, user: CurrentUser,
                db: Annotated[Session, Depends(database)]) -> Item:
        item = db.get(Item, product_id)
        if item is None:
            raise HTTPException(404)
        return item

    @app.post("/orders")
    def place_order(body: dict[str, int], user: CurrentUser,
                    db: Annotated[Session, Depends(database)]) -> dict[str, Any]:
        if user is None:
            raise HTTPException(401)
        item = db.get(Item, body["product_id"])
        assert item is not None
        purchase = Purchase(number=f"1000{secrets.randbelow(90) + 10}", user_id=user.id or 0,
                            item_id=item.id or 0, quantity=body["quantity"],
                            total=item.price * body["quantity"])
        db.add(purchase)
        db.commit()
        return {"id": purchase.id}

    @app.get("/checkout/success/{order_id}")
    def thank_you(order_id: int, user: CurrentUser,
                  db: Annotated[Session, Depends(database)]) -> dict[str, Any]:
        purchase = db.get(Purchase, order_id)
        if purchase is None or user is None or purchase.user_id != user.id:
            raise HTTPException(404)
        item = db.get(Item, purchase.item_id)
        assert item is not None
        return {"order": {"number": purchase.number, "id": purchase.id,
                          "total": purchase.total, "currency": "USD",
                          "lines": [{"product_id": item.id, "name": item.name,
                                     "price": item.price, "quantity": purchase.quantity}]}}

    if via == "dependency":
        setup(app, tracker=tracker, user_dependency=get_current_user)
    else:
        setup(app, tracker=tracker)
    return app


@pytest.fixture
def sink() -> Iterator[Sink]:
    with Sink() as running:
        yield running


def sink_tracker(sink: Sink, seen: list[tuple[str, str]], outbox: str | None = None
                 ) -> Tracker:
    urls = sink.base_urls()
    config = Config(orangepill_api_key="op-key-0123456789", orangepill_url=urls["orangepill"],
                    customerio_api_key="cio-key", customerio_url=urls["customerio"])
    return Tracker(config, outbox=outbox, on_identity=lambda u, i: seen.append((u, i)),
                   handle_signals=False)


def shop_journey(app: FastAPI, tracker: Tracker) -> str:
    """Sign in, browse, order, reload the thank-you page; returns the token used."""
    with TestClient(app) as client:
        client.get("/products/2")  # anonymous first
        answer = client.post("/token", data={"username": "jane@example.com",
                                             "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        token = answer.json()["access_token"]
        bearer = {"Authorization": f"Bearer {token}"}
        assert client.get("/products/1", headers=bearer).status_code == 200
        assert client.get("/products/2", headers=bearer).status_code == 200
        order = client.post("/orders", json={"product_id": 1, "quantity": 2}, headers=bearer)
        assert order.status_code == 200, order.text
        for _ in range(2):
            page = client.get(f"/checkout/success/{order.json()['id']}", headers=bearer)
            assert page.status_code == 200
        assert tracker.flush(20)
    return token


def messages(sink: Sink, api: str) -> list[dict[str, Any]]:
    return [r for r in sink.requests(api)]


@pytest.mark.parametrize("via", ["dependency", "request_state"])
def test_a_bearer_token_sign_in_identifies_once_and_orangepill_gets_the_created_person(
        sink: Sink, via: str) -> None:
    seen: list[tuple[str, str]] = []
    tracker = sink_tracker(sink, seen)
    try:
        token = shop_journey(make_shop(tracker, via), tracker)
    finally:
        tracker.shutdown(5)
    cio = messages(sink, "customerio")
    identifies = [r for r in cio if r["event"] == "identify"]
    # Once when the token's user first appears, once more when POST /orders places the
    # order (a checkout: Yespo asks for the e-mail with every order), never per request.
    assert len(identifies) == 2
    assert {r["body"]["userId"] for r in identifies} == {"1"}
    assert identifies[0]["body"]["traits"]["email"] == "jane@example.com"
    viewed = [r for r in cio if r["event"] == "Product Viewed"]
    # Batches may arrive out of order (the lane sends them concurrently): by timestamp,
    # the view before sign-in is anonymous, the two after it are the user's.
    viewed.sort(key=lambda r: r["body"]["timestamp"])
    assert sorted(str(r["body"].get("userId")) for r in viewed) == ["1", "1", "None"]
    assert viewed[0]["body"].get("userId") is None
    assert [r["event"] for r in cio].count("Order Completed") == 1

    orangepill = messages(sink, "orangepill")
    assert orangepill[0]["event"] == "create person"
    assert orangepill[0]["body"]["person"]["contactInformation"] == {
        "email": [{"address": "jane@example.com"}]}
    identity = orangepill[0]["response"]["id"]
    rest = orangepill[1:]
    assert sorted(r["event"] for r in rest) == [
        "orderCompleted", "person update", "person update", "productViewed",
        "productViewed"]
    assert {r["path"].split("/identities/")[1].split("/")[0] for r in rest} == {identity}
    assert all(r["valid"] for r in orangepill + cio)
    assert seen == [("1", identity)]
    # The bearer token is never sent anywhere nor recorded.
    assert token not in str(sink.requests())


def test_a_restarted_shop_on_the_same_sqlite_outbox_does_not_create_the_person_again(
        sink: Sink, tmp_path: Path) -> None:
    outbox = f"sqlite:///{tmp_path / 'outbox.db'}"
    seen: list[tuple[str, str]] = []
    for _ in range(2):
        tracker = sink_tracker(sink, seen, outbox)
        try:
            shop_journey(make_shop(tracker, "dependency"), tracker)
        finally:
            tracker.shutdown(5)
    creates = [r for r in sink.requests("orangepill") if r["event"] == "create person"]
    assert len(creates) == 1
    identity = creates[0]["response"]["id"]
    events = [r for r in sink.requests("orangepill") if r["event"] != "create person"]
    assert {r["path"].split("/identities/")[1].split("/")[0] for r in events} == {identity}
    assert seen == [("1", identity)]
