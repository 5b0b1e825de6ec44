"""From a finished request to canonical events: a pure decision, no I/O.

Given what the middleware and the view recorded (:class:`RequestState`) this decides
which canonical events the request means, in the order a CDP wants them: ``identify``
first (so the profile exists), then ``page``, then the page's own event (Product Viewed,
Product List Viewed, Products Searched, Order Completed, Product Added to Wishlist),
then Cart Updated and the view's custom events.

Rules: page-like events only for a GET answered 2xx (``page`` only for HTML); actions
(cart changes, sign-in, wishlist, orders) for any 2xx and for 3xx, the answer of a
POST-redirect-GET form.
"""

from __future__ import annotations

import logging
import random
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from ..events import (
    CART_UPDATED,
    ORDER_COMPLETED,
    PAGE_EVENT,
    PRODUCT_ADDED_TO_WISHLIST,
    PRODUCT_LIST_VIEWED,
    PRODUCT_VIEWED,
    PRODUCTS_SEARCHED,
    Event,
    EventError,
    Visitor,
    normalize_properties,
)
from .answer import adopt_answer
from .carts import Lines, event_lines, line_change, returned_cart
from .declare import IGNORE_KEY
from .memory import Memory
from .options import ObserveOptions
from .page import (
    PAGE_NAMES,
    answered_order,
    catalogue_product,
    category_details,
    key_value,
    order_details,
    product_details,
    resolve_page,
    search_details,
)
from .products import MAX_LIST_PRODUCTS, product_list
from .session import cart_changes, resolve_snapshots
from .state import PageDeclaration, RequestState
from .visitor import identity_from_user

logger = logging.getLogger("cdptrack.observe")

_IDENTITY_KEYS = ("user_id", "email", "phone")
# The events that are themselves the view of a page (page_views="generic").
_OWN_PAGE_EVENTS = frozenset({PRODUCT_VIEWED, PRODUCT_LIST_VIEWED, PRODUCTS_SEARCHED,
                              ORDER_COMPLETED})

# Routes already warned about a missing field (one warning per route and field).
_warned: set[tuple[str, str]] = set()
_HOW_TO_PRICE_CART = (
    "keep the price in the cart lines, or register catalogue=lambda product_id: {...}; "
    "the Yespo tracker refuses a StatusCart with an unpriced line, so it is skipped "
    "(counted as missing_field:price)")
_HOW_TO_FIND_CART = (
    "the request changed the cart but no cart source showed cdptrack a cart, so no Cart "
    "Updated is sent (counted as cart_not_found): pass cart_loader=lambda request: "
    "lines, or put the cart on g.cart (Flask), request.state.cart (Starlette/FastAPI) or "
    "request.basket (Django), or keep it in session['cart']")
_HOW_TO_PRICE = (
    "return the product from the view (a dict, dataclass, pydantic or ORM object), put it "
    "in the template context as 'product', call track.product(price=...), or register "
    "catalogue=lambda product_id: {...}; the Yespo tracker refuses products without a "
    "price, so it is skipped (counted as missing_field:price)")
_HOW_TO_ORDER = (
    "give the thank-you view the order (its return value, the template context as "
    "'order', or track.order(order_id, total=..., products=[...])); without a total and "
    "priced lines Yespo refuses it and is skipped (counted as missing_field:%s)")


def fill_from_catalogue(lines: list[Any], options: ObserveOptions,
                        problems: list[str], memory: Memory | None = None) -> None:
    """Complete product ``lines`` (dicts) that lack a price or a name from the shop's
    catalogue loader, then from the products seen on pages (``memory``), in place;
    what a line says already wins."""
    if options.catalogue is None:
        if memory is not None:
            memory.complete_lines(lines)
        return
    for line in lines:
        if isinstance(line, dict) and line.get("product_id") and (
                "price" not in line or "name" not in line):
            for name, value in catalogue_product(
                    options, str(line["product_id"]), problems).items():
                line.setdefault(name, value)
    if memory is not None:
        memory.complete_lines(lines)


