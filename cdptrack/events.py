"""The canonical event: one vocabulary for everything cdptrack sends.

A canonical event is plain data (Segment e-commerce v2 names and snake_case properties,
plus a few extensions) that every destination renders from.  It is validated and
normalised once, here, at the edge: renderers can then trust that prices are numbers,
ids are strings and timestamps are timezone-aware, and a bad event is reported with the
name of the offending field instead of failing deep inside a renderer.
"""

from __future__ import annotations

import enum
import math
import numbers
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from typing import Any, Literal

EventType = Literal["track", "identify", "page"]
EVENT_TYPES: frozenset[str] = frozenset({"track", "identify", "page"})

# Canonical names of the events cdptrack infers or maps specially (Segment e-commerce v2
# plus the extensions in the design).
PRODUCT_VIEWED = "Product Viewed"
PRODUCT_LIST_VIEWED = "Product List Viewed"
CART_UPDATED = "Cart Updated"
# A ``page`` event's property naming the event that is that page's own view (set by the
# middleware with ``page_views="generic"``): APIs that take each message singly skip it.
PAGE_EVENT = "page_event"
ORDER_COMPLETED = "Order Completed"
ORDER_UPDATED = "Order Updated"
ORDER_DELIVERED = "Order Delivered"
ORDER_CANCELLED = "Order Cancelled"
PRODUCT_ADDED_TO_WISHLIST = "Product Added to Wishlist"
PRODUCTS_SEARCHED = "Products Searched"
PRODUCT_IMPRESSIONS = "Product Impressions"
PRODUCT_UPDATED = "Product Updated"
PRODUCT_ADDED = "Product Added"
PRODUCT_REMOVED = "Product Removed"

VISITOR_FIELDS: tuple[str, ...] = (
    "sc",
    "user_id",
    "email",
    "phone",
    "name",
    "external_customer_id",
    "yespo_contact_id",
    "orangepill_identity",
)

# Property names whose values are identifiers: always strings on the wire.
_ID_KEYS = frozenset(
    {"product_id", "sku", "order_id", "cart_id", "checkout_id", "list_id", "category_id",
     "container_type", "cart_state_id", "promotion_id", "wishlist_id", "review_id"}
)
# Property names whose values are amounts: numbers on the wire ("19.90" becomes 19.9).
_NUMBER_KEYS = frozenset(
    {"price", "total", "revenue", "value", "subtotal", "shipping", "tax", "discount", "rating"}
)
# A product's list position is a number; a promotion's ``position`` is a slot name.
_PRODUCT_NUMBER_KEYS = _NUMBER_KEYS | {"position"}
# Property names whose values are counts: integers on the wire.
_INT_KEYS = frozenset({"quantity", "results", "step"})
_BOOL_KEYS = frozenset({"in_stock"})
_PRODUCT_LIST_KEYS = frozenset({"products", "added", "removed"})
# Property names whose values are one piece of text on the wire (Customer.io's schema
# types them as strings): a list or relation there is reduced to its first item's name.
_TEXT_KEYS = frozenset({"name", "category", "brand", "variant", "url", "image_url",
                        "coupon", "currency", "affiliation", "query"})

_INT_RE = re.compile(r"^[+-]?\d+$")
# A money amount: a currency sign, code or word ("$", "EUR", "грн.") and a sign before,
# the digits with their separators, a currency after.
_MONEY_PARTS = re.compile(r"([^\d.,]*)(\d[\d.,\s'\u00a0\u202f\u2009_\u2019]*|[.,]\d+)"
                          r"([^\d.,]*)").fullmatch
# Inside one: thousands separators other than "." and "," (spaces, apostrophes).
_MONEY_GROUPING = re.compile(r"[\s'\u00a0\u202f\u2009_\u2019]")
MAX_ID_LENGTH = 512


