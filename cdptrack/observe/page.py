"""Page context: what kind of page a request was, its key, and the product details.

First match wins:

1. the view's declaration (a ``cdptrack.track`` decorator or call, or the mark a
   decorator left on the endpoint function);
2. route rules in the options (route template or endpoint name → kind and key);
3. conventions on the route template (``/products/{id}``, ``/category/<slug>``,
   ``/search``, ``/cart``, ``/checkout/success``, ...) and on endpoint names
   (``product_detail``, ``category``, ``search``, ...); when the framework told us no
   route at all (a bare WSGI app), the same words on the request path.

The route is read from what the framework recorded after it ran; routes are never
matched again here.  Details (price, stock, name, category) come, in rising priority,
from a catalogue loader, the template context, the view's return value and the view's
own ``track.*`` calls.  Everything here is a pure function of the request state.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from .declare import declaration_of
from .fields import first_field, read_field
from .options import ObserveOptions, RouteRule
from .products import (
    as_list,
    category_fields,
    matches_key,
    product_line,
    product_list,
    set_in_stock,
)
from .state import PageDeclaration, RequestState

logger = logging.getLogger("cdptrack.observe")

PRODUCT_WORDS = frozenset({"product", "products", "p", "item", "items", "goods", "sku"})
CATEGORY_WORDS = frozenset(
    {"category", "categories", "c", "collection", "collections", "catalog", "catalogue",
     "department", "departments"}
)
SEARCH_WORDS = frozenset({"search", "find"})
CART_WORDS = frozenset({"cart", "basket", "bag"})
CHECKOUT_WORDS = frozenset({"checkout"})
ORDER_DONE_WORDS = frozenset(
    {"success", "thank-you", "thankyou", "thanks", "thank_you", "confirmation", "complete",
     "completed", "order-complete", "order-completed", "order-confirmation",
     "order_confirmation", "order-received", "receipt"}
)
WISHLIST_WORDS = frozenset({"wishlist", "wishlists", "favorites", "favourites", "wish-list"})
SIGN_IN_WORDS = frozenset({"login", "signin", "sign-in", "sign_in", "log-in", "log_in"})
REGISTER_WORDS = frozenset({"register", "signup", "sign-up", "sign_up", "join"})

ENDPOINT_KINDS: dict[str, str] = {
    **dict.fromkeys(
        ("product", "product_detail", "product_page", "show_product", "view_product",
         "get_product", "product_view", "item_detail"), "product"),
    **dict.fromkeys(
        ("category", "category_detail", "category_page", "show_category", "view_category",
         "get_category", "category_view", "collection"), "category"),
    **dict.fromkeys(("search", "search_page", "search_results", "product_search"),
                    "search"),
    **dict.fromkeys(("cart", "view_cart", "show_cart", "cart_page", "get_cart", "basket"),
                    "cart"),
    **dict.fromkeys(("checkout", "checkout_page"), "checkout"),
    **dict.fromkeys(
        ("order_confirmation", "thank_you", "thankyou", "checkout_success", "order_complete",
         "order_completed", "order_success", "order_received"), "order"),
    **dict.fromkeys(("wishlist_add", "add_to_wishlist", "wishlist_add_product"),
                    "wishlist"),
    **dict.fromkeys(("login", "sign_in", "signin", "log_in"), "sign_in"),
    **dict.fromkeys(("register", "sign_up", "signup"), "register"),
    **dict.fromkeys(("home", "index", "homepage", "home_page"), "home"),
}

PAGE_NAMES = {
    "home": "Home", "product": "Product", "category": "Category", "search": "Search",
    "cart": "Cart", "checkout": "Checkout", "order": "Order Confirmation",
    "wishlist": "Wishlist", "sign_in": "Sign In", "register": "Register",
}

_PARAM_RE = re.compile(r"<(?:[^<>:]+:)?([^<>]+)>|\{([^{}:]+)(?::[^{}]*)?\}")
_CACHE_LIMIT = 4096
_convention_cache: dict[tuple[str | None, str | None, bool], PageDeclaration | None] = {}


def normalize_template(template: str) -> str:
    """``/product/<int:id>`` and ``/products/{id:int}`` both become ``/product/{id}``."""
    if "<" not in template and ":" not in template:
        return template
    return _PARAM_RE.sub(lambda m: "{" + (m.group(1) or m.group(2)).strip() + "}", template)


# --- which page ---------------------------------------------------------------------


def resolve_page(state: RequestState, options: ObserveOptions) -> PageDeclaration | None:
    """The page kind and key parameter of a request: declaration, rule, convention."""
    if state.declared is not None:
        return state.declared
    decl = declaration_of(state.endpoint)
    if decl is not None:
        return decl
    rules = options.route_rules
    if rules:
        rule = _rule_for(state, rules)
        if rule is not None:
            return PageDeclaration(rule.kind, rule.key)
    if not options.conventions:
        return None
    cache_key = (state.route_template, state.endpoint_name, state.method == "GET")
    if state.route_template is None and state.endpoint_name is None:
        return path_convention(state.path[len(state.script_root):] or "/", state.method)
    try:
        return _convention_cache[cache_key]
    except KeyError:
        pass
    found = convention(state.route_template, state.endpoint_name, state.method)
    if len(_convention_cache) >= _CACHE_LIMIT:
        _convention_cache.clear()
    _convention_cache[cache_key] = found
    return found


def _rule_for(state: RequestState, rules: Mapping[str, RouteRule]) -> RouteRule | None:
    if state.route_template is not None:
        rule = rules.get(state.route_template) or rules.get(
            normalize_template(state.route_template))
        if rule is not None:
            return rule
    if state.endpoint_name is not None:
        return rules.get(state.endpoint_name) or rules.get(
            state.endpoint_name.rsplit(".", 1)[-1])
    return None


def convention(template: str | None, endpoint_name: str | None,
               method: str = "GET") -> PageDeclaration | None:
    """The page a route template or endpoint name suggests by common shop naming."""
    if template is not None:
        found = _template_convention(normalize_template(template), method)
        if found is not None:
            return found
    if endpoint_name:
        kind = ENDPOINT_KINDS.get(endpoint_name.rsplit(".", 1)[-1].lower())
        if kind is not None:
            return _method_fits(PageDeclaration(kind), method)
    return None


def _method_fits(decl: PageDeclaration, method: str) -> PageDeclaration | None:
    # A GET of /login or /register shows a form; only a submission signs anyone in.
    if decl.kind in ("sign_in", "register") and method == "GET":
        return None
    return decl


def _template_convention(template: str, method: str) -> PageDeclaration | None:
    segments = [s for s in template.strip("/").split("/") if s]
    if not segments:
        return PageDeclaration("home")
    params = [s[1:-1] for s in segments if s.startswith("{") and s.endswith("}")]
    words = [s.lower() for s in segments]
    last_literal = next((w for w in reversed(words) if not w.startswith("{")), "")
    for i, word in enumerate(words):
        if word in WISHLIST_WORDS:
            rest = words[i + 1:]
            if "add" in rest or (method != "GET" and "remove" not in rest
                                 and "delete" not in rest):
                key = params[-1] if params else None
                return PageDeclaration("wishlist", key)
            return None
    if last_literal in ORDER_DONE_WORDS:
        key = next((p for p in params if "order" in p.lower()), params[-1] if params else None)
        return PageDeclaration("order", key)
    for i, word in enumerate(words[:-1]):
        nxt = segments[i + 1]
        if not (nxt.startswith("{") and nxt.endswith("}")):
            continue
        tail = segments[i + 2:]
        if any(not (t.startswith("{") and t.endswith("}")) for t in tail) or len(tail) > 1:
            continue
        if word in PRODUCT_WORDS:
            return PageDeclaration("product", nxt[1:-1])
        if word in CATEGORY_WORDS:
            return PageDeclaration("category", nxt[1:-1])
    if words[-1] in SEARCH_WORDS:
        return PageDeclaration("search")
    if words[-1] in CART_WORDS:
        return PageDeclaration("cart")
    if words[-1] in CHECKOUT_WORDS:
        return PageDeclaration("checkout")
    if words[-1] in SIGN_IN_WORDS:
        return _method_fits(PageDeclaration("sign_in"), method)
    if words[-1] in REGISTER_WORDS:
        return _method_fits(PageDeclaration("register"), method)
    return None


def path_convention(path: str, method: str) -> PageDeclaration | None:
    """Conventions on a bare request path (no router told us the template): the segment
    after a product or category word is taken as its key."""
    segments = [s for s in path.strip("/").split("/") if s]
    if not segments:
        return PageDeclaration("home")
    words = [s.lower() for s in segments]
    if len(words) >= 2 and words[-2] in PRODUCT_WORDS:
        return PageDeclaration("product", "__path__")
    if len(words) >= 2 and words[-2] in CATEGORY_WORDS:
        return PageDeclaration("category", "__path__")
    return _template_convention(path, method)


# --- the key ------------------------------------------------------------------------


def query_params(state: RequestState) -> dict[str, list[str]]:
    return parse_qs(state.query, keep_blank_values=False) if state.query else {}


def key_value(state: RequestState, decl: PageDeclaration) -> str | None:
    """The page's key (product id, category slug, order id) from the view's arguments,
    the path parameters or the query string."""
    key = decl.key
    if key == "__path__":
        return state.path.rstrip("/").rsplit("/", 1)[-1] or None
    params = state.path_params or {}
    if key:
        for source in (state.view_kwargs, params):
            if source and key in source and source[key] is not None:
                return _text(source[key])
        values = query_params(state).get(key)
        return values[0] if values else None
    if decl.kind == "order":
        for name, value in params.items():
            if "order" in name.lower():
                return _text(value)
        query = query_params(state)
        for name in ("order_id", "order"):
            if query.get(name):
                return query[name][0]
        return None
    if params and decl.kind in ("product", "category", "wishlist"):
        return _text(list(params.values())[-1])
    return None


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    text = str(value)
    return text or None


# --- details ------------------------------------------------------------------------


def _is_data(obj: Any) -> bool:
    # A return value worth reading fields from: not text, not a framework Response.
    if obj is None or isinstance(obj, (str, bytes, bytearray, int, float, bool, tuple, list)):
        return False
    return isinstance(obj, Mapping) or not (
        hasattr(obj, "status_code") or (hasattr(obj, "status") and hasattr(obj, "headers")))


def _nested(obj: Any, name: str) -> Any:
    """``obj[name]`` when ``obj`` carries one, else ``obj`` itself when it is data."""
    if not _is_data(obj):
        return None
    inner = read_field(obj, name)
    return inner if inner is not None and _is_data(inner) else None


def _context(state: RequestState, name: str) -> Any:
    ctx = state.template_context
    if isinstance(ctx, Mapping):
        return ctx.get(name)
    return None


def product_details(state: RequestState, options: ObserveOptions,
                    product_id: str | None,
                    problems: list[str] | None = None) -> dict[str, Any]:
    """Product properties, merged from catalogue < template < return value < declaration.

    A template or return-value product is taken when the page's key is one of its ids
    (``pk``, ``id``, ``sku``, ``slug``...; a slug URL shows the product with that slug)
    and then its own ``product_id`` is used.  The catalogue fills what the page did not
    show (price, name); a catalogue that raises costs only those fields (``problems``
    gets ``catalogue_error``).
    """
    merged: dict[str, Any] = {}
    fields = options.product_fields
    result = state.view_result
    from_result = _nested(result, "product")
    if from_result is None and _is_data(result) and first_field(
            result, ("product_id", "id", "pk", "sku")) is not None:
        from_result = result
    for source in (_context(state, "product"), from_result):
        if source is not None and not isinstance(source, (str, int)):
            line = product_line(source, default_id=product_id, fields=fields)
            if line is not None and (product_id is None or line["product_id"] == product_id
                                     or source is from_result
                                     or matches_key(source, product_id)):
                line.pop("quantity", None)
                set_in_stock(source, line)
                merged.update(line)
    if state.page_props:
        merged.update(state.page_props)
    if product_id is not None:
        merged.setdefault("product_id", product_id)
    if options.catalogue is not None and merged.get("product_id") is not None and (
            "price" not in merged or "name" not in merged):
        merged = {**catalogue_product(options, str(merged["product_id"]), problems),
                  **merged}
    if options.currency and "price" in merged:
        merged.setdefault("currency", options.currency)
    return merged


def catalogue_product(options: ObserveOptions, product_id: str,
                      problems: list[str] | None = None) -> dict[str, Any]:
    """What the shop's catalogue loader says about a product (``{}`` if it does not
    know, or raises: then ``catalogue_error`` is added to ``problems`` and logged)."""
    if options.catalogue is None:
        return {}
    try:
        found = options.catalogue(product_id)
    except Exception:
        if problems is not None:
            problems.append("catalogue_error")
        logger.warning("cdptrack: the catalogue loader failed for product %r; the event "
                       "is sent without what it would have added", product_id,
                       exc_info=True)
        return {}
    if found is None:
        return {}
    line = product_line(found, default_id=product_id, fields=options.product_fields)
    if line is None:
        return {}
    line.pop("quantity", None)
    set_in_stock(found, line)
    return line


def category_details(state: RequestState, key: str | None,
                     options: ObserveOptions | None = None) -> dict[str, Any]:
    """Product List Viewed properties: the category (an object, text or list: its
    first item's name) and the listed products (a list, queryset or page)."""
    fields = options.product_fields if options is not None else None
    result = state.view_result
    category = _context(state, "category")
    if category is None:
        category = read_field(result, "category") if _is_data(result) else None
    props: dict[str, Any] = dict(category_fields(category)) if category is not None else {}
    if key is not None:
        props.setdefault("category_id", key)
        props.setdefault("category", key)
    products = product_list(_context(state, "products"), fields=fields)
    if products is None and _is_data(result):
        products = product_list(read_field(result, "products"), fields=fields)
    if products is not None:
        props["products"] = products
    if state.page_props:
        props.update(state.page_props)
    if "category_id" in props:
        props.setdefault("list_id", props["category_id"])
    return props


def search_details(state: RequestState, options: ObserveOptions,
                   decl: PageDeclaration) -> dict[str, Any]:
    props: dict[str, Any] = {}
    names = (decl.query_param,) if decl.query_param else options.search_params
    query = query_params(state)
    for name in names:
        if name and query.get(name):
            props["query"] = query[name][0]
            break
    result = state.view_result
    for source in (_context(state, "results"), _context(state, "products"),
                   read_field(result, "results") if _is_data(result) else None,
                   read_field(result, "products") if _is_data(result) else None,
                   result if isinstance(result, list) else None):
        if isinstance(source, (list, tuple)):
            props["results"] = len(source)
            break
    if "results" not in props and _is_data(result):
        for name in ("total", "count"):
            value = read_field(result, name)
            if isinstance(value, int) and not isinstance(value, bool):
                props["results"] = value
                break
    if state.page_props:
        props.update(state.page_props)
    return props


ORDER_KEYS = ("total", "revenue", "subtotal", "shipping", "tax", "discount", "coupon",
              "currency", "status", "affiliation", "checkout_id")


def order_details(state: RequestState, options: ObserveOptions,
                  key: str | None) -> tuple[dict[str, Any], str | None]:
    """``(properties, email)`` of the completed order; the email, when the order has
    one, fills the visitor block so contact-keyed APIs can take the event."""
    result = state.view_result
    candidates = [
        _nested(result, "order"),
        result if _is_data(result) and read_field(result, "order_id") is not None else None,
        _context(state, "order"),
        state.session_after.order if state.session_after else None,
        state.session_before.order if state.session_before else None,
    ]
    explicit = state.order_props or {}
    order_id = _text(explicit.get("order_id")) or key
    props: dict[str, Any] = {}
    email: str | None = None
    for source in candidates:
        if source is None or not _is_data(source):
            continue
        # An order is known by several ids (a UUID pk and a shop-facing number): the
        # page's key may be any of them.
        ids = [_text(read_field(source, name)) for name in ("order_id", "number", "id")]
        sid = next((i for i in ids if i is not None), None)
        if order_id is not None and sid is not None and order_id not in ids:
            continue
        sid = ids[0] or ids[1] or sid
        order_id = order_id or sid
        for name in ORDER_KEYS:
            value = read_field(source, name)
            if value is not None and not isinstance(value, (dict, list)):
                props[name] = value
        for name in ("products", "lines", "items"):
            lines = as_list(read_field(source, name))
            if lines is not None:
                props["products"] = [p for p in (
                    product_line(x, fields=options.product_fields) for x in lines) if p]
                break
        found_email = read_field(source, "email")
        email = found_email if isinstance(found_email, str) else None
        break
    props.update({k: v for k, v in explicit.items() if k != "email"})
    if isinstance(explicit.get("email"), str):
        email = explicit["email"]
    if order_id is not None:
        props["order_id"] = order_id
    if "total" in props:
        props.setdefault("revenue", props["total"])
    elif "revenue" in props:
        props["total"] = props["revenue"]
    if options.currency:
        props.setdefault("currency", options.currency)
    return props, email


__all__ = [
    "PAGE_NAMES",
    "catalogue_product",
    "category_details",
    "convention",
    "key_value",
    "normalize_template",
    "order_details",
    "path_convention",
    "product_details",
    "resolve_page",
    "search_details",
]