def warn_missing(state: RequestState, what: str, field: str, how: str) -> None:
    """Log once per route and field that ``what`` lacks ``field`` and ``how`` to give it."""
    route = state.route_template or state.endpoint_name or state.path
    key = (route, field)
    if key in _warned:
        return
    if len(_warned) < 4096:
        _warned.add(key)
    logger.warning("cdptrack: %s on %s has no %s: %s", what, route, field,
                   how % field if "%s" in how else how)
_TRAIT_KEYS = ("email", "phone", "name", "user_id", "external_customer_id")


_random_bits = random.getrandbits
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def message_id() -> str:
    """A random (version 4) UUID string, made several times faster than ``uuid.uuid4()``:
    a message id must be unique, not secret (visitor ids use ``secrets`` randomness)."""
    h = f"{(_random_bits(128) & _UUID4_CLEAR) | _UUID4_SET:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def kind_event(kind: str | None, method: str, status: int = 200, *,
               declared: bool = False, order_on_request: bool = False) -> str | None:
    """The canonical event a page of ``kind`` stands for, answered with ``status`` to a
    request with ``method`` (``declared``: the view itself said what it is), or
    ``None``: Product Viewed, Product List Viewed and Products Searched for a GET
    answered 2xx; Order Completed for a 2xx, or a 3xx to a form's POST; Product Added to
    Wishlist for a change request (a GET only when the view declares it); Order
    Completed too for a checkout's change request that put the order it placed on the
    request (``order_on_request``: ``g.order``, ``request.state.order``,
    ``request.order``).  Whether it is then sent depends on what the request carries (a
    product id, a query, an order id): see :func:`build_events`."""
    page_ok = status < 300 and method == "GET"
    if kind == "product":
        return PRODUCT_VIEWED if page_ok else None
    if kind == "category":
        return PRODUCT_LIST_VIEWED if page_ok else None
    if kind == "search":
        return PRODUCTS_SEARCHED if page_ok else None
    if kind == "order":
        return ORDER_COMPLETED if status < 300 or method != "GET" else None
    if kind == "checkout" and method != "GET" and order_on_request:
        return ORDER_COMPLETED
    if kind == "wishlist":
        return PRODUCT_ADDED_TO_WISHLIST if method != "GET" or declared else None
    return None


def identifies(kind: str | None, method: str) -> bool:
    """Whether a request to a page of ``kind`` says who the visitor is (sign-in,
    registration, a checkout's submission), so ``identify`` is sent when the session or
    user loader knows them; elsewhere only an identity that appears or changes is."""
    return kind in ("sign_in", "register") or (kind == "checkout" and method != "GET")


class Built:
    """The events of one request and the reasons some were not made (for counters)."""

    __slots__ = ("events", "problems")

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.problems: list[str] = []


def _first_sight(state: RequestState, session_identity: dict[str, Any],
                 user_fields: dict[str, str], memory: Memory) -> bool:
    """Whether a signed-in user that the session does not hold (a bearer-token API: the
    user comes from a ``user_loader``, ``track.user`` or ``request.state.user``) is seen
    for the first time for this visitor, so that ``identify`` is sent once per visitor
    and user, not on every request.  A user the session holds is left to the session
    comparison (sign-in = a new identity in the session).  A client without the visitor
    cookie (an API client that keeps no cookies) counts once per user."""
    who = user_fields.get("user_id") or user_fields.get("email") or user_fields.get("phone")
    held = session_identity.get("user_id")
    if not who or (held and held == user_fields.get("user_id")):
        return False
    visitor = "" if state.sc_new else (state.sc or "")
    return memory.first_sight(f"{visitor}:{who}")


