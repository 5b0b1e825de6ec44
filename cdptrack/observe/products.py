"""A shop's product, cart line or order line as a Segment e-commerce v2 product dict.

Products reach cdptrack as whatever the shop has: a dict in the session, a dataclass or
pydantic model the view returned, an attrs object, a SQLAlchemy/SQLModel row or a Django
model in the template context.  :func:`product_line` reads them all into one shape,
``{"product_id": str, "quantity": number, ...}`` with Segment v2 keys and plain values,
which the page decision, the session cart and orders share.

Each property is looked up under the names real shops use (first found wins; see
:data:`FIELD_NAMES`): ``name``/``title``, ``price``/``unit_price``/``price_incl_tax``/
``sale_price``, ``id``/``pk``/``sku``/``upc``/``slug``, ``category``/``categories``/
``category_name``, ``image``/``image_url``, ``get_absolute_url()``, ``stock``/
``num_in_stock``/``is_available``.  A shop's own names go in the ``product_fields``
option (``{"price": "current_price.amount", "brand": lambda p: p.maker.name}``), read
before these.

Values are reduced to what the API field wants: money objects (``Money.amount``,
``Price.incl_tax``) and ``Decimal`` to a number, ``UUID`` ids to text, a list, a Django
related manager or a SQLAlchemy relationship list to its first item's name (never a list
where a string goes), an image field to its URL.  A field that cannot be read or reduced
is left out; nothing here raises into the shop.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from fractions import Fraction
from functools import partial
from typing import Any

from ..events import EventError, to_number
from .fields import call_method, read_field, read_path

MAX_LIST_PRODUCTS = 100
# Product properties a cart or order line may carry into events (Segment v2 names).
PRODUCT_KEYS: tuple[str, ...] = (
    "product_id", "sku", "name", "price", "quantity", "category", "brand", "variant",
    "currency", "url", "image_url", "in_stock", "discount", "coupon", "position", "tags",
)

# Where each Segment v2 property is found on shops' objects, first name first.  Sources:
# Django Oscar (``title``, ``upc``, ``price_incl_tax``, ``num_in_stock``, ``categories``,
# ``primary_image``), Saleor (``name``, ``slug``, ``product_type``, ``price_amount``,
# ``unit_price_gross_amount``, ``product_sku``), and Flask/FastAPI tutorial shops
# (``title``, ``image_url``, ``stock``); see tests/shop_data.py.
FIELD_NAMES: dict[str, tuple[str, ...]] = {
    "product_id": ("product_id", "book_id", "item_id", "variant_id", "pk", "id", "uuid",
                   "sku", "upc", "code", "slug"),
    "sku": ("sku", "upc", "product_sku", "partner_sku", "code"),
    "name": ("name", "title", "product_name", "product_title"),
    "price": ("price", "unit_price", "price_incl_tax", "unit_price_incl_tax", "sale_price",
              "price_amount", "unit_price_gross_amount", "unit_price_amount",
              "price_excl_tax", "unit_price_excl_tax", "regular_price", "amount"),
    "category": ("category", "categories", "category_name", "category_title",
                 "product_type", "collection", "collections"),
    "brand": ("brand", "brand_name", "manufacturer", "vendor"),
    "variant": ("variant", "variant_name", "option", "size"),
    "currency": ("currency", "price_currency", "currency_code"),
    "url": ("url", "absolute_url", "permalink"),
    "image_url": ("image_url", "image", "primary_image", "thumbnail", "thumbnail_url",
                  "images", "picture", "photo"),
    "discount": ("discount",),
    "coupon": ("coupon", "voucher_code"),
    "position": ("position",),
    "tags": ("tags",),
}
_AVAILABLE_NAMES = ("in_stock", "is_available", "available", "is_in_stock",
                    "is_available_to_buy", "is_active_in_stock")
_STOCK_NAMES = ("stock", "num_in_stock", "stock_quantity", "quantity_available",
                "inventory_quantity", "inventory_count", "inventory", "units_in_stock")
_QTY_NAMES = ("quantity", "qty", "count")
# Inside a money object: Saleor's Money/TaxedMoney, Oscar's Price, py-moneyed's Money.
_AMOUNT_NAMES = ("amount", "incl_tax", "gross", "excl_tax", "net", "value")
_LABEL_NAMES = ("name", "title", "full_name", "slug")
_IMAGE_URL_NAMES = ("url", "image_url", "src", "original", "image")
# A search index's document id, "app_label.model_name.pk" (django-haystack).
_INDEX_ID = re.compile(r"^[a-z_]\w*\.[a-z_]\w*\.(\w[\w-]*)$")

# Names that say "the id of the product" wherever they appear: on a cart or order line
# they name its product, never the line itself (JSON APIs answer with lines such as
# ``{"id": 7, "book_id": "b-1", "quantity": 2}``; Oluwaseun241/BookNexus, see
# tests/shop_data.py).  Read before the line's ``product`` relation and its own ids.
PRODUCT_ID_NAMES = FIELD_NAMES["product_id"][:4]

# ``product_fields``: Segment v2 name → the shop's field path or a function of the object.
ProductFields = Mapping[str, "str | Callable[[Any], Any]"]


def product_line(item: Any, default_id: Any = None,
                 fields: ProductFields | None = None, *,
                 is_line: bool = False) -> dict[str, Any] | None:
    """A product dict with Segment v2 keys and plain values from a mapping or object
    (see the module docstring); ``None`` when no id is found.

    ``fields`` maps Segment v2 names to the shop's own field paths (``"price.amount"``)
    or callables taking the object; they are read first.  A cart or order line that
    holds its product in ``product`` (a relation) is read through it for what the line
    itself does not say; the line's own ``quantity`` and price win.  ``is_line``: ``item``
    is a cart or order line, so its ``sku`` names the product before its own ``id``.
    """
    if item is None or isinstance(item, (str, bytes, bool, int, float, Decimal)):
        return None
    nested = read_field(item, "product")
    if nested is None or isinstance(nested, (str, bytes, bool, int, float, uuid.UUID)):
        nested = None
    sources = (item,) if nested is None else (item, nested)
    pid = _read_id(sources, fields, is_line)
    if pid is None:
        pid = id_text(default_id)
    if pid is None:
        return None
    line: dict[str, Any] = {"product_id": pid}
    for key in PRODUCT_KEYS[1:]:
        if key == "quantity":
            continue
        for source in sources:
            value = _read(source, key, fields)
            if value is not None:
                line[key] = value
                break
    if "url" not in line:
        for source in sources:
            url = call_method(source, "get_absolute_url")
            if isinstance(url, str) and url:
                line["url"] = url
                break
    if "currency" not in line:
        currency = _money_currency(sources, fields)
        if currency is not None:
            line["currency"] = currency
    if "in_stock" not in line:
        for source in sources:
            stock = in_stock(source)
            if stock is not None:
                line["in_stock"] = stock
                break
    line["quantity"] = 1
    for name in _QTY_NAMES:
        qty = read_field(item, name)
        if isinstance(qty, (int, float, Decimal)) and not isinstance(qty, bool):
            line["quantity"] = int(qty) if qty == int(qty) else float(qty)
            break
    return line


def _read_id(sources: tuple[Any, ...], fields: ProductFields | None,
             is_line: bool = False) -> str | None:
    if fields and "product_id" in fields:
        found = id_text(_custom(sources[0], fields["product_id"]))
        if found is not None:
            return found
    item = sources[0]
    explicit = explicit_product_id(item)
    if explicit is not None:
        return explicit
    if len(sources) > 1:  # a line of a cart or order: the product's id, not the line's
        found = _read_id(sources[1:], fields)
        if found is not None:
            return found
    if is_line:
        sku = id_text(read_field(item, "sku"))
        if sku is not None:
            return sku
    for name in FIELD_NAMES["product_id"][len(PRODUCT_ID_NAMES):]:
        found = id_text(read_field(item, name))
        if found is not None:
            match = _INDEX_ID.match(found)
            return match.group(1) if match else found
    return None


def explicit_product_id(item: Any) -> str | None:
    """The id ``item`` gives under a name that always means a product's id
    (:data:`PRODUCT_ID_NAMES`: ``product_id``, ``book_id``, ``item_id``,
    ``variant_id``), or ``None``; a line's own ``id`` is not one."""
    get = item.get if type(item) is dict else partial(read_field, item)
    for name in PRODUCT_ID_NAMES:
        raw = get(name)
        if raw is not None:
            found = id_text(raw)
            if found is not None:
                return found
    return None


