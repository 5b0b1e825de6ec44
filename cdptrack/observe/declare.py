"""What a view says about itself: ``cdptrack.track``.

Declarations are the first and surest source of page context.  Decorators mark a view
(``@track.product_page(key="product_id")``); calls inside a view add what only the view
knows (``track.product(product_id=..., price=...)``, ``track.order(...)``).  Both store
into the current request's :class:`~cdptrack.observe.state.RequestState`, found through a
context variable the middleware sets, so they work under any middleware stack, in sync
and async views, in FastAPI path operations with ``Depends``, and are no-ops (counted)
outside a tracked request.

A decorator also marks the function itself (``__cdptrack__``), so the declaration is
found from the route's endpoint even when the decorator sits above ``@app.route``.  On a
class-based view (a Django ``View``, a Flask ``MethodView``, a Starlette ``HTTPEndpoint``)
it only marks the class and returns it unchanged, so ``as_view()`` and the framework's
dispatch keep working; the adapters find the mark from the matched route (the class
itself, or the ``view_class`` of the function ``as_view()`` made).  Subclasses inherit
the mark, as they inherit everything else.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from .state import PageDeclaration, RequestState, current_state

F = TypeVar("F", bound=Callable[..., Any])
ATTRIBUTE = "__cdptrack__"
IGNORE_KEY = "__ignore__"  # the key of ``track.ignore()``'s declaration

logger = logging.getLogger("cdptrack.observe")
_finders: list[Callable[[], RequestState | None]] = []
outside_request_calls = 0


def register_state_finder(finder: Callable[[], RequestState | None]) -> None:
    """Let an adapter find the request state another way (Flask's request context, for
    code that runs outside the context the middleware set, such as a streamed body)."""
    if finder not in _finders:
        _finders.append(finder)


def current() -> RequestState | None:
    """The state of the request being handled, or ``None`` outside a tracked request."""
    state = current_state.get()
    if state is not None:
        return state
    for finder in _finders:
        try:
            state = finder()
        except Exception:
            state = None
        if state is not None:
            return state
    return None


def _state_or_count() -> RequestState | None:
    global outside_request_calls
    state = current()
    if state is not None and state.finished:
        state = None  # after the response (a background task): the events are built
    if state is None:
        outside_request_calls += 1
        logger.debug("cdptrack.track called outside a tracked request; ignored")
    return state


def _clean(props: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in props.items() if v is not None}


class Track:
    """The ``cdptrack.track`` namespace: decorators for views and calls inside them."""

    # -- decorators -------------------------------------------------------------------

    def page(self, kind: str, key: str | None = None,
             query_param: str | None = None) -> Callable[[F], F]:
        """Declare any page kind (``home``, ``product``, ``category``, ``search``,
        ``cart``, ``checkout``, ``order``, ``wishlist``, ``sign_in``, ``register``)."""
        return _decorator(PageDeclaration(kind, key, query_param))

    def home_page(self) -> Callable[[F], F]:
        return _decorator(PageDeclaration("home"))

    def product_page(self, key: str = "product_id") -> Callable[[F], F]:
        """A product detail page; ``key`` names the path (or query) parameter with the id."""
        return _decorator(PageDeclaration("product", key))

    def category_page(self, key: str = "slug") -> Callable[[F], F]:
        return _decorator(PageDeclaration("category", key))

    def search_page(self, query_param: str = "q") -> Callable[[F], F]:
        return _decorator(PageDeclaration("search", None, query_param))

    def cart_page(self) -> Callable[[F], F]:
        return _decorator(PageDeclaration("cart"))

    def checkout_page(self) -> Callable[[F], F]:
        return _decorator(PageDeclaration("checkout"))

    def order_confirmation(self, key: str = "order_id") -> Callable[[F], F]:
        """The thank-you page: Order Completed, once per (visitor, order id)."""
        return _decorator(PageDeclaration("order", key))

    def wishlist_add(self, key: str = "product_id") -> Callable[[F], F]:
        return _decorator(PageDeclaration("wishlist", key))

    def sign_in(self) -> Callable[[F], F]:
        """A sign-in handler: ``identify`` with the session's identity when it succeeds."""
        return _decorator(PageDeclaration("sign_in"))

    def register(self) -> Callable[[F], F]:
        return _decorator(PageDeclaration("register"))

    def ignore(self) -> Callable[[F], F]:
        """Never track this view (health checks, admin pages)."""
        return _decorator(PageDeclaration("other", IGNORE_KEY))

    # -- calls inside a view ----------------------------------------------------------

    def product(self, product_id: Any = None, **props: Any) -> None:
        """This request shows a product; properties as Segment v2 (``price``, ``name``,
        ``currency``, ``in_stock``, ``category``, ``sku``, ``brand``, ...)."""
        self._page("product", {"product_id": product_id, **props})

    def category(self, category: Any = None, category_id: Any = None, **props: Any) -> None:
        self._page("category", {"category": category, "category_id": category_id, **props})

    def search(self, query: str | None = None, results: int | None = None,
               **props: Any) -> None:
        self._page("search", {"query": query, "results": results, **props})

    def wishlist(self, product_id: Any = None, **props: Any) -> None:
        """The visitor added a product to a wishlist (Product Added to Wishlist)."""
        self._page("wishlist", {"product_id": product_id, **props})

    def order(self, order_id: Any = None, *, total: Any = None, revenue: Any = None,
              currency: str | None = None, products: list[Any] | None = None,
              **props: Any) -> None:
        """An order was completed (sent once per visitor and order id)."""
        state = _state_or_count()
        if state is None:
            return
        values = _clean({"order_id": order_id, "total": total, "revenue": revenue,
                         "currency": currency, "products": products, **props})
        state.order_props = {**(state.order_props or {}), **values}
        if state.declared is None or state.declared.kind != "order":
            state.declared = PageDeclaration("order")

    def identify(self, user_id: Any = None, *, email: str | None = None,
                 phone: str | None = None, name: str | None = None,
                 external_customer_id: Any = None, orangepill_identity: str | None = None,
                 yespo_contact_id: Any = None, **traits: Any) -> None:
        """Who the visitor is; sends ``identify`` with these fields and ``traits``."""
        state = _state_or_count()
        if state is None:
            return
        visitor = _clean({"user_id": user_id, "email": email, "phone": phone, "name": name,
                          "external_customer_id": external_customer_id,
                          "orangepill_identity": orangepill_identity,
                          "yespo_contact_id": yespo_contact_id})
        state.visitor_extra = {**(state.visitor_extra or {}),
                               **{k: str(v) for k, v in visitor.items()}}
        state.identify_traits = {**(state.identify_traits or {}), **_clean(traits)}

    def user(self, user: Any) -> None:
        """The signed-in user object of this request (used for the visitor block)."""
        state = _state_or_count()
        if state is not None and user is not None:
            state.user = user

    def event(self, name: str, properties: dict[str, Any] | None = None) -> None:
        """Any other canonical track event, sent after the response with the visitor."""
        state = _state_or_count()
        if state is None:
            return
        if state.custom_events is None:
            state.custom_events = []
        state.custom_events.append((name, dict(properties or {})))

    def skip(self) -> None:
        """Send nothing for this request."""
        state = current()
        if state is not None and not state.finished:
            state.skip = True

    def _page(self, kind: str, props: dict[str, Any]) -> None:
        state = _state_or_count()
        if state is None:
            return
        state.page_props = {**(state.page_props or {}), **_clean(props)}
        if state.declared is None or state.declared.kind != kind:
            state.declared = PageDeclaration(kind)

    def __repr__(self) -> str:
        return "cdptrack.track"