def build_events(state: RequestState, options: ObserveOptions,
                 user: Any = None, carts: Memory | None = None) -> Built:
    """Every canonical event ``state`` stands for (see the module docstring).  Their
    timestamp is ``state.finished`` (when the response was complete), else now.
    ``carts`` remembers each visitor's last cart for shops that keep carts outside the
    session (without it only session carts are compared)."""
    out = Built()
    status = state.status
    if state.skip or not 200 <= status < 400:
        return out
    resolve_snapshots(state.session_before, state.session_after, options)
    if state.response_json is not None:
        adopt_answer(state)  # a JSON API's answer: what its view returned
    page_ok = status < 300 and state.method == "GET"
    decl = resolve_page(state, options)
    if decl is not None and decl.key == IGNORE_KEY:
        return out  # @track.ignore() found on the endpoint or its view class
    kind = decl.kind if decl is not None else None
    key = key_value(state, decl) if decl is not None else None

    identity = dict(state.session_after.identity or {}) if state.session_after else {}
    before = state.session_before.identity if state.session_before else None
    first_sight = False
    if user is not None:
        user_fields = identity_from_user(user)
        first_sight = bool(user_fields) and carts is not None and _first_sight(
            state, identity, user_fields, carts)
        if user_fields:
            # The signed-in user fills the visitor on both sides of the view unless the
            # session's identity itself changed: the loader's fields (an email only the
            # user record has) are no news on every request, only a sign-in is.
            if before is not None and before == identity:
                before = {**user_fields, **before}
            identity = {**user_fields, **identity}
    if state.visitor_extra:
        identity.update(state.visitor_extra)
    identity.pop("sc", None)
    if "external_customer_id" not in identity and "user_id" in identity:
        identity["external_customer_id"] = identity["user_id"]
    visitor = Visitor(sc=state.sc, **identity)
    context = {"ip": state.ip, "user_agent": state.user_agent, "url": state.url}
    if context["ip"] is None:
        del context["ip"]
    now = datetime.fromtimestamp(state.finished, timezone.utc) if state.finished \
        else datetime.now(timezone.utc)

    def add(etype: str, name: str | None, props: dict[str, Any],
            traits: dict[str, Any] | None = None, page_name: str | None = None,
            who: Visitor = visitor, trusted: bool = False) -> None:
        dropped: list[str] = []
        try:
            event = Event(
                type=etype,  # type: ignore[arg-type]
                event=name,
                name=page_name,
                visitor=who,
                properties=props if trusted else normalize_properties(
                    props, dropped=dropped),
                traits=traits or {},
                context=context,
                timestamp=now,
                message_id=message_id(),
                dropped=tuple(dropped),
            )
        except EventError as exc:
            out.problems.append("invalid_event")
            logger.warning("cdptrack: %s not sent: %s", name or etype, exc)
            return
        out.events.append(event)

    # identify: a declared sign-in/registration/checkout, an identity that appeared or
    # changed in the session (sign-in, checkout with an email), or track.identify().
    if identity or state.identify_traits is not None:
        known = [identity[k] for k in _IDENTITY_KEYS if identity.get(k)]
        changed = bool(known) and before is not None and any(
            identity.get(k) and identity.get(k) != before.get(k) for k in _IDENTITY_KEYS)
        declared_identity = bool(known) and identifies(kind, state.method)
        if state.identify_traits is not None or state.visitor_extra or changed \
                or declared_identity or first_sight:
            traits = {k: identity[k] for k in _TRAIT_KEYS if identity.get(k)}
            traits.update(state.identify_traits or {})
            add("identify", None, {}, traits=traits, trusted=True)

    if page_ok and state.html and options.track_pages:
        page_props: dict[str, Any] = {"url": state.url, "path": state.path}
        if state.referer:
            page_props["referrer"] = state.referer
        if state.query:
            page_props["search"] = "?" + state.query
        add("page", None, page_props, page_name=PAGE_NAMES.get(kind or ""), trusted=True)
    page_at = len(out.events) - 1 if options.page_views == "generic" else -1

    if page_ok and carts is not None and isinstance(state.view_result, list):
        # A listing's answer (a JSON API's GET /books): its products' prices and names
        # complete cart lines that name only a product id.
        listed = state.view_result[:MAX_LIST_PRODUCTS]
        if listed and not (isinstance(listed[0], dict) and "product_id" in listed[0]):
            listed = product_list(listed) or []  # raw JSON rows, not yet read
        carts.remember_products(listed)
    placed = state.request_order is not None or (
        kind == "checkout" and answered_order(state.view_result))
    page_event = kind_event(kind, state.method, status, declared=decl is state.declared,
                            order_on_request=placed)
    bought_from_memory = False
    if page_event == PRODUCT_VIEWED:
        props = product_details(state, options, key, out.problems)
        if props.get("product_id") is not None:
            if carts is not None:
                if props.get("price") is None or props.get("name") is None:
                    carts.complete_lines([props])
                carts.remember_products([props])
            if props.get("price") is None:
                warn_missing(state, PRODUCT_VIEWED, "price", _HOW_TO_PRICE)
            add("track", PRODUCT_VIEWED, props)
        else:
            out.problems.append("product_without_id")
    elif page_event == PRODUCT_LIST_VIEWED:
        props = category_details(state, key, options)
        if carts is not None and isinstance(props.get("products"), list):
            carts.remember_products(props["products"])
        add("track", PRODUCT_LIST_VIEWED, props)
    elif page_event == PRODUCTS_SEARCHED:
        props = search_details(state, options, decl)  # type: ignore[arg-type]
        if props.get("query"):
            add("track", PRODUCTS_SEARCHED, props)
    elif page_event == ORDER_COMPLETED:
        props, email = order_details(state, options, key)
        if props.get("order_id") is None:
            out.problems.append("order_without_id")
        else:
            if not props.get("products") and carts is not None and state.sc:
                # An order answered without its lines: the visitor's cart is what
                # was bought.
                remembered = carts.last_cart(state.sc) or (
                    state.session_before.cart if state.session_before else None)
                if remembered:
                    props["products"] = event_lines(remembered.values())
                    bought_from_memory = True
            lines = props.get("products")
            if isinstance(lines, list):  # the order's lines: the catalogue fills a price
                fill_from_catalogue(lines, options, out.problems, carts)
                if props.get("total") is None and props.get("revenue") is None:
                    total = _lines_total(lines)
                    if total is not None:
                        props["total"] = props["revenue"] = total
            if props.get("total") is None and props.get("revenue") is None:
                warn_missing(state, ORDER_COMPLETED, "total", _HOW_TO_ORDER)
            elif not props.get("products"):
                warn_missing(state, ORDER_COMPLETED, "products", _HOW_TO_ORDER)
            who = visitor if visitor.email or not email else replace(visitor, email=email)
            add("track", ORDER_COMPLETED, props, who=who)
    elif page_event == PRODUCT_ADDED_TO_WISHLIST:
        props = product_details(state, options, key, out.problems)
        if props.get("product_id") is not None:
            if props.get("price") is None:
                warn_missing(state, PRODUCT_ADDED_TO_WISHLIST, "price", _HOW_TO_PRICE)
            add("track", PRODUCT_ADDED_TO_WISHLIST, props)
        else:
            out.problems.append("wishlist_without_id")

    if page_at >= 0 and len(out.events) > page_at + 1 \
            and out.events[page_at].type == "page" \
            and out.events[page_at + 1].event in _OWN_PAGE_EVENTS:
        # page_views="generic": the page's own event follows; say which, so APIs that
        # send each message singly can leave the page view out (destinations/base.py).
        page = out.events[page_at]
        out.events[page_at] = replace(page, properties={
            **page.properties, PAGE_EVENT: out.events[page_at + 1].event})

    old_cart, new_cart, cart_id = _cart_before_after(state, decl, kind, carts,
                                                     bought_from_memory)
    if (old_cart is None and new_cart is None and kind == "cart"
            and state.method not in ("GET", "HEAD") and status < 400):
        # A change request to a cart route, and no cart anywhere: a database cart that
        # only its template shows.  Said once per route, counted every time.
        out.problems.append("cart_not_found")
        warn_missing(state, "a cart change", "cart", _HOW_TO_FIND_CART)
    changes = cart_changes(old_cart, new_cart)
    if changes is not None:
        added, removed = event_lines(changes[0]), event_lines(changes[1])
        products = event_lines((new_cart or {}).values())
        if not products and kind in ("checkout", "order"):
            # The cart emptied because it was bought: the order says so, and a
            # "Product Removed" per bought line would tell the CDPs a falsehood.
            removed = []
        fill_from_catalogue([*products, *added, *removed], options, out.problems, carts)
        props = {
            "cart_id": cart_id or state.sc,
            "products": products,
            "added": added,
            "removed": removed,
        }
        currency = options.currency or next(
            (p["currency"] for p in products if isinstance(p.get("currency"), str)), None)
        if currency:
            props["currency"] = currency
        if any(line.get("price") is None for line in (*products, *added, *removed)):
            warn_missing(state, CART_UPDATED, "price", _HOW_TO_PRICE_CART)
        add("track", CART_UPDATED, props)

    for name, props in state.custom_events or ():
        add("track", name, props)
    return out


