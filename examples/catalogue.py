"""The example shops' catalogue: 12 products in 3 categories, plain data.

Shared by the Flask storefront and the FastAPI shop so a simulated shopper sees the same
products (and the same ids) in both.
"""

from __future__ import annotations

import hashlib
from typing import Any

CURRENCY = "USD"

CATEGORIES: dict[str, dict[str, str]] = {
    "shoes": {"slug": "shoes", "name": "Shoes"},
    "jackets": {"slug": "jackets", "name": "Jackets"},
    "bags": {"slug": "bags", "name": "Bags"},
}

_ROWS = [
    # id, category, name, price, stock, brand
    ("101", "shoes", "Trail Runner", 89.9, 12, "Northpeak"),
    ("102", "shoes", "City Sneaker", 64.5, 30, "Urbano"),
    ("103", "shoes", "Leather Boot", 149.0, 4, "Hollis"),
    ("104", "shoes", "Canvas Slip-on", 39.0, 0, "Urbano"),
    ("201", "jackets", "Rain Shell", 120.0, 8, "Northpeak"),
    ("202", "jackets", "Down Parka", 249.0, 3, "Hollis"),
    ("203", "jackets", "Denim Jacket", 79.0, 15, "Urbano"),
    ("204", "jackets", "Fleece Zip", 55.0, 0, "Northpeak"),
    ("301", "bags", "Daypack 20L", 59.0, 22, "Northpeak"),
    ("302", "bags", "Leather Tote", 135.0, 6, "Hollis"),
    ("303", "bags", "Sling Bag", 34.9, 40, "Urbano"),
    ("304", "bags", "Weekender", 180.0, 2, "Hollis"),
]

PRODUCTS: dict[str, dict[str, Any]] = {
    pid: {
        "product_id": pid,
        "sku": f"SKU-{pid}",
        "name": name,
        "price": price,
        "currency": CURRENCY,
        "category": CATEGORIES[cat]["name"],
        "category_slug": cat,
        "brand": brand,
        "stock": stock,
        "in_stock": stock > 0,
    }
    for pid, cat, name, price, stock, brand in _ROWS
}


def product(product_id: str) -> dict[str, Any] | None:
    """The product with this id, or ``None`` (also the shops' cdptrack catalogue loader)."""
    return PRODUCTS.get(str(product_id))


def in_category(slug: str) -> list[dict[str, Any]]:
    return [p for p in PRODUCTS.values() if p["category_slug"] == slug]


def search(query: str) -> list[dict[str, Any]]:
    words = query.lower().split()
    return [p for p in PRODUCTS.values()
            if words and all(w in f"{p['name']} {p['category']} {p['brand']}".lower()
                             for w in words)]


def identity_for(email: str) -> str:
    """A stable stand-in for the Orangepill identity id a real shop would have stored
    (24 hex digits, the shape of Orangepill's ids)."""
    return hashlib.sha256(email.encode("utf-8")).hexdigest()[:24]