class EventError(ValueError):
    """A canonical event that cannot be used; ``field`` names the offending part."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class Visitor:
    """Who the event is about.  Every field is optional; ``sc`` doubles as anonymous id."""

    sc: str | None = None
    user_id: str | None = None
    email: str | None = None
    phone: str | None = None
    name: str | None = None
    external_customer_id: str | None = None
    yespo_contact_id: str | None = None
    orangepill_identity: str | None = None

    @property
    def customer_id(self) -> str | None:
        """The shop's own customer id: ``external_customer_id``, else ``user_id``."""
        return self.external_customer_id or self.user_id

    @property
    def contact_key(self) -> str | None:
        """The key Yespo finds a contact by: email, then phone, then external id."""
        return self.email or self.phone or self.customer_id

    def to_dict(self) -> dict[str, str]:
        return {f: v for f in VISITOR_FIELDS if (v := getattr(self, f)) is not None}

    @classmethod
    def from_dict(cls, data: Any, path: str = "visitor", *,
                  default_customer_id: bool = False) -> Visitor:
        """Validate a visitor object; with ``default_customer_id``, the external customer
        id defaults to ``user_id`` (the canonical event's rule)."""
        if data is None:
            return cls()
        if isinstance(data, Visitor):
            if default_customer_id and data.external_customer_id is None and data.user_id:
                return replace(data, external_customer_id=data.user_id)
            return data
        if not isinstance(data, Mapping):
            raise EventError(path, f"must be an object, not {_kind(data)}")
        values: dict[str, str | None] = {}
        for key, raw in data.items():
            if key not in VISITOR_FIELDS:
                continue  # unknown visitor fields are ignored, like unknown cookies
            values[key] = _optional_id(raw, f"{path}.{key}")
        if default_customer_id and values.get("external_customer_id") is None:
            values["external_customer_id"] = values.get("user_id")
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Event:
    """One canonical event.  Build with :func:`track`, :func:`identify`, :func:`page`
    or :meth:`Event.from_dict`; all of them validate and normalise."""

    type: EventType
    event: str | None = None
    name: str | None = None
    visitor: Visitor = field(default_factory=Visitor)
    properties: dict[str, Any] = field(default_factory=dict)
    traits: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    timestamp: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    message_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    # Names of properties left out because no JSON form exists for their values
    # (counted as ``dropped_property:<name>``); never part of the canonical JSON.
    dropped: tuple[str, ...] = field(default=(), compare=False)

    @property
    def label(self) -> str:
        """A short human name: the track event name, ``page`` or ``identify``."""
        return self.event if self.type == "track" and self.event else self.type

    def to_dict(self) -> dict[str, Any]:
        """The canonical JSON object (the same shape on the CLI, in outboxes, on pages)."""
        out: dict[str, Any] = {"type": self.type}
        if self.event is not None:
            out["event"] = self.event
        if self.name is not None:
            out["name"] = self.name
        out["visitor"] = self.visitor.to_dict()
        out["properties"] = self.properties
        if self.type == "identify" or self.traits:
            out["traits"] = self.traits
        out["context"] = self.context
        out["timestamp"] = iso_millis(self.timestamp)
        out["message_id"] = self.message_id
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Event:
        """Validate and normalise a canonical JSON object; raises :class:`EventError`."""
        if isinstance(data, Event):
            return data
        if not isinstance(data, Mapping):
            raise EventError("event", f"must be a JSON object, not {_kind(data)}")
        etype = data.get("type", "track")
        if etype not in EVENT_TYPES:
            raise EventError("type", f"must be one of track, identify, page; got {etype!r}")
        name = data.get("event")
        if etype == "track":
            if not isinstance(name, str) or not name.strip():
                raise EventError("event", "a track event needs a non-empty event name")
            name = name.strip()
        elif name is not None:
            raise EventError("event", f"only track events have an event name, not {etype}")
        page_name = data.get("name")
        if page_name is not None and not isinstance(page_name, str):
            raise EventError("name", f"must be a string, not {_kind(page_name)}")
        visitor = Visitor.from_dict(data.get("visitor"), default_customer_id=True)
        dropped: list[str] = []
        properties = normalize_properties(
            _mapping(data.get("properties"), "properties"),
            product=not (name or "").startswith("Promotion"),
            dropped=dropped,
        )
        traits = encode_properties(_mapping(data.get("traits"), "traits"), dropped,
                                   prefix="traits.")
        context = encode_properties(_mapping(data.get("context"), "context"), dropped,
                                    prefix="context.")
        message_id = data.get("message_id")
        if message_id is None or message_id == "":
            message_id = str(uuid.uuid4())
        elif not isinstance(message_id, str) or len(message_id) > MAX_ID_LENGTH:
            raise EventError("message_id", "must be a string of at most 512 characters")
        return cls(
            type=etype,
            event=name,
            name=page_name,
            visitor=visitor,
            properties=properties,
            traits=traits,
            context=context,
            timestamp=parse_timestamp(data.get("timestamp"), "timestamp"),
            message_id=message_id,
            dropped=tuple(dropped),
        )