def id_text(value: Any) -> str | None:
    """An id as text: str, int, ``UUID`` or a whole ``Decimal``; ``None`` otherwise."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        if not value.is_finite() or value != int(value):
            return None
        value = int(value)
    if isinstance(value, (str, int)):
        text = str(value).strip()
        return text or None
    return None


def _custom(obj: Any, reader: str | Callable[[Any], Any]) -> Any:
    if callable(reader):
        try:
            return reader(obj)
        except Exception:
            return None
    return read_path(obj, reader)


def _read(source: Any, key: str, fields: ProductFields | None) -> Any:
    if fields and key in fields:
        value = reduce_value(key, _custom(source, fields[key]))
        if value is not None:
            return value
    # A dict (the usual product) is read with its own ``get``: most names are absent,
    # and a call per name to read_field costs more than the lookup.
    get = source.get if type(source) is dict else partial(read_field, source)
    for name in FIELD_NAMES.get(key, (key,)):
        raw = get(name)
        if raw is None:
            continue
        value = reduce_value(key, raw)
        if value is not None:
            return value
    return None


def reduce_value(key: str, raw: Any) -> Any:
    """``raw`` as the plain value Segment v2 property ``key`` wants, or ``None``."""
    if raw is None or (callable(raw) and not _is_related(raw)):
        return None
    if key in ("price", "discount"):
        return money_amount(raw)
    if key == "position":
        return raw if isinstance(raw, int) and not isinstance(raw, bool) else None
    if key in ("sku", "coupon"):
        return id_text(raw) if not _is_related(raw) else None
    if key == "tags":
        if isinstance(raw, Mapping):
            return {str(k): [str(v) for v in (vs if isinstance(vs, (list, tuple)) else [vs])]
                    for k, vs in raw.items()}
        return None
    if key == "image_url":
        return _image_url(raw)
    if key == "in_stock":
        return raw if isinstance(raw, bool) else None
    return label(raw)


def label(value: Any, depth: int = 0) -> str | None:
    """One piece of text for a name-like field: text as it is, an id-like value as
    text, an object (a category, a brand) as its ``name``/``title``, a list or relation
    as its first item's label."""
    if value is None or isinstance(value, bool) or depth > 3:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, (int, uuid.UUID, Decimal)):
        return id_text(value)
    if isinstance(value, float):
        return None
    first = first_item(value)
    if first is not _NOT_A_LIST:
        return label(first, depth + 1)
    for name in _LABEL_NAMES:
        inner = read_field(value, name)
        if inner is not None and inner is not value:
            return label(inner, depth + 1)
    return None