def _lines_total(lines: list[Any]) -> float | int | None:
    """The sum of price times quantity of ``lines`` when every line has a price."""
    total: float | int = 0
    for line in lines:
        price = line.get("price") if isinstance(line, dict) else None
        quantity = line.get("quantity", 1) if isinstance(line, dict) else None
        if not isinstance(price, (int, float)) or not isinstance(quantity, (int, float)):
            return None
        total += price * quantity
    return round(total, 2) if isinstance(total, float) else total


def _line_ref(state: RequestState, decl: PageDeclaration | None) -> str | None:
    """The line or product a cart route names: its key parameter, else its last path
    parameter (``/cart-items/{cart_item_id}``)."""
    key = key_value(state, decl) if decl is not None and decl.key else None
    if key is None and state.path_params:
        key = _text_id(list(state.path_params.values())[-1])
    return key


def _text_id(value: Any) -> str | None:
    return None if value is None or isinstance(value, bool) else str(value) or None


def _cart_before_after(state: RequestState, decl: PageDeclaration | None,
                       kind: str | None, carts: Memory | None, bought: bool = False
                       ) -> tuple[Lines | None, Lines | None, str | None]:
    """The cart before and after this request, and its id.  A session cart is compared
    within the request; a cart kept elsewhere (:mod:`.carts`) against the last one
    remembered for the visitor, and a cart route's answer that is one changed line (or
    a DELETE of a line) is applied to that remembered cart.  The first sighting of a
    visitor's cart is news only on a change request (a POST/PUT/PATCH/DELETE: the cart
    was empty before, as far as anyone knows); on a GET it is only remembered.
    ``bought``: an order was just completed with the remembered cart's lines, so that
    cart is empty now (unless the request says otherwise)."""
    before, after = state.session_before, state.session_after
    if before is not None and after is not None and (
            before.cart is not None or after.cart is not None):
        return before.cart, after.cart, after.cart_id or before.cart_id
    if carts is None or not state.sc:
        return None, None, None
    cart_id = after.cart_id if after is not None else None
    lines = state.cart_lines
    if lines is None and kind == "cart":
        lines = returned_cart(state)
        if lines is None:
            change = line_change(state, _line_ref(state, decl))
            if change is not None:
                old, new = carts.update_cart(state.sc, change)
                return (old or {}, new, cart_id) if new is not None else (None, None, None)
    if lines is None and bought:
        old, new = carts.update_cart(state.sc, lambda found: {} if found else None)
        return (old, new, cart_id) if new is not None else (None, None, None)
    if lines is None:
        return None, None, None
    old = carts.swap_cart(state.sc, lines)
    if old is None:
        old = lines if state.method == "GET" else {}
    return old, lines, cart_id


__all__ = ["Built", "build_events", "identifies", "kind_event"]
