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
import threading
from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

from .carts import cart_lines
from .declare import declaration_of
from .fields import call_method, first_field, read_field
from .options import ObserveOptions, RouteRule
from .products import (
    as_list,
    category_fields,
    explicit_product_id,
    matches_key,
    money_amount,
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
CART_WORDS = frozenset({"cart", "basket", "bag", "addtocart", "removefromcart", "carts",
                        "baskets"})
CHECKOUT_WORDS = frozenset({"checkout"})
ORDER_DONE_WORDS = frozenset(
    {"success", "thank-you", "thankyou", "thanks", "thank_you", "confirmation", "complete",
     "completed", "order-complete", "order-completed", "order-confirmation",
     "order_confirmation", "order-received", "receipt"}
)
# Words of a segment (split on "-" and "_") that say "the order went through".
ORDER_DONE_TOKENS = frozenset(
    {"success", "thankyou", "thanks", "confirmation", "complete", "completed", "received",
     "receipt"})
WISHLIST_WORDS = frozenset({"wishlist", "wishlists", "favorites", "favourites", "wish-list"})
SIGN_IN_WORDS = frozenset({"login", "signin", "sign-in", "sign_in", "log-in", "log_in"})
REGISTER_WORDS = frozenset({"register", "signup", "sign-up", "sign_up", "join"})
REMOVE_TOKENS = frozenset({"remove", "delete", "move", "clear", "unfavorite"})
ORDER_WORDS = frozenset({"order", "orders"})

ENDPOINT_KINDS: dict[str, str] = {
    **dict.fromkeys(
        ("product", "product_detail", "product_page", "show_product", "view_product",
         "get_product", "product_view", "item_detail"), "product"),
    **dict.fromkeys(
        ("category", "category_detail", "category_page", "show_category", "view_category",
         "get_category", "category_view", "collection"), "category"),
    **dict.fromkeys(("search", "search_page", "search_results", "product_search"),
                    "search"),
    **dict.fromkeys(("cart", "view_cart", "show_cart", "cart_page", "get_cart", "basket",
                     "cart_detail", "add_to_cart", "cart_add", "remove_from_cart",
                     "cart_remove", "update_cart", "cart_update"), "cart"),
    **dict.fromkeys(("checkout", "checkout_page"), "checkout"),
    **dict.fromkeys(
        ("order_confirmation", "thank_you", "thankyou", "checkout_success", "order_complete",
         "order_completed", "order_success", "order_received"), "order"),
    **dict.fromkeys(("wishlist_add", "add_to_wishlist", "wishlist_add_product"),
                    "wishlist"),
    **dict.fromkeys(("login", "sign_in", "signin", "log_in"), "sign_in"),
    **dict.fromkeys(("register", "sign_up", "signup"), "register"),
}
# Endpoint names that mean the home page only at the site root ("index" is also the
# name of every app's list view in Django shops).
HOME_ENDPOINTS = frozenset({"home", "index", "homepage", "home_page"})

PAGE_NAMES = {
    "home": "Home", "product": "Product", "category": "Category", "search": "Search",
    "cart": "Cart", "checkout": "Checkout", "order": "Order Confirmation",
    "wishlist": "Wishlist", "sign_in": "Sign In", "register": "Register",
}

_PARAM_RE = re.compile(r"<(?:[^<>:]+:)?([^<>]+)>|\{([^{}:]+)(?::[^{}]*)?\}")
_SEGMENT_PARAMS = re.compile(r"\{([^{}]+)\}")
_TOKEN_SPLIT = re.compile(r"[-_.]")
_LANGUAGE = re.compile(r"^[a-z]{2}(?:[-_][a-z]{2,4})?$")
_API_WORDS = re.compile(r"^(?:api|rest|v\d+(?:\.\d+)?)$")
_LANGUAGE_PARAMS = frozenset({"lang", "language", "locale", "lang_code", "language_code"})
_ID_PARAMS = frozenset({"pk", "id", "uuid", "sku", "number"})
_CACHE_LIMIT = 4096
_convention_cache: dict[tuple[str | None, str | None, str], PageDeclaration | None] = {}


def normalize_template(template: str) -> str:
    """A route template as every framework writes it, in one form: Flask and Django
    converters (``/product/<int:id>``), Starlette's (``/products/{id:int}``) and regular
    expression groups (``^p/(?P<pk>\\d+)/$``) all become ``{name}``:
    ``/product/{id}``, ``/products/{id}``, ``/p/{pk}/``."""
    if "(?P<" in template or template.startswith("^") or template.endswith("$"):
        template = regex_template(template)
    if "<" not in template and ":" not in template:
        return template
    return _PARAM_RE.sub(lambda m: "{" + (m.group(1) or m.group(2)).strip() + "}", template)


def regex_template(route: str) -> str:
    """A ``re_path``-style regular expression read as a route template (see below)."""
    # ``^p/(?P<pk>\d+)-(?P<slug>.*)/$`` → ``p/{pk}-{slug}/``: named groups become
    # parameters, escapes their character, anchors and other group syntax vanish.
    out: list[str] = []
    i, n = 0, len(route)
    while i < n:
        if route.startswith("(?P<", i):
            close = route.find(">", i)
            name = route[i + 4:close]
            depth, j = 1, close + 1
            while j < n and depth:
                if route[j] == "\\":
                    j += 1
                elif route[j] == "(":
                    depth += 1
                elif route[j] == ")":
                    depth -= 1
                j += 1
            out.append("{" + name + "}")
            i = j
            continue
        char = route[i]
        if char == "\\" and i + 1 < n:
            if route[i + 1] not in "AZzb":
                out.append(route[i + 1])
            i += 2
            continue
        if char not in "^$?":
            out.append(char)
        i += 1
    return "".join(out)


def route_shape(template: str) -> str:
    """A template without its parameter names: ``/p/<int:id>`` and ``/p/{sku}`` are both
    ``/p/{}``; how route rules are matched, so a rule written with another framework's
    converters, or another parameter name, still applies."""
    return _SEGMENT_PARAMS.sub("{}", normalize_template(template)).rstrip("/") or "/"


def template_params(template: str) -> list[str]:
    """The parameter names of a route template, in order, in any framework's syntax:
    ``/catalogue/<slug:product_slug>_<int:pk>/`` → ``["product_slug", "pk"]``."""
    return _SEGMENT_PARAMS.findall(normalize_template(template))


# --- which page ---------------------------------------------------------------------


def resolve_page(state: RequestState, options: ObserveOptions) -> PageDeclaration | None:
    """The page kind and key parameter of a request: declaration, rule, convention."""
    found, _source = resolve_page_source(state, options)
    return found


def resolve_page_source(state: RequestState, options: ObserveOptions
                        ) -> tuple[PageDeclaration | None, str]:
    """:func:`resolve_page` and where its answer came from: ``"declaration"``,
    ``"rule"``, ``"convention"`` or ``"none"``."""
    if state.declared is not None:
        return state.declared, "declaration"
    found, source = route_page_source(
        state.route_template, state.endpoint, state.endpoint_name, state.method, options,
        script_root=state.script_root, path=state.path, state=state)
    if source in ("convention", "none") and state.query and state.method == "GET" \
            and options.conventions and _is_listing(found, state):
        by_query = query_convention(query_params(state), options)
        if by_query is not None:
            return by_query, "convention"
    return found, source


# A listing route (the home page, ``/products``, ``/shop``) that filters by a query
# parameter is a category or search page: ``/?category=shoes``, ``/products?q=red``.
LISTING_WORDS = frozenset({"products", "product", "shop", "store", "catalog", "catalogue",
                           "items", "books", "list", "browse", "all"})
CATEGORY_PARAMS = ("category", "category_slug", "category_id", "cat", "collection")
# A route whose last path parameter has one of these names shows a category's products,
# whatever the words before it (``/book/{category}``: Oluwaseun241/BookNexus).
CATEGORY_PATH_PARAMS = frozenset({"category", "category_slug", "category_id"})


def _is_listing(found: PageDeclaration | None, state: RequestState) -> bool:
    if found is not None:
        return found.kind == "home"
    template = state.route_template
    if template is None:
        return False
    segments = _strip_prefixes([s for s in normalize_template(template).strip("/")
                                .split("/") if s])
    return bool(segments) and "{" not in segments[-1] and segments[-1].lower() in LISTING_WORDS


def query_convention(query: Mapping[str, list[str]], options: ObserveOptions
                     ) -> PageDeclaration | None:
    """The page a listing's query string makes it: a search when one of
    ``options.search_params`` has a value, else a category page keyed by the first
    category parameter (``category``, ``category_slug``, ``cat``, ...) with a value."""
    for name in options.search_params:
        if name and any(v.strip() for v in query.get(name, ())):
            return PageDeclaration("search", query_param=name)
    for name in CATEGORY_PARAMS:
        if any(v.strip() for v in query.get(name, ())):
            return PageDeclaration("category", key=name)
    return None


def route_page_source(template: str | None, endpoint: Any, endpoint_name: str | None,
                      method: str, options: ObserveOptions, *, script_root: str = "",
                      path: str | None = None, state: RequestState | None = None
                      ) -> tuple[PageDeclaration | None, str]:
    """The page a route means for a request with ``method``, and where the answer comes
    from (``"declaration"``, ``"rule"``, ``"convention"``, ``"none"``): the decorator's
    mark on ``endpoint`` (a view function or class), then ``options.route_rules``, then
    the conventions on ``template`` (the route as the framework writes it, mounts and
    prefixes included) and ``endpoint_name``.

    The one decision behind both the middleware (at request time, from what the
    framework recorded; ``state`` then lets a rule that never applies be reported) and
    ``cdptrack routes`` (from the app's route table, before any request).  ``path`` is
    the request path, read only when there is neither a template nor an endpoint name
    (a bare WSGI/ASGI app)."""
    decl = declaration_of(endpoint)
    if decl is not None:
        return decl, "declaration"
    rules = options.route_rules
    if rules:
        index = rule_index(rules)
        rule = index.lookup(template, endpoint_name, script_root)
        if rule is None and state is not None:
            index.check_unmatched(state)
        if rule is not None:
            return PageDeclaration(rule.kind, rule.key), "rule"
    if not options.conventions:
        return None, "none"
    if template is not None and script_root and template.startswith(
            script_root.rstrip("/") + "/"):
        template = template[len(script_root.rstrip("/")):]
    if template is None and endpoint_name is None:
        if path is None:
            return None, "none"
        found = path_convention(path[len(script_root):] or "/", method)
        return found, "convention" if found is not None else "none"
    cache_key = (template, endpoint_name, method)
    try:
        found = _convention_cache[cache_key]
    except KeyError:
        found = convention(template, endpoint_name, method)
        if len(_convention_cache) >= _CACHE_LIMIT:
            _convention_cache.clear()
        _convention_cache[cache_key] = found
    return found, "convention" if found is not None else "none"


class RuleIndex:
    """Route rules keyed the way routes are compared: by endpoint name and by
    :func:`route_shape` (with and without the application's root path).  Remembers
    which rules ever matched, and warns once about a rule whose pattern a request's path
    fits although the rule never applied to its route (a key the router writes
    otherwise): the rule is named, and so is the route the framework reported."""

    CHECKED_REQUESTS = 1000

    def __init__(self, rules: Mapping[str, RouteRule]) -> None:
        self.by_shape: dict[str, tuple[str, RouteRule]] = {}
        self.by_name: dict[str, RouteRule] = {}
        self.patterns: list[tuple[str, re.Pattern[str]]] = []
        for key, rule in rules.items():
            if key.startswith("/") or "{" in key or "<" in key or key.startswith("^"):
                shape = route_shape(key if key.startswith(("/", "^")) else "/" + key)
                if not shape.startswith("/"):
                    shape = "/" + shape
                self.by_shape.setdefault(shape, (key, rule))
                self.patterns.append((key, _shape_pattern(shape)))
            else:
                self.by_name[key] = rule
        self.matched: set[str] = set()
        self.warned: set[str] = set()
        self.checked = 0
        self._lock = threading.Lock()

    def find(self, state: RequestState) -> RouteRule | None:
        """The rule for a request's route (see :meth:`lookup`); a miss is checked
        against the request's path (:meth:`check_unmatched`)."""
        rule = self.lookup(state.route_template, state.endpoint_name, state.script_root)
        if rule is None:
            self.check_unmatched(state)
        return rule

    def lookup(self, template: str | None, endpoint_name: str | None,
               script_root: str = "") -> RouteRule | None:
        """The rule for a route template (by shape, with or without ``script_root``)
        or, failing that, its endpoint name (also without a blueprint's prefix)."""
        if template is not None:
            shape = route_shape(template)
            found = self.by_shape.get(shape)
            root = script_root.rstrip("/")
            if found is None and root:
                if shape.startswith(root + "/"):
                    found = self.by_shape.get(shape[len(root):])
                else:
                    found = self.by_shape.get(route_shape(root + template))
            if found is not None:
                self.matched.add(found[0])
                return found[1]
        if endpoint_name is not None:
            rule = self.by_name.get(endpoint_name) or self.by_name.get(
                endpoint_name.rsplit(".", 1)[-1])
            if rule is not None:
                return rule
        return None

    def check_unmatched(self, state: RequestState) -> None:
        """Warn once about a rule whose pattern fits the request's path although no rule
        applied to its route (within the first :attr:`CHECKED_REQUESTS` requests)."""
        if self.patterns and self.checked < self.CHECKED_REQUESTS:
            self._check_unmatched(state)

    def _check_unmatched(self, state: RequestState) -> None:
        with self._lock:
            self.checked += 1
            path = state.path.rstrip("/") or "/"
            root = state.script_root.rstrip("/")
            local = (path[len(root):] or "/") if root and path.startswith(root) else path
            for key, pattern in self.patterns:
                if key in self.matched or key in self.warned:
                    continue
                if pattern.match(path) or pattern.match(local):
                    self.warned.add(key)
                    logger.warning(
                        "cdptrack: route rule %r fits the path %s but never applied: the "
                        "framework reports its route as %r (endpoint %r); write the rule "
                        "with that route or endpoint", key, state.path,
                        state.route_template, state.endpoint_name)


def _shape_pattern(shape: str) -> re.Pattern[str]:
    parts = [re.escape(p) for p in shape.split("{}")]
    return re.compile("^" + "[^/]+".join(parts) + "/?$")


_rule_indexes: dict[int, tuple[Mapping[str, RouteRule], RuleIndex]] = {}


def rule_index(rules: Mapping[str, RouteRule]) -> RuleIndex:
    """The :class:`RuleIndex` of a rules mapping (built once per mapping)."""
    found = _rule_indexes.get(id(rules))
    if found is not None and found[0] is rules:
        return found[1]
    index = RuleIndex(rules)
    if len(_rule_indexes) >= 64:
        _rule_indexes.clear()
    _rule_indexes[id(rules)] = (rules, index)
    return index


def convention(template: str | None, endpoint_name: str | None,
               method: str = "GET") -> PageDeclaration | None:
    """The page a route template or endpoint name suggests by common shop naming, for a
    request with ``method`` (a DELETE never adds, a POST under a wishlist that adds to
    the cart is a cart change)."""
    if template is not None:
        found = _template_convention(normalize_template(template), method)
        if found is not None:
            return found
    if endpoint_name:
        name = endpoint_name.rsplit(".", 1)[-1].lower()
        kind = ENDPOINT_KINDS.get(name)
        if kind is None and name in HOME_ENDPOINTS and template in (None, "", "/"):
            kind = "home"
        if kind is not None:
            return _method_fits(PageDeclaration(kind), method)
    return None


def _method_fits(decl: PageDeclaration, method: str) -> PageDeclaration | None:
    # A GET of /login or /register shows a form; only a submission signs anyone in.
    if decl.kind in ("sign_in", "register") and method == "GET":
        return None
    if method == "DELETE" and decl.kind not in ("cart",):
        return None
    return decl


def _tokens(segment: str) -> list[str]:
    return [t for t in _TOKEN_SPLIT.split(segment) if t]


def _strip_prefixes(segments: list[str]) -> list[str]:
    # /en-gb/..., /{lang}/..., /api/v1/...: where a shop is mounted says nothing about
    # what a page is.
    i = 0
    if segments:
        first = segments[0]
        params = _SEGMENT_PARAMS.fullmatch(first)
        if (params and params.group(1).lower() in _LANGUAGE_PARAMS) or _LANGUAGE.match(
                first.lower()):
            i = 1
    while i < len(segments) and _API_WORDS.match(segments[i].lower()):
        i += 1
    return segments[i:]


def _product_param(params: list[str]) -> str | None:
    for name in params:
        if "product" in name.lower():
            return name
    for name in params:
        low = name.lower()
        if low in _ID_PARAMS or low in ("item_id", "item", "sku"):
            return name
    return None


def _key_param(params: list[str]) -> str | None:
    """The parameter that names the thing: an id-like one (``pk``, ``id``, ``*_id``)
    before a slug, else the last."""
    for name in params:
        low = name.lower()
        if low in _ID_PARAMS or low.endswith(("_id", "_pk", "_uuid")):
            return name
    return params[-1] if params else None


def _template_convention(template: str, method: str) -> PageDeclaration | None:
    segments = _strip_prefixes([s for s in template.strip("/").split("/") if s])
    if not segments:
        return PageDeclaration("home") if method != "DELETE" else None
    params = _SEGMENT_PARAMS.findall("/".join(segments))
    literal = [(i, s.lower()) for i, s in enumerate(segments) if "{" not in s]
    tokens = {t for _, s in literal for t in _tokens(s)} | {s for _, s in literal}
    last_literal = literal[-1][1] if literal else ""
    if method != "DELETE" and (last_literal in ORDER_DONE_WORDS or (
            ORDER_DONE_TOKENS.intersection(_tokens(last_literal))
            and not tokens.intersection(WISHLIST_WORDS))):
        key = next((p for p in params if "order" in p.lower()), None) or _key_param(params)
        return PageDeclaration("order", key)
    for i, word in literal:
        if word in WISHLIST_WORDS or WISHLIST_WORDS.intersection(_tokens(word)):
            return _wishlist_convention(segments[i + 1:], method)
    if CHECKOUT_WORDS.intersection(tokens):
        return PageDeclaration("checkout")
    if method == "POST" and ORDER_WORDS.intersection(tokens) and (
            last_literal in ("create", "new", "place", "checkout")
            or segments[-1].lower() in ORDER_WORDS):
        # an order placed from the cart: POST /orders/create, POST /api/v1/orders/
        return PageDeclaration("checkout")
    if CART_WORDS.intersection(tokens):
        return PageDeclaration("cart", _product_param(params))
    if SEARCH_WORDS.intersection(tokens) and not ORDER_WORDS.intersection(tokens):
        return PageDeclaration("search") if method == "GET" else None
    for i, word in literal:
        if i + 1 >= len(segments):
            continue
        nxt = segments[i + 1]
        if "{" not in nxt:
            continue
        tail = segments[i + 2:]
        if any("{" not in t for t in tail) or len(tail) > 1:
            continue
        here = _SEGMENT_PARAMS.findall(nxt)
        is_product = word in PRODUCT_WORDS or (
            word in CATEGORY_WORDS and any("product" in p.lower() for p in here))
        if is_product or word in CATEGORY_WORDS:
            if method in ("DELETE", "PUT", "PATCH"):
                return None  # a REST update of the catalogue, not a page
            # /product/{id}/{slug}: the first names it; /p/{pk}-{slug}: the id does
            key = here[0] if len(here) == 1 and tail else _key_param(here) or here[-1]
            return PageDeclaration("product" if is_product else "category", key)
    last_params = _SEGMENT_PARAMS.findall(segments[-1])
    category_param = next((p for p in last_params if p.lower() in CATEGORY_PATH_PARAMS),
                          None)
    if category_param is not None and method == "GET":
        return PageDeclaration("category", category_param)  # /book/{category}
    if last_literal in SIGN_IN_WORDS or (last_literal == "token" and method == "POST"):
        return _method_fits(PageDeclaration("sign_in"), method)
    if last_literal in REGISTER_WORDS:
        return _method_fits(PageDeclaration("register"), method)
    return None


def _wishlist_convention(rest: list[str], method: str) -> PageDeclaration | None:
    # Under a wishlist: a DELETE or a remove/delete/move removes (no event); a POST that
    # adds to the cart is a cart change; an "add" (or a POST naming a product) adds.
    if method == "DELETE":
        return None
    words = {t for s in rest if "{" not in s for t in (*_tokens(s.lower()), s.lower())}
    params = _SEGMENT_PARAMS.findall("/".join(rest))
    if CART_WORDS.intersection(words):
        return PageDeclaration("cart", _product_param(params)) if method != "GET" else None
    if REMOVE_TOKENS.intersection(words):
        return None
    product = _product_param(params)
    if "add" in words or (method in ("POST", "PUT") and product is not None):
        return PageDeclaration("wishlist", product or (params[-1] if params else None))
    return None


def path_convention(path: str, method: str) -> PageDeclaration | None:
    """Conventions on a bare request path (no router told us the template): the segment
    after a product or category word is taken as its key."""
    segments = _strip_prefixes([s for s in path.strip("/").split("/") if s])
    if not segments:
        return PageDeclaration("home")
    words = [s.lower() for s in segments]
    if len(words) >= 2 and words[-2] in PRODUCT_WORDS and method == "GET":
        return PageDeclaration("product", "__path__")
    if len(words) >= 2 and words[-2] in CATEGORY_WORDS and method == "GET":
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
    if products is None and isinstance(result, list):  # a JSON API's list of products
        products = product_list(result, fields=fields)
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
# Shop field names for each order property, first found wins (Oscar's ``*_incl_tax``).
ORDER_FIELDS: dict[str, tuple[str, ...]] = {
    "total": ("total", "total_incl_tax", "grand_total", "total_price", "amount_total"),
    "subtotal": ("subtotal", "sub_total", "basket_total_incl_tax", "subtotal_incl_tax"),
    "shipping": ("shipping", "shipping_incl_tax", "shipping_charge", "shipping_total"),
    "tax": ("tax", "total_tax", "tax_total"),
}
# Orders that compute their total in a method (``get_total_cost()``, as the Django shops
# built after "Django by Example" do), called when no total field is found.
ORDER_TOTAL_METHODS = ("get_total_cost", "get_total", "get_total_price", "get_grand_total")
# An order's number (what the customer sees) before its database id.
ORDER_ID_FIELDS = ("order_id", "number", "order_number", "reference")
ORDER_DB_ID_FIELDS = ("id", "pk")
ORDER_LINE_LISTS = ("products", "lines", "items", "order_items", "line_items")
# Where an order without a total keeps what was charged (an order placed from a cart
# that records only its subtotal: thesillypeanut-zz/online-marketplace-api).
ORDER_TOTAL_FALLBACKS = ("subtotal", "sub_total", "amount")
# Words in the field names of an order a checkout answers with, as opposed to another
# object with an ``id`` (an address, a payment method).
_ORDER_HINTS = ("order", "total", "amount", "payment", "cart", "status", "paid", "ship")


def answered_order(answer: Any) -> bool:
    """Whether a checkout's answer is the order it placed: a mapping (or an ``order``
    inside one) with an order id (``order_id``, ``number``, ... or ``id``) and, for a
    bare ``id``, a field that belongs to an order (``cart_id``, ``subtotal``,
    ``payment_*``, ``status``, ...); never a cart line (it names a product)."""
    if not isinstance(answer, Mapping):
        return False
    inner = answer.get("order")
    if isinstance(inner, Mapping):
        answer = inner
    if explicit_product_id(answer) is not None:
        return False
    if any(_text(answer.get(n)) is not None for n in ORDER_ID_FIELDS):
        return True
    if not any(_text(answer.get(n)) is not None for n in ORDER_DB_ID_FIELDS):
        return False
    return any(hint in str(key).lower() for key in answer
               for hint in _ORDER_HINTS)


def _plain_value(value: Any) -> Any:
    return float(value) if isinstance(value, Decimal) else value


def order_identifiers(source: Any) -> tuple[str | None, set[str]]:
    """``(order id to report, every id the order answers to)``: its number
    (``number``/``order_number``/``reference``) before its database id."""
    names = [_text(read_field(source, n)) for n in ORDER_ID_FIELDS + ORDER_DB_ID_FIELDS]
    known = {n for n in names if n is not None}
    return next((n for n in names if n is not None), None), known


def _order_lines(source: Any) -> list[dict[str, Any]] | None:
    """An order's lines (a list, or a Django related manager) as product dicts."""
    for name in ORDER_LINE_LISTS:
        lines = as_list(read_field(source, name))
        if lines is not None:
            found = cart_lines(lines)
            return list(found.values()) if found is not None else None
    return None


def _total_from_method(order: Any) -> Any:
    """The order's total from the first of :data:`ORDER_TOTAL_METHODS` it has that
    answers with a number; ``None`` otherwise (a mapping has no methods)."""
    for name in ORDER_TOTAL_METHODS:
        value = call_method(order, name)
        if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
            return _plain_value(value)
    return None


def plain_order(order: Any) -> dict[str, Any] | None:
    """An order object (an ORM row) read into a plain dict now, while its database
    session is open: the fields :func:`order_details` reads.  ``None`` for data that
    is plain already or not an order."""
    if order is None or isinstance(order, (Mapping, str, bytes, int, float, bool)):
        return None
    sid, _ = order_identifiers(order)
    if sid is None:
        return None
    out: dict[str, Any] = {}
    for name in ORDER_ID_FIELDS + ORDER_DB_ID_FIELDS + ("email", "guest_email",
                                                        "currency", "status", "coupon"):
        value = _text(read_field(order, name))
        if value is not None:
            out[name] = value
    for name in ORDER_KEYS:
        for field_name in ORDER_FIELDS.get(name, (name,)):
            value = read_field(order, field_name)
            if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
                out[name] = _plain_value(value)
                break
    if "total" not in out:
        total = _total_from_method(order)
        if total is not None:
            out["total"] = total
    if "email" not in out:
        email = read_field(read_field(order, "user"), "email")
        if isinstance(email, str) and email:
            out["email"] = email
    lines = _order_lines(order)
    if lines is not None:
        out["products"] = lines
    return out


def order_details(state: RequestState, options: ObserveOptions,
                  key: str | None) -> tuple[dict[str, Any], str | None]:
    """``(properties, email)`` of the completed order; the email, when the order has
    one, fills the visitor block so contact-keyed APIs can take the event.

    The order comes from the view's return value, the template context (``order``), an
    order the adapter found on the request, or the session's last order.  Its id is the
    order number before the database id, also when the route's key is the database id
    (``/thank-you/<pk>``); money in ``Decimal`` becomes numbers."""
    result = state.view_result
    candidates = [
        _nested(result, "order"),
        result if _is_data(result) and (read_field(result, "order_id") is not None
                                        or answered_order(result)) else None,
        _context(state, "order"),
        state.request_order,
        state.session_after.order if state.session_after else None,
        state.session_before.order if state.session_before else None,
    ]
    explicit = state.order_props or {}
    order_id = _text(explicit.get("order_id")) or key
    props: dict[str, Any] = {}
    email: str | None = None
    found_any = False
    fallback_total: Any = None
    for source in candidates:
        # The first order found names it; later ones (the session's last order after
        # a checkout's lean answer) only fill in what it lacks, and only when they are
        # the same order.
        if source is None or not _is_data(source):
            continue
        sid, known = order_identifiers(source)
        if order_id is not None and known and order_id not in known:
            continue
        if found_any and not known:
            continue
        if not found_any:
            order_id = sid if sid is not None and not explicit.get("order_id") else order_id
        for name in ORDER_KEYS:
            value = None
            for field_name in ORDER_FIELDS.get(name, (name,)):
                value = read_field(source, field_name)
                if value is not None:
                    break
            if value is not None and not isinstance(value, (dict, list)):
                props.setdefault(name, _plain_value(value))
        if "total" not in props:
            total = _total_from_method(source)
            if total is not None:
                props["total"] = total
        if fallback_total is None:
            fallback_total = next((money_amount(read_field(source, n))
                                   for n in ORDER_TOTAL_FALLBACKS
                                   if money_amount(read_field(source, n)) is not None), None)
        if "products" not in props:
            lines = _order_lines(source)
            if lines is not None:
                props["products"] = lines
        if email is None:
            found_email = read_field(source, "email") or read_field(source, "guest_email")
            if not isinstance(found_email, str):
                found_email = read_field(read_field(source, "user"), "email")
            email = found_email if isinstance(found_email, str) and found_email else None
        found_any = True
    if "total" not in props and fallback_total is not None:
        props["total"] = fallback_total  # what an order without a total charged
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
    "RuleIndex",
    "answered_order",
    "catalogue_product",
    "category_details",
    "convention",
    "key_value",
    "normalize_template",
    "order_details",
    "path_convention",
    "plain_order",
    "product_details",
    "query_convention",
    "regex_template",
    "resolve_page",
    "resolve_page_source",
    "route_page_source",
    "route_shape",
    "rule_index",
    "search_details",
    "template_params",
]
