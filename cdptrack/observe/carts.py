"""Where a shop keeps its cart, read into plain lines while the request is live.

Real shops keep carts in their database: a ``Cart`` row with ``CartLine`` rows, Oscar's
basket on ``request.basket``, a JSON API whose cart endpoints answer with the whole
cart.  :func:`cart_lines` reads any of these shapes into ``{product_id: line}`` (the
shape :func:`cdptrack.observe.session.read_cart` gives for a session cart), so the same
comparison turns a change into Cart Updated.

Sources, first found wins (see :func:`request_cart`):

1. ``cart_loader(request)``, an option: whatever it returns (lines, a cart object);
2. a cart the adapter found on the request (Django ``request.basket`` / ``request.cart``
   once the view evaluated it, Flask ``g.cart`` / ``g.basket``, Starlette
   ``request.state.cart`` / ``basket``);
3. the template context's ``cart`` or ``basket``;
4. on a cart route only, the view's return value or JSON answer (read later, when the
   events are built, since it is plain data: :func:`returned_cart`).

Objects are read here, on the request path, because ORM rows may not be readable
later or from another thread; what leaves is plain dicts.  A read that fails is
``None`` (no cart seen), never an error in the shop's request.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .fields import read_field
from .options import ObserveOptions
from .products import as_list, product_line
from .state import RequestState

Lines = dict[str, dict[str, Any]]

MAX_LINES = 500
MAX_JSON_BYTES = 256 * 1024
CART_OBJECT_NAMES = ("cart", "basket")
_LINE_LISTS = ("lines", "items", "cart_items", "line_items", "products", "entries")


def cart_line(item: Any) -> dict[str, Any] | None:
    """One cart line as a Segment v2 product dict with ``quantity``: read like any shop
    product (:func:`cdptrack.observe.products.product_line`: the line's ``product``
    relation supplies the product id and what the line does not say; ``Decimal`` money
    becomes a number); ``None`` without a product id."""
    return product_line(item)


def _line_list(cart: Any) -> Any:
    if isinstance(cart, (list, tuple)):
        return cart
    if isinstance(cart, Mapping):
        for name in _LINE_LISTS:
            if name in cart:
                return cart[name]
        return None
    all_lines = read_field(cart, "all_lines")  # Oscar's Basket caches its lines here
    if callable(all_lines):
        try:
            return list(all_lines())
        except Exception:
            return None
    for name in _LINE_LISTS:
        value = read_field(cart, name)
        if value is not None:
            return as_list(value, MAX_LINES)  # a Django related manager too
    return None


def cart_lines(cart: Any) -> Lines | None:
    """``{product_id: line}`` from a cart object, a mapping with a list of lines
    (``lines``, ``items``, ...) or a list of lines; lines of the same product add up.
    ``None`` when ``cart`` is not cart-shaped (so "no cart" and "an empty cart" stay
    apart)."""
    if cart is None or isinstance(cart, (str, bytes, bool, int, float)):
        return None
    items = _line_list(cart)
    if items is None or not isinstance(items, (list, tuple)):
        return None
    lines: Lines = {}
    for item in items[:MAX_LINES]:
        line = cart_line(item)
        if line is None:
            continue
        pid = line["product_id"]
        if pid in lines:
            lines[pid]["quantity"] = lines[pid].get("quantity", 1) + line["quantity"]
        else:
            lines[pid] = line
    return lines


def request_cart(state: RequestState, options: ObserveOptions,
                 found_objects: list[Any] | None) -> Lines | None:
    """The cart this request ended with, from the sources 1-3 of the module docstring;
    ``None`` when none of them has one.  Exceptions of ``cart_loader`` propagate (the
    caller counts them)."""
    loader = options.cart_loader
    if loader is not None:
        found = loader(state.request if state.request is not None else state.raw)
        if found is not None:
            return cart_lines(found)
    for obj in found_objects or ():
        lines = cart_lines(obj)
        if lines is not None:
            return lines
    ctx = state.template_context
    if isinstance(ctx, Mapping):
        for name in CART_OBJECT_NAMES:
            if name in ctx:
                lines = cart_lines(ctx[name])
                if lines is not None:
                    return lines
    return None


def returned_cart(state: RequestState) -> Lines | None:
    """On a cart route: the cart the view returned (a mapping with a list of lines or a
    ``cart`` inside it) or the JSON it answered with; ``None`` otherwise."""
    result = state.view_result
    if result is None and state.response_json is not None:
        try:
            result = json.loads(state.response_json)
        except ValueError:
            return None
    if isinstance(result, Mapping):
        inner = result.get("cart") or result.get("basket")
        if inner is not None:
            result = inner
    elif not isinstance(result, (list, tuple)) and result is not None:
        return cart_lines(result)
    return cart_lines(result)


__all__ = ["CART_OBJECT_NAMES", "MAX_JSON_BYTES", "cart_line", "cart_lines",
           "request_cart", "returned_cart"]