_NOT_A_LIST = object()


def _is_related(value: Any) -> bool:
    # A Django related manager or a lazy query: ``.all()`` and ``.first()``.
    return not isinstance(value, (Mapping, str)) and callable(
        getattr(value, "all", None)) and callable(getattr(value, "first", None))


def first_item(value: Any) -> Any:
    """The first item of a list, tuple, Django related manager or SQLAlchemy
    relationship list (``None`` when empty); ``_NOT_A_LIST`` for anything else."""
    if isinstance(value, (list, tuple)):
        return value[0] if value else None
    if _is_related(value):
        try:
            return value.first()
        except Exception:
            return None
    return _NOT_A_LIST


def money_amount(value: Any, depth: int = 0) -> int | float | None:
    """An amount as a JSON number: numbers, ``Decimal``, numeric strings (with a
    currency sign or code) and money objects (``amount``, ``incl_tax``, ``gross``...);
    ``None`` when it is none of these."""
    if value is None or isinstance(value, bool) or depth > 3:
        return None
    if isinstance(value, (int, float, str, Decimal, Fraction)):
        try:
            return to_number(value, "price")
        except EventError:
            return None
    if isinstance(value, (list, tuple)):
        return None
    for name in _AMOUNT_NAMES:
        inner = read_field(value, name)
        if inner is not None and inner is not value:
            found = money_amount(inner, depth + 1)
            if found is not None:
                return found
    return None


def _money_currency(sources: tuple[Any, ...], fields: ProductFields | None) -> str | None:
    for source in sources:
        for name in FIELD_NAMES["price"]:
            money = read_field(source, name)
            if money is None or isinstance(money, (int, float, str, Decimal, bool)):
                continue
            for inner in (money, read_field(money, "gross")):
                currency = read_field(inner, "currency") if inner is not None else None
                if isinstance(currency, str) and 1 <= len(currency) <= 8:
                    return currency
            return None
    return None


def _image_url(value: Any, depth: int = 0) -> str | None:
    if value is None or depth > 3:
        return None
    if isinstance(value, str):
        return value or None
    first = first_item(value)
    if first is not _NOT_A_LIST:
        return _image_url(first, depth + 1)
    for name in _IMAGE_URL_NAMES:
        inner = read_field(value, name)  # a Django FieldFile without a file raises: None
        if inner is not None and inner is not value:
            found = _image_url(inner, depth + 1)
            if found:
                return found
    return None


