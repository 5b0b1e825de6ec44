"""The Flask storefront: server-rendered pages, a session cart, sign-in and checkout.

Wired with cdptrack in one line (``CDPTrack(app, ...)`` in :func:`create_app`); every
event it produces is inferred from the routes, the session and the template context,
with no tracking code in the views.

URL map (all forms are plain ``application/x-www-form-urlencoded`` POSTs that answer
with a redirect, POST-redirect-GET):

=======================================  ======  ==========================================
path                                     method  what
=======================================  ======  ==========================================
``/``                                    GET     home: the categories
``/category/<slug>``                     GET     category (``shoes``, ``jackets``, ``bags``)
``/product/<product_id>``                GET     product (``101``-``104``, ``201``-``204``,
                                                 ``301``-``304``)
``/search?q=<words>``                    GET     search results
``/cart``                                GET     the cart
``/cart/add``                            POST    form ``product_id``, ``quantity`` (1)
                                                 → 303 ``/cart``
``/cart/remove``                         POST    form ``product_id`` (removes the line)
                                                 → 303 ``/cart``
``/cart/clear``                          POST    empties the cart → 303 ``/cart``
``/wishlist/add/<product_id>``           POST    add to wishlist → 303 the product page
``/login``                               GET     sign-in form
``/login``                               POST    form ``email``, ``name`` (optional)
                                                 → 303 ``/``
``/logout``                              POST    → 303 ``/``
``/checkout``                            GET     checkout form
``/checkout``                            POST    form ``email`` (or the signed-in one)
                                                 → 303 ``/checkout/success/<order_id>``
``/checkout/success/<order_id>``         GET     thank-you page
=======================================  ======  ==========================================

Run it: ``python -m cdptrack.examples.flask_shop --port 5000``.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

from flask import Flask, abort, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from cdptrack.config import Config
from cdptrack.integrations.flask import CDPTrack

from .. import catalogue


def create_app(config: Config | None = None, **cdptrack_options: Any) -> Flask:
    """A new storefront.  ``config`` says where events go (``None``: the ``CDPTRACK_*``
    environment); ``cdptrack_options`` go to :class:`CDPTrack` (``tracker=...`` to use
    your own tracker, ``consent_cookie=...``, ...)."""
    app = Flask(__name__)
    app.config["SECRET_KEY"] = os.environ.get("SHOP_SECRET_KEY", "flask-shop-dev-secret")
    orders: dict[str, dict[str, Any]] = {}

    @app.get("/")
    def home() -> str:
        return render_template("home.html", categories=list(catalogue.CATEGORIES.values()))

    @app.get("/category/<slug>")
    def category(slug: str) -> str:
        found = catalogue.CATEGORIES.get(slug) or abort(404)
        return render_template("category.html", category=found,
                               products=catalogue.in_category(slug))

    @app.get("/product/<product_id>")
    def product_detail(product_id: str) -> str:
        found = catalogue.product(product_id) or abort(404)
        return render_template("product.html", product=found)

    @app.get("/search")
    def search() -> str:
        query = request.args.get("q", "").strip()
        return render_template("search.html", query=query, results=catalogue.search(query))

    @app.get("/cart")
    def cart() -> str:
        lines = session.get("cart", [])
        total = round(sum(line["price"] * line["quantity"] for line in lines), 2)
        return render_template("cart.html", lines=lines, total=total)

    @app.post("/cart/add")
    def cart_add() -> Response:
        found = catalogue.product(request.form.get("product_id", "")) or abort(404)
        quantity = max(1, int(request.form.get("quantity", "1") or 1))
        lines = [dict(line) for line in session.get("cart", [])]
        for line in lines:
            if line["product_id"] == found["product_id"]:
                line["quantity"] += quantity
                break
        else:
            lines.append({"product_id": found["product_id"], "name": found["name"],
                          "price": found["price"], "quantity": quantity})
        session["cart"] = lines
        return redirect(url_for("cart"), 303)

    @app.post("/cart/remove")
    def cart_remove() -> Response:
        pid = request.form.get("product_id", "")
        session["cart"] = [dict(x) for x in session.get("cart", []) if x["product_id"] != pid]
        return redirect(url_for("cart"), 303)

    @app.post("/cart/clear")
    def cart_clear() -> Response:
        session["cart"] = []
        return redirect(url_for("cart"), 303)

    @app.post("/wishlist/add/<product_id>")
    def wishlist_add(product_id: str) -> Response:
        catalogue.product(product_id) or abort(404)
        wishlist = [*session.get("wishlist", []), product_id]
        session["wishlist"] = sorted(set(wishlist))
        return redirect(url_for("product_detail", product_id=product_id), 303)

    @app.route("/login", methods=["GET", "POST"])
    def login() -> str | Response:
        if request.method == "GET":
            return render_template("login.html")
        email = request.form.get("email", "").strip().lower()
        if "@" not in email:
            return render_template("login.html", error="Please enter your email.")
        # No Orangepill identity: cdptrack creates one for the user on first sight.
        session["user"] = {"id": "u-" + email.split("@")[0], "email": email,
                           "name": request.form.get("name") or email.split("@")[0].title()}
        return redirect(url_for("home"), 303)

    @app.post("/logout")
    def logout() -> Response:
        session.pop("user", None)
        return redirect(url_for("home"), 303)

    @app.route("/checkout", methods=["GET", "POST"])
    def checkout() -> str | Response:
        lines = session.get("cart", [])
        user = session.get("user") or {}
        if request.method == "GET":
            return render_template("checkout.html", lines=lines, email=user.get("email", ""))
        email = (request.form.get("email") or user.get("email") or "").strip().lower()
        if not lines or "@" not in email:
            return render_template("checkout.html", lines=lines, email=email,
                                   error="An email and a non-empty cart are needed.")
        order_id = "ORD-" + secrets.token_hex(4).upper()
        total = round(sum(line["price"] * line["quantity"] for line in lines), 2)
        order = {"order_id": order_id, "total": total, "currency": catalogue.CURRENCY,
                 "email": email, "products": [dict(line) for line in lines]}
        orders[order_id] = order
        session["last_order"] = order
        session["email"] = email
        session["cart"] = []
        return redirect(url_for("order_confirmation", order_id=order_id), 303)

    @app.get("/checkout/success/<order_id>")
    def order_confirmation(order_id: str) -> str:
        order = orders.get(order_id) or abort(404)
        return render_template("thank_you.html", order=order)

    CDPTrack(app, config=config, **{"currency": catalogue.CURRENCY,
                                     "catalogue": catalogue.product, **cdptrack_options})
    return app