def track(
    event: str,
    properties: Mapping[str, Any] | None = None,
    *,
    visitor: Visitor | Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    timestamp: datetime | str | float | None = None,
    message_id: str | None = None,
) -> Event:
    """Build a validated ``track`` event (``track("Product Viewed", {...}, visitor=...)``)."""
    return Event.from_dict(
        _spec("track", event=event, visitor=visitor, properties=properties, context=context,
              timestamp=timestamp, message_id=message_id)
    )


def identify(
    traits: Mapping[str, Any] | None = None,
    *,
    visitor: Visitor | Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    timestamp: datetime | str | float | None = None,
    message_id: str | None = None,
) -> Event:
    """Build a validated ``identify`` event: who the visitor is, with ``traits``."""
    return Event.from_dict(
        _spec("identify", traits=traits, visitor=visitor, context=context,
              timestamp=timestamp, message_id=message_id)
    )


def page(
    url: str | None = None,
    *,
    name: str | None = None,
    properties: Mapping[str, Any] | None = None,
    visitor: Visitor | Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    timestamp: datetime | str | float | None = None,
    message_id: str | None = None,
) -> Event:
    """Build a validated ``page`` event; ``url`` lands in ``properties.url``."""
    props = dict(properties or {})
    if url is not None:
        props.setdefault("url", url)
    return Event.from_dict(
        _spec("page", name=name, visitor=visitor, properties=props, context=context,
              timestamp=timestamp, message_id=message_id)
    )