def _enter(decl: PageDeclaration, kwargs: dict[str, Any]) -> RequestState | None:
    state = current()
    if state is None:
        return None
    if decl.key == IGNORE_KEY:
        state.skip = True
        return None
    if state.declared is None:
        state.declared = decl
        state.view_kwargs = kwargs
        return state
    return None


def _decorator(decl: PageDeclaration) -> Callable[[F], F]:
    def decorate(fn: F) -> F:
        if inspect.isclass(fn):
            setattr(fn, ATTRIBUTE, decl)  # the view itself stays the framework's
            return fn
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_view(*args: Any, **kwargs: Any) -> Any:
                state = _enter(decl, kwargs)
                result = await fn(*args, **kwargs)
                if state is not None:
                    state.view_result = result
                return result

            wrapper: Callable[..., Any] = async_view
        else:

            @functools.wraps(fn)
            def sync_view(*args: Any, **kwargs: Any) -> Any:
                state = _enter(decl, kwargs)
                result = fn(*args, **kwargs)
                if state is not None:
                    state.view_result = result
                return result

            wrapper = sync_view
        for target in (fn, wrapper):
            with contextlib.suppress(AttributeError, TypeError):
                setattr(target, ATTRIBUTE, decl)
        return wrapper  # type: ignore[return-value]

    return decorate


def declaration_of(endpoint: Any) -> PageDeclaration | None:
    """The declaration a decorator left on an endpoint function or view class, or on the
    ``view_class`` of the function a class's ``as_view()`` made (Django, Flask)."""
    if endpoint is None:
        return None
    decl = getattr(endpoint, ATTRIBUTE, None)
    if decl is None:
        view_class = getattr(endpoint, "view_class", None)
        if view_class is not None:
            decl = getattr(view_class, ATTRIBUTE, None)
    return decl if isinstance(decl, PageDeclaration) else None


def ignored(endpoint: Any) -> bool:
    """Whether the endpoint (or its view class) is declared ``@track.ignore()``."""
    decl = declaration_of(endpoint)
    return decl is not None and decl.key == IGNORE_KEY


track = Track()

__all__ = ["Track", "current", "declaration_of", "ignored", "register_state_finder", "track"]
