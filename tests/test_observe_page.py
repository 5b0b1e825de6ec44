"""Page inference, cart comparison and declarations, as pure functions."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import BaseModel

from cdptrack.observe.declare import track
from cdptrack.observe.options import ObserveOptions, RouteRule
from cdptrack.observe.page import convention, normalize_template, resolve_page
from cdptrack.observe.session import cart_changes, read_cart
from cdptrack.observe.state import PageDeclaration, RequestState, current_state


@pytest.mark.parametrize(("template", "endpoint", "method", "expected"), [
    ("/products/{id}", None, "GET", PageDeclaration("product", "id")),
    ("/product/<int:product_id>", None, "GET", PageDeclaration("product", "product_id")),
    ("/shop/p/{sku:str}", None, "GET", PageDeclaration("product", "sku")),
    ("/category/<slug>", None, "GET", PageDeclaration("category", "slug")),
    ("/api/categories/{slug}", None, "GET", PageDeclaration("category", "slug")),
    ("/search", None, "GET", PageDeclaration("search")),
    ("/cart", None, "GET", PageDeclaration("cart")),
    ("/checkout", None, "POST", PageDeclaration("checkout")),
    ("/checkout/success", None, "GET", PageDeclaration("order")),
    ("/checkout/success/<order_id>", None, "GET", PageDeclaration("order", "order_id")),
    ("/orders/{order_id}/confirmation", None, "GET", PageDeclaration("order", "order_id")),
    ("/wishlist/add/<product_id>", None, "POST", PageDeclaration("wishlist", "product_id")),
    ("/wishlist", None, "GET", None),
    ("/login", None, "POST", PageDeclaration("sign_in")),
    ("/login", None, "GET", None),
    ("/register", None, "POST", PageDeclaration("register")),
    ("/", None, "GET", PageDeclaration("home")),
    ("/products/{id}/reviews", None, "GET", None),
    ("/about", None, "GET", None),
    ("/x/{id}", "shop.product_detail", "GET", PageDeclaration("product")),
    (None, "category", "GET", PageDeclaration("category")),
])
def test_conventions(template: str | None, endpoint: str | None, method: str,
                     expected: PageDeclaration | None) -> None:
    assert convention(template, endpoint, method) == expected


def test_normalize_template() -> None:
    assert normalize_template("/p/<int:id>/<slug>") == "/p/{id}/{slug}"
    assert normalize_template("/p/{id:int}") == "/p/{id}"


def _state(template: str | None = None, endpoint: Any = None, name: str | None = None,
           params: dict[str, Any] | None = None) -> RequestState:
    state = RequestState("GET", "http", "shop.test", "/x", "", "", None, None, None, {}, None)
    state.route_template, state.endpoint, state.endpoint_name = template, endpoint, name
    state.path_params = params
    return state


def test_first_match_wins_declaration_then_rule_then_convention() -> None:
    @track.category_page(key="slug")
    def view() -> None: ...

    rules = ObserveOptions(route_rules={"/products/{id}": "cart", "special": "search"})
    assert resolve_page(_state("/products/{id}", endpoint=view), rules) == PageDeclaration(
        "category", "slug")
    assert resolve_page(_state("/products/{id}"), rules) == PageDeclaration("cart")
    assert resolve_page(_state("/nothing", name="special"), rules) == PageDeclaration("search")
    assert resolve_page(_state("/products/{id}"), ObserveOptions()) == PageDeclaration(
        "product", "id")
    assert resolve_page(_state("/products/{id}"), ObserveOptions(conventions=False)) is None


def test_route_rule_parsing_rejects_unknown_kinds() -> None:
    assert RouteRule.parse("product:sku") == RouteRule("product", "sku")
    assert RouteRule.parse({"kind": "order", "key": "n"}) == RouteRule("order", "n")
    with pytest.raises(ValueError, match="route rule kind"):
        RouteRule.parse("productz")


def test_cart_shapes_and_changes() -> None:
    before = read_cart([{"product_id": "1", "quantity": 2, "price": 3},
                        {"id": 2, "qty": 1, "title": "Two"}])
    after = read_cart({"1": 1, "3": {"name": "Three", "quantity": 4}})
    assert before == {"1": {"product_id": "1", "quantity": 2, "price": 3},
                      "2": {"product_id": "2", "quantity": 1, "name": "Two"}}
    changes = cart_changes(before, after)
    assert changes is not None
    added, removed = changes
    assert added == [{"product_id": "3", "name": "Three", "quantity": 4}]
    assert removed == [{"product_id": "1", "quantity": 1, "price": 3},
                       {"product_id": "2", "quantity": 1, "name": "Two"}]
    assert cart_changes(before, dict(before or {})) is None
    assert cart_changes(None, None) is None
    assert cart_changes(before, {}) == ([], list((before or {}).values()))


@dataclass
class ProductData:
    id: str
    price: float
    stock: int


class ProductModel(BaseModel):
    product_id: str
    name: str
    price: float
    in_stock: bool


def test_decorators_keep_signature_and_record_result_in_sync_and_async_views() -> None:
    @track.product_page(key="product_id")
    def sync_view(product_id: str, extra: int = 1) -> ProductData:
        """doc"""
        return ProductData(product_id, 9.5, 0)

    @track.product_page(key="product_id")
    async def async_view(product_id: str) -> ProductModel:
        return ProductModel(product_id=product_id, name="N", price=2, in_stock=True)

    assert sync_view.__name__ == "sync_view" and sync_view.__doc__ == "doc"
    assert asyncio.iscoroutinefunction(async_view)
    import inspect
    assert list(inspect.signature(sync_view).parameters) == ["product_id", "extra"]

    state = _state()
    token = current_state.set(state)
    try:
        sync_view(product_id="5")
    finally:
        current_state.reset(token)
    assert state.declared == PageDeclaration("product", "product_id")
    assert state.view_kwargs == {"product_id": "5"}
    assert isinstance(state.view_result, ProductData)

    state2 = _state()
    token = current_state.set(state2)
    try:
        asyncio.run(async_view(product_id="6"))
    finally:
        current_state.reset(token)
    assert isinstance(state2.view_result, ProductModel)
    # outside a request the decorator and calls do nothing
    assert sync_view(product_id="7").id == "7"
    track.product(product_id="x")


def test_explicit_calls_store_on_the_current_request() -> None:
    state = _state()
    token = current_state.set(state)
    try:
        track.product(product_id="1", price="19,90", in_stock="yes")
        track.identify(user_id=7, email="j@example.com", plan="gold")
        track.event("Coupon Entered", {"coupon": "X"})
    finally:
        current_state.reset(token)
    assert state.declared == PageDeclaration("product")
    assert state.page_props == {"product_id": "1", "price": "19,90", "in_stock": "yes"}
    assert state.visitor_extra == {"user_id": "7", "email": "j@example.com"}
    assert state.identify_traits == {"plan": "gold"}
    assert state.custom_events == [("Coupon Entered", {"coupon": "X"})]