def _spec(etype: str, **parts: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": etype}
    for key, value in parts.items():
        if value is None:
            continue
        if key == "visitor" and isinstance(value, Visitor):
            value = value.to_dict()
        out[key] = value
    return out


# --- normalisation -------------------------------------------------------------------


def normalize_properties(
    props: Mapping[str, Any], path: str = "properties", *, product: bool = False,
    dropped: list[str] | None = None,
) -> dict[str, Any]:
    """Coerce well-known properties to the types the APIs want and every other value to
    its JSON form.

    - amounts (``price``, ``total``, ``revenue``, ...): int, float, ``Decimal``,
      ``Fraction`` or a numeric string (see :func:`to_number`) → a JSON number;
    - ids (``product_id``, ``order_id``, ...): str, int or ``UUID`` → a string;
    - counts (``quantity``, ...) → an int; ``in_stock`` → a bool;
    - text (``name``, ``category``, ...): a list or relation → its first item's name;
    - anything else: ``datetime``/``date``/``time`` → ISO-8601, ``UUID`` → str,
      ``Enum`` → its value, ``Decimal``/``Fraction`` → a number, sets and tuples → lists.

    A well-known property with a wrong value is an :class:`EventError` naming it; any
    other property with no JSON form is left out and its name appended to ``dropped``
    (the caller counts ``dropped_property:<name>``), never the whole event.
    """
    out: dict[str, Any] = {}
    for key, value in props.items():
        if not isinstance(key, str):
            raise EventError(path, f"property names must be strings, got {key!r}")
        try:
            out[key] = _normalize_value(key, value, f"{path}.{key}", product, dropped)
        except _Unencodable:
            if dropped is None:
                raise EventError(f"{path}.{key}",
                                 f"has no JSON form ({_kind(value)})") from None
            dropped.append(key if path == "properties" else f"{path}.{key}"
                           .removeprefix("properties."))
    return out


def encode_properties(props: Mapping[str, Any], dropped: list[str] | None = None, *,
                      prefix: str = "") -> dict[str, Any]:
    """``props`` with every value in its JSON form (see :func:`normalize_properties`);
    a value with none is left out and ``prefix + name`` appended to ``dropped``."""
    out: dict[str, Any] = {}
    for key, value in props.items():
        try:
            out[str(key)] = json_value(value)
        except _Unencodable:
            if dropped is None:
                raise EventError(f"{prefix}{key}",
                                 f"has no JSON form ({_kind(value)})") from None
            dropped.append(f"{prefix}{key}")
    return out


class _Unencodable(Exception):
    """A value with no JSON form."""


_JSON_SCALARS = (str, int, bool, type(None))


def json_value(value: Any, depth: int = 0) -> Any:
    """``value`` in its JSON form: ``datetime``/``date``/``time`` → ISO-8601 text,
    ``UUID`` → str, ``Enum`` → its value, ``Decimal``/``Fraction`` → a number, sets and
    tuples → lists, mappings with their values converted.  Raises ``_Unencodable`` for
    anything else (an arbitrary object, a NaN, nesting deeper than 32)."""
    kind = type(value)
    if kind in _JSON_SCALARS:
        return value
    if kind is float:
        if not math.isfinite(value):
            raise _Unencodable
        return value
    if depth > 32:
        raise _Unencodable
    if isinstance(value, Mapping):
        return {str(k) if not isinstance(k, str) else k: json_value(v, depth + 1)
                for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_value(v, depth + 1) for v in value]
    if isinstance(value, enum.Enum):
        return json_value(value.value, depth + 1)
    if isinstance(value, (str, int)):  # str and int subclasses (not bool: checked above)
        return str(value) if isinstance(value, str) else int(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (Decimal, Fraction, numbers.Real)):
        try:
            return _plain_number(value, "")
        except EventError:
            raise _Unencodable from None
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise _Unencodable from None
    raise _Unencodable


def _normalize_value(key: str, value: Any, path: str, product: bool,
                     dropped: list[str] | None = None) -> Any:
    if value is None:
        return None
    if key in _PRODUCT_LIST_KEYS:
        if not isinstance(value, (list, tuple)):
            raise EventError(path, f"must be a list of products, not {_kind(value)}")
        return [
            normalize_properties(_mapping(item, f"{path}[{i}]"), f"{path}[{i}]", product=True,
                                 dropped=dropped)
            for i, item in enumerate(value)
        ]
    if key in _ID_KEYS:
        if key == "category_id" and isinstance(value, (list, tuple)):
            return [_required_id(v, f"{path}[{i}]") for i, v in enumerate(value)]
        return _required_id(value, path)
    if key in (_PRODUCT_NUMBER_KEYS if product else _NUMBER_KEYS):
        return to_number(value, path)
    if key in _INT_KEYS:
        return to_int(value, path)
    if key in _BOOL_KEYS:
        return to_bool(value, path)
    if key == "tags":
        return _tags(value, path)
    if key in _TEXT_KEYS:
        return _text_value(value)
    return json_value(value)


def _text_value(value: Any) -> Any:
    """One piece of text: a list (or relation) → its first item, an object → its name."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        if not value:
            return None
        return _text_value(value[0])
    if isinstance(value, Mapping):
        for name in ("name", "title", "slug", "id"):
            if value.get(name) is not None:
                return _text_value(value[name])
        raise _Unencodable
    if isinstance(value, bool):
        raise _Unencodable
    encoded = json_value(value)
    if isinstance(encoded, (dict, list)):
        raise _Unencodable
    return str(encoded)


def to_number(value: Any, path: str) -> int | float:
    """An amount as a JSON number: ints and finite floats as given, ``Decimal`` and
    ``Fraction`` (what SQLAlchemy ``Numeric`` and Django ``DecimalField`` return) as an
    int when whole, else a float; a numeric string with or without a currency sign or
    code around it (``"$1,299.00"``, ``"19,90 €"``, ``"EUR 1.299,90"``,
    ``"1 299,00 грн"``).  In a string the last of ``.`` and ``,`` is the decimal mark
    when both appear; a lone ``.`` or ``,`` is thousands grouping when 1-3 digits (not
    starting with 0) come before it and exactly three after (``"1.299"`` and
    ``"1,299"`` are 1299), else the decimal mark (``"19,90"``, ``"0.125"``).  A minus
    before the number or the currency (``"-$5"``, ``"$-5"``, ``"\\u22125 €"``) and accounting
    parentheses (``"(5.00)"``) make it negative.  Booleans, NaN, infinity and anything
    else are an :class:`EventError`."""
    if isinstance(value, bool):
        raise EventError(path, "must be a number, not a boolean")
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise EventError(path, "must be a finite number")
        return value
    if isinstance(value, str):
        return _number_from_text(value, path)
    if isinstance(value, (Decimal, Fraction, numbers.Real)):
        return _plain_number(value, path)
    raise EventError(path, f"must be a number, not {_kind(value)}")


def _plain_number(value: Any, path: str) -> int | float:
    if isinstance(value, Decimal) and not value.is_finite():
        raise EventError(path, "must be a finite number")
    try:
        if value == int(value):
            return int(value)
        number = float(value)
    except (OverflowError, ValueError, TypeError):
        raise EventError(path, f"must be a finite number, got {value!r}") from None
    if not math.isfinite(number):
        raise EventError(path, "must be a finite number")
    return number


def _number_from_text(value: str, path: str) -> int | float:
    text = value.strip().replace("\u2212", "-")  # U+2212 MINUS SIGN, as CLDR writes it
    negative = False
    if text.startswith("(") and text.endswith(")"):
        negative, text = True, text[1:-1].strip()  # accounting: "(5.00)" is -5
    found = _MONEY_PARTS(text)
    if found is None:
        raise EventError(path, f"must be a number, got {value!r}")
    before, digits, after = found.groups()
    sign = before.replace(" ", "").count("-") + before.count("+")
    if sign > 1 or (sign and negative) or any(c in after for c in "+-()") \
            or "(" in before or ")" in before:
        raise EventError(path, f"must be a number, got {value!r}")
    negative = negative or "-" in before
    text = _MONEY_GROUPING.sub("", digits)
    comma, dot = text.rfind(","), text.rfind(".")
    if comma >= 0 and dot >= 0:
        mark = "," if comma > dot else "."
        grouping = "." if mark == "," else ","
        text = _ungroup(text[:max(comma, dot)], grouping, value, path) + "." + \
            text[max(comma, dot) + 1:]
    elif comma >= 0 or dot >= 0:
        sep = "," if comma >= 0 else "."
        head, _, tail = text.partition(sep)
        if sep in tail or _grouped_thousands(head, tail):
            text = _ungroup(text, sep, value, path)  # "1,299", "1.299", "1.299.000"
        else:
            text = f"{head}.{tail}"  # "19,90", "0.125", "1234.567": a decimal mark
    if _INT_RE.match(text):
        number: int | float = int(text)
    else:
        try:
            number = float(text)
        except ValueError:
            raise EventError(path, f"must be a number, got {value!r}") from None
        if not math.isfinite(number):
            raise EventError(path, "must be a finite number")
    return -number if negative else number


def _grouped_thousands(head: str, tail: str) -> bool:
    """A lone separator reads as thousands grouping when it looks like one: 1-3 digits,
    not starting with 0, then exactly three digits (``"1.299"``, ``"12,500"``); shop
    prices carry two decimals, so a price string with three is taken for grouping."""
    return len(tail) == 3 and 1 <= len(head) <= 3 and head[0] != "0" and \
        head.isdigit() and tail.isdigit()


def _ungroup(text: str, sep: str, value: str, path: str) -> str:
    """``text`` without its thousands separator ``sep``: the last group has three
    digits, those between two or three (Indian lakh grouping, ``"₹1,29,999"``);
    ``"1.2.3"`` is no amount."""
    groups = text.split(sep)
    if len(groups) > 1 and (not groups[0] or len(groups[-1]) != 3
                            or any(len(g) not in (2, 3) for g in groups[1:-1])):
        raise EventError(path, f"must be a number, got {value!r}")
    return "".join(groups)


def to_int(value: Any, path: str) -> int:
    number = to_number(value, path)
    if isinstance(number, float):
        if not number.is_integer():
            raise EventError(path, f"must be a whole number, got {value!r}")
        return int(number)
    return number


def to_bool(value: Any, path: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
        return _BOOL_WORDS[value.strip().lower()]
    raise EventError(path, f"must be true or false, got {value!r}")


_BOOL_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _tags(value: Any, path: str) -> dict[str, list[str]]:
    if not isinstance(value, Mapping):
        raise EventError(path, "must be an object of tag name to list of strings")
    out: dict[str, list[str]] = {}
    for name, items in value.items():
        if isinstance(items, (str, int, float)):
            items = [items]
        if not isinstance(items, (list, tuple)):
            raise EventError(f"{path}.{name}", "must be a list of strings")
        out[str(name)] = [str(v) for v in items]
    return out


def _required_id(value: Any, path: str) -> str:
    result = _optional_id(value, path)
    if result is None:
        raise EventError(path, "must not be empty")
    return result


def _optional_id(value: Any, path: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, (uuid.UUID, enum.Enum)):
        value = value.value if isinstance(value, enum.Enum) else str(value)
    elif isinstance(value, Decimal) and value.is_finite() and value == int(value):
        value = int(value)  # a NUMERIC primary key
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise EventError(path, f"must be a string, not {_kind(value)}")
    text = str(value).strip()
    if len(text) > MAX_ID_LENGTH:
        raise EventError(path, f"is longer than {MAX_ID_LENGTH} characters")
    return text or None


def _mapping(value: Any, path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise EventError(path, f"must be an object, not {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(
        type(value), type(value).__name__
    )


# --- time ----------------------------------------------------------------------------


def parse_timestamp(value: Any, path: str = "timestamp") -> datetime:
    """ISO-8601 (``Z`` or offset; naive means UTC), epoch seconds or epoch milliseconds."""
    if value is None or value == "":
        return datetime.now(timezone.utc)
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = value / 1000 if value > 100_000_000_000 else value
        try:
            return datetime.fromtimestamp(seconds, timezone.utc)
        except (OverflowError, OSError, ValueError):
            raise EventError(path, f"is out of range: {value!r}") from None
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise EventError(path, f"must be ISO-8601 or epoch time, got {value!r}") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    raise EventError(path, f"must be ISO-8601 or epoch time, not {_kind(value)}")


def iso_millis(moment: datetime) -> str:
    """``2020-01-21T15:56:23.208Z``: the form Customer.io and the canonical JSON use."""
    utc = moment if moment.tzinfo is timezone.utc else moment.astimezone(timezone.utc)
    return utc.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def epoch_millis(moment: datetime) -> int:
    """Milliseconds since the epoch: the Yespo tracker's ``datetime``."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


__all__ = [
    "Event",
    "EventError",
    "EventType",
    "Visitor",
    "encode_properties",
    "epoch_millis",
    "identify",
    "iso_millis",
    "json_value",
    "normalize_properties",
    "page",
    "parse_timestamp",
    "to_number",
    "track",
]
