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
   events are built, since it is plain data: :func:`returned_cart`);
5. on a cart route's change request, a JSON API's answer that is the one line it
   changed (``POST /cart`` answering the created line, ``PATCH`` the changed one) or a
   ``DELETE`` of a line (``/cart/items/{id}``, answered ``204`` or with a message):
   :func:`line_change` applies it to the cart remembered for the visitor.

Lines keep their own id (``line_id``, the line row's ``id`` when the line names its
product under another name) while they are remembered, so a ``DELETE`` of that id
finds them; :func:`event_lines` drops it before lines go into events.

Objects are read here, on the request path, because ORM rows may not be readable
later or from another thread; what leaves is plain dicts.  A read that fails is
``None`` (no cart seen), never an error in the shop's request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .fields import read_field
from .options import ObserveOptions
from .products import as_list, explicit_product_id, id_text, product_line
from .state import RequestState

Lines = dict[str, dict[str, Any]]
# A change to the cart remembered for a visitor: old lines (None: never seen) → new
# lines (None: no change).
CartChange = Callable[["Lines | None"], "Lines | None"]

MAX_LINES = 500
CART_OBJECT_NAMES = ("cart", "basket")
LINE_ID = "line_id"
_LINE_LISTS = ("lines", "items", "cart_items", "line_items", "products", "entries")
# Where an answer wraps the one line it changed: ``{"item": {...}}``.
_LINE_WRAPPERS = ("line", "item", "cart_item", "line_item", "entry")
_CHANGE_METHODS = frozenset({"POST", "PUT", "PATCH"})


def cart_line(item: Any, line_ids: bool = False) -> dict[str, Any] | None:
    """One cart line as a Segment v2 product dict with ``quantity``: read like any shop
    product (:func:`cdptrack.observe.products.product_line`: the line's ``product``
    relation supplies the product id and what the line does not say; ``Decimal`` money
    becomes a number); ``None`` without a product id.  ``line_ids``: keep the line's
    own ``id`` / ``pk`` (when it is not the product id) as ``line_id``."""
    line = product_line(item, is_line=True)
    if line is not None and line_ids:
        own = id_text(read_field(item, "id")) or id_text(read_field(item, "pk"))
        if own is not None and own != line["product_id"]:
            line[LINE_ID] = own
    return line


def event_lines(lines: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies of remembered lines as events carry them (without ``line_id``)."""
    return [{k: v for k, v in line.items() if k != LINE_ID} for line in lines]


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


def cart_lines(cart: Any, line_ids: bool = False) -> Lines | None:
    """``{product_id: line}`` from a cart object, a mapping with a list of lines
    (``lines``, ``items``, ...) or a list of lines; lines of the same product add up.
    ``None`` when ``cart`` is not cart-shaped (so "no cart" and "an empty cart" stay
    apart).  ``line_ids``: see :func:`cart_line`."""
    if cart is None or isinstance(cart, (str, bytes, bool, int, float)):
        return None
    items = _line_list(cart)
    if items is None or not isinstance(items, (list, tuple)):
        return None
    lines: Lines = {}
    for item in items[:MAX_LINES]:
        line = cart_line(item, line_ids)
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
            return cart_lines(found, True)
    for obj in found_objects or ():
        lines = cart_lines(obj, True)
        if lines is not None:
            return lines
    ctx = state.template_context
    if isinstance(ctx, Mapping):
        for name in CART_OBJECT_NAMES:
            if name in ctx:
                lines = cart_lines(ctx[name], True)
                if lines is not None:
                    return lines
    return None


def returned_cart(state: RequestState) -> Lines | None:
    """On a cart route: the cart the view returned or answered with as JSON (a mapping
    with a list of lines or a ``cart`` inside it, or a list of lines); ``None``
    otherwise."""
    result = state.view_result
    if isinstance(result, Mapping):
        inner = result.get("cart") or result.get("basket")
        if inner is not None:
            result = inner
    return cart_lines(result, True)


def answered_line(answer: Any) -> dict[str, Any] | None:
    """The one cart line a change request answered with (``{"id", "product_id" |
    "book_id" | ..., "quantity"}``, or such a line under ``line`` / ``item`` / ...), as
    a line with its ``line_id``; a line that names no product (``{"id": 7, "quantity":
    3}``) has ``product_id`` ``None``.  ``None`` when the answer is no line."""
    if not isinstance(answer, Mapping):
        return None
    for name in _LINE_WRAPPERS:
        inner = answer.get(name)
        if isinstance(inner, Mapping):
            answer = inner
            break
    nested = answer.get("product")
    if explicit_product_id(answer) is not None or isinstance(nested, Mapping) \
            or id_text(answer.get("sku")) is not None:
        return cart_line(answer, True)
    own = id_text(answer.get("id")) or id_text(answer.get("pk"))
    quantity = answer.get("quantity")
    if own is not None and isinstance(quantity, (int, float)) and not isinstance(
            quantity, bool):
        return {"product_id": None, LINE_ID: own, "quantity": quantity}
    return None


def _matches(line: dict[str, Any], ref: str) -> bool:
    return line.get(LINE_ID) == ref or line.get("product_id") == ref


def line_change(state: RequestState, ref: str | None) -> CartChange | None:
    """How a cart route's change request changed the visitor's cart when its answer is
    not the whole cart (see the module docstring); ``None`` when it says nothing.

    ``ref`` is the line or product the route names (``/cart/items/{id}``).  A ``DELETE``
    removes the lines whose ``line_id`` or product id is ``ref`` (a ``DELETE`` of the
    cart itself, with no parameter, empties it); a ``POST`` / ``PUT`` / ``PATCH``
    answered with one line puts that line in the cart (replacing the product's line,
    keeping what the remembered line knew, such as its price), or changes the
    quantity of the line ``ref`` (or the answer's ``id``) names.  A quantity of 0
    removes the line."""
    method = state.method
    if method == "DELETE":
        if ref is None:
            return None if state.path_params else _empty
        return _remove(ref)
    if method not in _CHANGE_METHODS:
        return None
    line = answered_line(state.view_result)
    if line is None:
        return None
    if line["product_id"] is None:
        target = line.get(LINE_ID) or ref
        return None if target is None else _requantify(target, line["quantity"])
    return _put(line)


def _empty(old: Lines | None) -> Lines | None:
    return {} if old else None


def _remove(ref: str) -> CartChange:
    def change(old: Lines | None) -> Lines | None:
        if not old or not any(_matches(line, ref) for line in old.values()):
            return None
        return {pid: line for pid, line in old.items() if not _matches(line, ref)}
    return change


def _requantify(ref: str, quantity: Any) -> CartChange:
    def change(old: Lines | None) -> Lines | None:
        if not old:
            return None
        new: Lines = {}
        for pid, line in old.items():
            if _matches(line, ref):
                if quantity <= 0:
                    continue
                line = {**line, "quantity": quantity}
            new[pid] = line
        return new if new != old else None
    return change


def _put(line: dict[str, Any]) -> CartChange:
    pid, own = line["product_id"], line.get(LINE_ID)

    def change(old: Lines | None) -> Lines | None:
        new = {p: x for p, x in (old or {}).items()
               if p != pid and (own is None or x.get(LINE_ID) != own)}
        if line.get("quantity", 1) > 0:
            new[pid] = {**(old or {}).get(pid, {}), **line}
        return new if new != (old or {}) or old is None else None
    return change


__all__ = ["CART_OBJECT_NAMES", "LINE_ID", "CartChange", "answered_line", "cart_line",
           "cart_lines", "event_lines", "line_change", "request_cart", "returned_cart"]
