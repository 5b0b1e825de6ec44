"""The FastAPI shop: a JSON API with a session cart (Starlette's ``SessionMiddleware``)
and one router mounted with the prefix ``/api``.

Wired with cdptrack in one call (``setup(app, ...)`` in :func:`create_app`).  Product, category,
search and sign-in views carry ``@track`` declarations to show them off; the rest is inferred from
the routes and the session.  The cart is kept as ``{product_id: quantity}`` in the
session; cdptrack fills in names and prices from the catalogue loader.

URL map (JSON bodies; answers are JSON):

==========================================  ======  =====================================
path                                        method  what
==========================================  ======  =====================================
``/``                                       GET     the categories
``/api/categories/{slug}``                  GET     category with its products
``/api/products/{product_id}``              GET     product
``/api/search?q=<words>``                   GET     search results
``/api/cart``                               GET     the cart
``/api/cart/items``                         POST    ``{"product_id", "quantity": 1}``
``/api/cart/items/{product_id}``            DELETE  remove the line
``/api/cart``                               DELETE  empty the cart
``/api/wishlist/add/{product_id}``          POST    add to wishlist
``/api/login``                              POST    ``{"email", "name"}`` → the user
``/api/logout``                             POST
``/api/checkout``                           POST    ``{"email"}`` (or the signed-in one)
                                                    → ``{"order_id", "confirmation_url"}``
``/api/orders/{order_id}/confirmation``     GET     the thank-you answer
==========================================  ======  =====================================

Run it: ``python -m cdptrack.examples.fastapi_shop --port 8000``.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request
from pydantic import BaseModel
from starlette.middleware.sessions import SessionMiddleware

from cdptrack import track
from cdptrack.config import Config
from cdptrack.integrations.fastapi import setup

from .. import catalogue


class CartItem(BaseModel):
    product_id: str
    quantity: int = 1


class Login(BaseModel):
    email: str
    name: str | None = None


class Checkout(BaseModel):
    email: str | None = None


class Product(BaseModel):
    product_id: str
    name: str
    price: float
    currency: str
    category: str
    brand: str
    in_stock: bool


def _cart(request: Request) -> dict[str, int]:
    cart: dict[str, int] = request.session.get("cart", {})
    return cart


def _cart_view(cart: dict[str, int]) -> dict[str, Any]:
    lines = []
    for pid, quantity in cart.items():
        found = catalogue.product(pid) or {}
        lines.append({"product_id": pid, "quantity": quantity, "name": found.get("name"),
                      "price": found.get("price")})
    total = round(sum((line["price"] or 0) * line["quantity"] for line in lines), 2)
    return {"lines": lines, "total": total, "currency": catalogue.CURRENCY}


def create_app(config: Config | None = None, **cdptrack_options: Any) -> FastAPI:
    """A new shop.  ``config`` says where events go (``None``: the ``CDPTRACK_*``
    environment); ``cdptrack_options`` go to ``setup`` (``tracker=...``, ...)."""
    app = FastAPI(title="cdptrack example shop")
    orders: dict[str, dict[str, Any]] = {}
    api = APIRouter(prefix="/api")

    @app.get("/")
    def home() -> dict[str, Any]:
        return {"categories": list(catalogue.CATEGORIES.values())}

    @api.get("/categories/{slug}")
    @track.category_page(key="slug")
    def category(slug: str) -> dict[str, Any]:
        found = catalogue.CATEGORIES.get(slug)
        if found is None:
            raise HTTPException(404, "no such category")
        return {"category": found, "products": catalogue.in_category(slug)}

    @api.get("/products/{product_id}")
    @track.product_page(key="product_id")
    async def product_detail(product_id: str) -> Product:
        found = catalogue.product(product_id)
        if found is None:
            raise HTTPException(404, "no such product")
        return Product(**found)

    @api.get("/search")
    @track.search_page(query_param="q")
    def search(q: str = "") -> dict[str, Any]:
        results = catalogue.search(q)
        return {"query": q, "results": results}

    @api.get("/cart")
    def cart(request: Request) -> dict[str, Any]:
        return _cart_view(_cart(request))

    @api.post("/cart/items")
    def cart_add(item: CartItem, request: Request) -> dict[str, Any]:
        if catalogue.product(item.product_id) is None:
            raise HTTPException(404, "no such product")
        cart = dict(_cart(request))
        cart[item.product_id] = cart.get(item.product_id, 0) + max(1, item.quantity)
        request.session["cart"] = cart
        return _cart_view(cart)

    @api.delete("/cart/items/{product_id}")
    def cart_remove(product_id: str, request: Request) -> dict[str, Any]:
        cart = {k: v for k, v in _cart(request).items() if k != product_id}
        request.session["cart"] = cart
        return _cart_view(cart)

    @api.delete("/cart")
    def cart_clear(request: Request) -> dict[str, Any]:
        request.session["cart"] = {}
        return _cart_view({})

    @api.post("/wishlist/add/{product_id}")
    def wishlist_add(product_id: str, request: Request) -> dict[str, Any]:
        if catalogue.product(product_id) is None:
            raise HTTPException(404, "no such product")
        wishlist = sorted({*request.session.get("wishlist", []), product_id})
        request.session["wishlist"] = wishlist
        return {"wishlist": wishlist}

    @api.post("/login")
    @track.sign_in()
    def login(body: Login, request: Request) -> dict[str, Any]:
        email = body.email.strip().lower()
        if "@" not in email:
            raise HTTPException(422, "an email is needed")
        # No Orangepill identity: cdptrack creates one for the user on first sight.
        user = {"id": "u-" + email.split("@")[0], "email": email,
                "name": body.name or email.split("@")[0].title()}
        request.session["user"] = user
        return {"user": user}

    @api.post("/logout")
    def logout(request: Request) -> dict[str, bool]:
        request.session.pop("user", None)
        return {"ok": True}

    @api.post("/checkout")
    def checkout(body: Checkout, request: Request) -> dict[str, Any]:
        cart = _cart(request)
        user = request.session.get("user") or {}
        email = (body.email or user.get("email") or "").strip().lower()
        if not cart or "@" not in email:
            raise HTTPException(422, "an email and a non-empty cart are needed")
        view = _cart_view(cart)
        order_id = "ORD-" + secrets.token_hex(4).upper()
        order = {"order_id": order_id, "total": view["total"], "currency": catalogue.CURRENCY,
                 "email": email, "products": view["lines"]}
        orders[order_id] = order
        request.session["last_order"] = order
        request.session["email"] = email
        request.session["cart"] = {}
        return {"order_id": order_id,
                "confirmation_url": f"/api/orders/{order_id}/confirmation"}

    @api.get("/orders/{order_id}/confirmation")
    def order_confirmation(order_id: str) -> dict[str, Any]:
        order = orders.get(order_id)
        if order is None:
            raise HTTPException(404, "no such order")
        return {"order": order}

    app.include_router(api)
    app.add_middleware(SessionMiddleware,
                       secret_key=os.environ.get("SHOP_SECRET_KEY", "fastapi-shop-dev-secret"))
    setup(app, config, **{"currency": catalogue.CURRENCY, "catalogue": catalogue.product,
                          **cdptrack_options})
    return app
