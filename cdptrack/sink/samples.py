"""One canonical event of every kind the destinations map, for exercising a sink.

Used by the sink's tests and its browser test to send what the renderers really
produce, and handy for trying a shop's configuration against a local sink without a
shop: ``render_event(e, config)`` for each ``e`` in :func:`every_kind`.
"""

from __future__ import annotations

from typing import Any

from ..events import Event, identify, page, track

DEMO_SC = "CDA68358-94FB-4D83-9655-3FEB3C4114A3"


def demo_visitor(sc: str = DEMO_SC, *, signed_in: bool = True) -> dict[str, str]:
    visitor = {"sc": sc}
    if signed_in:
        visitor.update({
            "user_id": "u-17",
            "email": "jane@example.com",
            "phone": "380501234567",
            "name": "Jane Smith",
            "orangepill_identity": "634b56217f6a7b0be52dffbd",
        })
    return visitor


def _product(pid: str = "72354", price: float = 754, **extra: Any) -> dict[str, Any]:
    return {"product_id": pid, "sku": f"SKU-{pid}", "name": f"Product {pid}",
            "category": "Shoes", "price": price, "currency": "USD", **extra}


def every_kind(visitor: dict[str, str] | None = None) -> list[Event]:
    """A canonical event of each kind in the design's mapping table."""
    who = visitor if visitor is not None else demo_visitor()
    ctx = {"ip": "203.0.113.9", "user_agent": "Mozilla/5.0 (cdptrack sample)",
           "url": "https://shop.example/p/72354"}
    line = {**_product(), "quantity": 1}
    return [
        page("https://shop.example/", name="Home", visitor=who, context=ctx),
        track("Product Viewed", {**_product(), "in_stock": True, "url": ctx["url"],
                                 "tags": {"colour": ["red"]}}, visitor=who, context=ctx),
        track("Product List Viewed", {"list_id": "shoes", "category": "Shoes",
                                      "products": [_product(), _product("902339", 596)]},
              visitor=who, context=ctx),
        track("Cart Updated", {"cart_id": "cart-1", "currency": "USD", "products": [line],
                               "added": [line], "removed": []}, visitor=who, context=ctx),
        track("Cart Updated", {"cart_id": "cart-1", "currency": "USD", "products": [],
                               "added": [], "removed": [line]}, visitor=who, context=ctx),
        track("Order Completed", {"order_id": "A-1001", "total": 754, "revenue": 754,
                                  "currency": "USD", "products": [line],
                                  "status": "INITIALIZED"}, visitor=who, context=ctx),
        track("Order Updated", {"order_id": "A-1001", "total": 754, "currency": "USD",
                                "status": "IN_PROGRESS", "products": [line]},
              visitor=who, context=ctx),
        track("Order Delivered", {"order_id": "A-1001"}, visitor=who, context=ctx),
        track("Order Cancelled", {"order_id": "A-1001", "total": 754, "currency": "USD"},
              visitor=who, context=ctx),
        track("Product Added to Wishlist", _product(), visitor=who, context=ctx),
        track("Products Searched", {"query": "shoes", "results": 2}, visitor=who, context=ctx),
        track("Products Searched", {"query": "nothing-here", "results": 0}, visitor=who,
              context=ctx),
        track("Product Impressions", {"products": [
            {**_product(), "container_type": "1253"},
            {**_product("902339", 596), "container_type": "1254"}]}, visitor=who, context=ctx),
        track("Product Updated", {"products": [{**_product(), "in_stock": True}]},
              visitor=who, context=ctx),
        track("Checkout Started", {"order_id": "A-1001", "value": 754, "currency": "USD",
                                   "products": [line]}, visitor=who, context=ctx),
        identify({"first_name": "Jane", "last_name": "Smith"}, visitor=who, context=ctx),
    ]