def in_stock(source: Any) -> bool | None:
    """Whether ``source`` is in stock: an availability flag, else a stock count > 0."""
    for name in _AVAILABLE_NAMES:
        available = read_field(source, name)
        if isinstance(available, bool):
            return available
    for name in _STOCK_NAMES:
        stock = read_field(source, name)
        if isinstance(stock, (int, float, Decimal)) and not isinstance(stock, bool):
            return stock > 0
    return None


def product_list(value: Any, limit: int = MAX_LIST_PRODUCTS,
                 fields: ProductFields | None = None) -> list[dict[str, Any]] | None:
    """The products of a list, Django queryset or page (at most ``limit``), each with
    its 1-based ``position``; ``None`` when ``value`` is not a list of any kind."""
    items = as_list(value, limit)
    if items is None:
        return None
    out: list[dict[str, Any]] = []
    for position, item in enumerate(items, start=1):
        line = product_line(item, fields=fields)
        if line is not None:
            line.pop("quantity", None)
            line.setdefault("position", position)
            out.append(line)
    return out


def as_list(value: Any, limit: int = MAX_LIST_PRODUCTS) -> list[Any] | None:
    """At most ``limit`` items of a list, tuple, Django queryset or paginator page;
    ``None`` for anything else (a mapping, text, a single object)."""
    if isinstance(value, (list, tuple)):
        return list(value[:limit])
    if value is None or isinstance(value, (str, bytes, Mapping)):
        return None
    object_list = read_field(value, "object_list")  # a Django Page
    if object_list is not None and object_list is not value:
        return as_list(object_list, limit)
    every = getattr(value, "all", None)
    if callable(every):
        try:  # a queryset, a related manager, a lazy relationship: one LIMITed query
            found = every() if not hasattr(value, "__getitem__") else value
            return list(found[:limit])
        except Exception:
            return None
    return None


def set_in_stock(source: Any, line: dict[str, Any]) -> None:
    """Set ``line["in_stock"]`` from ``source``'s availability flag or stock count,
    unless the line already says."""
    if "in_stock" in line:
        return
    stock = in_stock(source)
    if stock is not None:
        line["in_stock"] = stock


ID_NAMES = ("pk", "id", "uuid", "sku", "upc", "code", "slug")


def product_snapshot(obj: Any, fields: ProductFields | None = None) -> Any:
    """``obj`` reduced to plain data while it can still be read (the request's thread,
    its database connection, Flask's app context): its product line plus every id it
    is known by (``pk``, ``slug``, ...), so it can still be matched to the page's key.
    Plain data is returned as it is; ``None`` when ``obj`` has no readable id."""
    if obj is None or isinstance(obj, (str, int, float, bool, dict)):
        return obj
    line = product_line(obj, fields=fields)
    if line is None:
        return None
    line.pop("quantity", None)
    for name in ID_NAMES:
        found = id_text(read_field(obj, name))
        if found is not None:
            line.setdefault(name, found)
    return line


def matches_key(obj: Any, key: str) -> bool:
    """Whether the page's key (from the URL) is one of ``obj``'s ids (``product_id``,
    ``pk``, ``id``, ``sku``, ``slug``...)."""
    return any(id_text(read_field(obj, name)) == key for name in ("product_id", *ID_NAMES))


def category_fields(category: Any) -> dict[str, str]:
    """``{"category": name, "category_id": id}`` of a category object, text or list
    (the first of a list or relation); empty when there is nothing readable."""
    out: dict[str, str] = {}
    first = first_item(category)
    if first is not _NOT_A_LIST:
        category = first
    if category is None or isinstance(category, bool):
        return out
    if isinstance(category, (str, int, uuid.UUID)):
        text = id_text(category)
        if text:
            out["category"] = text
        return out
    name = label(category)
    if name:
        out["category"] = name
    cid = id_text(read_field(category, "pk")) or id_text(read_field(category, "id")) \
        or id_text(read_field(category, "slug"))
    if cid:
        out["category_id"] = cid
    return out


__all__ = [
    "FIELD_NAMES",
    "MAX_LIST_PRODUCTS",
    "PRODUCT_ID_NAMES",
    "PRODUCT_KEYS",
    "ProductFields",
    "as_list",
    "category_fields",
    "explicit_product_id",
    "first_item",
    "id_text",
    "in_stock",
    "label",
    "matches_key",
    "money_amount",
    "product_line",
    "product_list",
    "product_snapshot",
    "reduce_value",
    "set_in_stock",
]
