"""A shop's product, cart line or order line as a Segment e-commerce v2 product dict.

Products reach cdptrack as whatever the shop has (a dict in the session, a dataclass the
view returned, an ORM row in the template context); :func:`product_line` reads them all
into one shape, ``{"product_id": str, "quantity": number, ...}`` with Segment v2 keys,
which the page decision, the session cart and orders share.
"""

from __future__ import annotations

from typing import Any

from .fields import read_field

MAX_LIST_PRODUCTS = 100
# Product properties a cart or order line may carry into events (Segment v2 names).
PRODUCT_KEYS: tuple[str, ...] = (
    "product_id", "sku", "name", "price", "quantity", "category", "brand", "variant",
    "currency", "url", "image_url", "in_stock", "discount", "coupon", "position", "tags",
)
_ID_NAMES = ("product_id", "id", "sku")
_QTY_NAMES = ("quantity", "qty", "count")


def product_line(item: Any, default_id: Any = None) -> dict[str, Any] | None:
    """A product dict with Segment v2 keys from a mapping or object; ``None`` without id."""
    if item is None or isinstance(item, (str, bytes, bool, int, float)):
        return None
    pid = None
    for name in _ID_NAMES:
        pid = read_field(item, name)
        if pid is not None and not isinstance(pid, bool):
            break
    if pid is None:
        pid = default_id
    if pid is None or not isinstance(pid, (str, int)) or str(pid) == "":
        return None
    line: dict[str, Any] = {"product_id": str(pid)}
    for key in PRODUCT_KEYS[1:]:
        if key == "quantity":
            continue
        value = read_field(item, key)
        if value is not None and isinstance(value, (str, int, float, bool, dict, list)):
            line[key] = value
    if "name" not in line:
        title = read_field(item, "title")
        if isinstance(title, str):
            line["name"] = title
    for name in _QTY_NAMES:
        qty = read_field(item, name)
        if isinstance(qty, (int, float)) and not isinstance(qty, bool):
            line["quantity"] = qty
            break
    else:
        line["quantity"] = 1
    return line


def product_list(value: Any, limit: int = MAX_LIST_PRODUCTS) -> list[dict[str, Any]] | None:
    """The products of a list (at most ``limit``), each with its 1-based ``position``;
    ``None`` when ``value`` is not a list."""
    if not isinstance(value, (list, tuple)):
        return None
    out: list[dict[str, Any]] = []
    for position, item in enumerate(value[:limit], start=1):
        line = product_line(item)
        if line is not None:
            line.pop("quantity", None)
            line.setdefault("position", position)
            out.append(line)
    return out


def set_in_stock(source: Any, line: dict[str, Any]) -> None:
    """Set ``line["in_stock"]`` from ``source``'s ``available`` flag or ``stock`` count,
    unless the line already says."""
    if "in_stock" in line:
        return
    available = read_field(source, "available")
    if isinstance(available, bool):
        line["in_stock"] = available
        return
    stock = read_field(source, "stock")
    if isinstance(stock, (int, float)) and not isinstance(stock, bool):
        line["in_stock"] = stock > 0


__all__ = ["MAX_LIST_PRODUCTS", "PRODUCT_KEYS", "product_line", "product_list", "set_in_stock"]
