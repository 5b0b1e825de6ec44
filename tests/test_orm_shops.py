"""Flask and FastAPI shops written the way public ones are: SQLAlchemy rows with
``Numeric`` prices and relationship lists, a product property that needs Flask's app
context, SQLModel rows with UUID keys and pydantic response models returned by path
operations found by convention only.  The real Tracker sends to the sink; every request
must be spec-valid and carry the price, name and category the page shows."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import attrs
import pytest
from flask import Flask, current_app, render_template_string
from pydantic import BaseModel
from sqlalchemy import Column, ForeignKey, Numeric, String, Table, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship
from sqlalchemy.pool import StaticPool
from sqlmodel import Field, SQLModel
from sqlmodel import Session as ModelSession

from cdptrack.config import Config
from cdptrack.integrations.fastapi import setup
from cdptrack.integrations.flask import CDPTrack
from cdptrack.observe.products import product_line
from cdptrack.sink import Sink
from cdptrack.tracker import Tracker

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi import FastAPI, HTTPException
    from fastapi.testclient import TestClient

SC = "CDA68358-94FB-4D83-9655-3FEB3C4114A3"
KEYS = {"yespo_site_id": "8A412DC", "yespo_api_key": "yespo-SECRET-1",
        "customerio_api_key": "cio-SECRET-2"}


def settle(tracker: Tracker, sink: Sink) -> dict[str, Any]:
    assert tracker.flush(20)
    summary = sink.summary()
    assert all(entry["invalid"] == 0 for entry in summary.values()), summary
    return summary


def bodies(sink: Sink, api: str, event: str) -> list[Any]:
    return [r["body"] for r in sink.requests(api) if r["event"] == event]


# --- Flask + SQLAlchemy -----------------------------------------------------------------


class Base(DeclarativeBase):
    pass


product_categories = Table(
    "product_categories", Base.metadata,
    Column("product_id", ForeignKey("products.id"), primary_key=True),
    Column("category_id", ForeignKey("categories.id"), primary_key=True))


class CategoryRow(Base):
    __tablename__ = "categories"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    slug: Mapped[str] = mapped_column(String(80), unique=True)
    products: Mapped[list[ProductRow]] = relationship(
        secondary=product_categories, back_populates="categories", order_by="ProductRow.id")


class ProductRow(Base):
    __tablename__ = "products"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    net_price: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    stock: Mapped[int] = mapped_column(default=0)
    categories: Mapped[list[CategoryRow]] = relationship(
        secondary=product_categories, back_populates="products")

    @property
    def price(self) -> Decimal:
        """The shown price: net plus the shop's VAT, from the app's configuration."""
        return (self.net_price * current_app.config["VAT_FACTOR"]).quantize(Decimal("0.01"))


@pytest.fixture
def flask_shop() -> Iterator[tuple[Any, Tracker, Sink]]:
    engine = create_engine("sqlite://", poolclass=StaticPool,
                           connect_args={"check_same_thread": False})
    Base.metadata.create_all(engine)
    with Session(engine) as db:
        boots = CategoryRow(name="Boots", slug="boots")
        db.add_all([
            ProductRow(id=1, title="Chelsea Boot", net_price=Decimal("100.00"), stock=3,
                       categories=[boots]),
            ProductRow(id=2, title="Hiking Boot", net_price=Decimal("50.50"), stock=0,
                       categories=[boots])])
        db.commit()
    app = Flask(__name__)
    app.config["VAT_FACTOR"] = Decimal("1.2")

    @app.get("/product/<int:product_id>")
    def product_detail(product_id: int) -> str:
        with Session(engine) as db:
            product = db.get(ProductRow, product_id)
            return render_template_string("<h1>{{ product.title }}</h1>", product=product)

    @app.get("/category/<slug>")
    def category(slug: str) -> str:
        with Session(engine) as db:
            found = db.query(CategoryRow).filter_by(slug=slug).one()
            return render_template_string(
                "{% for p in products %}{{ p.title }}{% endfor %}",
                category=found, products=found.products)

    with Sink() as sink:
        tracker = Tracker(Config(**KEYS, **sink.config_overrides()))
        CDPTrack(app, tracker=tracker)
        client = app.test_client()
        client.set_cookie("sc", SC)
        yield client, tracker, sink
        tracker.shutdown(5)


def open_page(client: Any, url: str) -> None:
    response = client.get(url)
    response.close()
    assert response.status_code == 200


def test_flask_template_objects_are_read_inside_the_app_context(flask_shop: Any) -> None:
    client, tracker, sink = flask_shop
    open_page(client, "/product/1")
    settle(tracker, sink)
    (page,) = bodies(sink, "yespo_tracker", "ProductPage")
    assert page["ProductPage"]["Product"] == {"productKey": "1", "price": "120",
                                              "isInStock": "1"}
    (viewed,) = bodies(sink, "customerio", "Product Viewed")
    props = viewed["properties"]
    assert (props["name"], props["price"], props["category"]) == ("Chelsea Boot", 120, "Boots")


def test_flask_category_of_sqlalchemy_rows_has_plain_lines(flask_shop: Any) -> None:
    client, tracker, sink = flask_shop
    open_page(client, "/category/boots")
    settle(tracker, sink)
    (listed,) = bodies(sink, "customerio", "Product List Viewed")
    props = listed["properties"]
    assert props["category"] == "Boots" and props["category_id"] == "1"
    assert [(p["product_id"], p["name"], p["price"], p["category"], p["in_stock"])
            for p in props["products"]] == [
        ("1", "Chelsea Boot", 120, "Boots", True), ("2", "Hiking Boot", 60.6, "Boots", False)]


# --- FastAPI + SQLModel and pydantic ----------------------------------------------------


class Item(SQLModel, table=True):
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str
    price: Decimal = Field(max_digits=12, decimal_places=2)
    category_name: str
    num_in_stock: int = 0


class ProductOut(BaseModel):
    """A pydantic response model, as FastAPI shops declare them."""

    id: uuid.UUID
    title: str
    unit_price: Decimal
    currency: str
    categories: list[str]
    image_url: str


@pytest.fixture
def fastapi_shop() -> Iterator[tuple[TestClient, Tracker, Sink, dict[str, Item]]]:
    engine = create_engine("sqlite://", poolclass=StaticPool,
                           connect_args={"check_same_thread": False})
    SQLModel.metadata.create_all(engine, tables=[Item.__table__])  # type: ignore[attr-defined]
    items = {"tent": Item(name="Tent", price=Decimal("249.00"), category_name="Camping",
                          num_in_stock=2),
             "lamp": Item(name="Lamp", price=Decimal("19.90"), category_name="Camping")}
    with ModelSession(engine) as db:
        db.add_all(items.values())
        db.commit()
        for item in items.values():
            db.refresh(item)
    app = FastAPI()

    @app.get("/products/{item_id}")
    def read_item(item_id: uuid.UUID) -> Item:
        with ModelSession(engine) as db:
            found = db.get(Item, item_id)
            if found is None:
                raise HTTPException(404)
            return found

    @app.get("/api/v2/products/{item_id}", response_model=ProductOut)
    async def read_product(item_id: uuid.UUID) -> ProductOut:
        item = next(i for i in items.values() if i.id == item_id)
        return ProductOut(id=item.id, title=item.name, unit_price=item.price,
                          currency="EUR", categories=[item.category_name, "Sale"],
                          image_url="https://cdn.example/t.jpg")

    @app.get("/category/{slug}")
    def category(slug: str) -> dict[str, Any]:
        with ModelSession(engine) as db:
            rows = list(db.exec(Item.__table__.select()))  # type: ignore[attr-defined]
        return {"category": {"name": slug.title(), "slug": slug},
                "products": [dict(row._mapping) for row in rows]}

    with Sink() as sink:
        tracker = Tracker(Config(**KEYS, **sink.config_overrides()))
        setup(app, tracker=tracker)
        with TestClient(app, cookies={"sc": SC}) as client:
            yield client, tracker, sink, items
        tracker.shutdown(5)


def test_fastapi_sqlmodel_row_returned_by_a_convention_route(fastapi_shop: Any) -> None:
    client, tracker, sink, items = fastapi_shop
    tent = items["tent"]
    assert client.get(f"/products/{tent.id}").status_code == 200
    settle(tracker, sink)
    (viewed,) = bodies(sink, "customerio", "Product Viewed")
    props = viewed["properties"]
    assert (props["product_id"], props["name"], props["price"], props["category"],
            props["in_stock"]) == (str(tent.id), "Tent", 249, "Camping", True)
    (page,) = bodies(sink, "yespo_tracker", "ProductPage")
    assert page["ProductPage"]["Product"]["price"] == "249"


def test_fastapi_pydantic_response_model_with_uuid_and_lists(fastapi_shop: Any) -> None:
    client, tracker, sink, items = fastapi_shop
    lamp = items["lamp"]
    assert client.get(f"/api/v2/products/{lamp.id}").status_code == 200
    settle(tracker, sink)
    (viewed,) = bodies(sink, "customerio", "Product Viewed")
    props = viewed["properties"]
    assert (props["product_id"], props["name"], props["price"], props["currency"],
            props["category"], props["image_url"]) == (
        str(lamp.id), "Lamp", 19.9, "EUR", "Camping", "https://cdn.example/t.jpg")
    (page,) = bodies(sink, "yespo_tracker", "ProductPage")
    assert page["ProductPage"]["Product"]["price"] == "19.90 EUR"


def test_fastapi_category_returning_rows_as_dicts(fastapi_shop: Any) -> None:
    client, tracker, sink, _items = fastapi_shop
    assert client.get("/category/camping").status_code == 200
    settle(tracker, sink)
    (listed,) = bodies(sink, "customerio", "Product List Viewed")
    lines = listed["properties"]["products"]
    assert sorted((p["name"], p["price"], p["category"]) for p in lines) == [
        ("Lamp", 19.9, "Camping"), ("Tent", 249, "Camping")]


# --- the reader on its own: attrs objects, product_fields ------------------------------


@attrs.define
class Money:
    amount: Decimal
    currency: str


@attrs.define
class Variant:
    code: str
    label: str
    price: Money
    collections: list[str]
    available: bool


def test_attrs_objects_money_objects_and_product_fields() -> None:
    variant = Variant("V-77", "Linen Shirt", Money(Decimal("39.50"), "EUR"),
                      ["Shirts", "Summer"], True)
    line = product_line(variant, fields={"name": "label"})
    assert line == {"product_id": "V-77", "sku": "V-77", "name": "Linen Shirt",
                    "price": 39.5, "currency": "EUR", "category": "Shirts",
                    "in_stock": True, "quantity": 1}
    custom = product_line(variant, fields={"product_id": lambda v: f"sku-{v.code}",
                                           "price": "price.amount"})
    assert custom is not None and custom["product_id"] == "sku-V-77"


def test_a_search_index_id_is_read_as_the_objects_key() -> None:
    hit = {"id": "catalogue.product.12", "pk": "12", "title": "Boot", "price": "19,90 €"}
    assert product_line(hit) == {"product_id": "12", "name": "Boot", "price": 19.9,
                                 "quantity": 1}
