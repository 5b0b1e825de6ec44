"""Checks of request bodies against the four APIs' published specs.

Each ``check_*`` function takes a parsed JSON body and returns a list of problems, each
``"<path>: <what is wrong>"``; an empty list means the body is what the API documents.
The rules come from the spec files (``/specs`` in the design): required fields, their
types, size limits and the few cross-field rules the docs state.  Where a spec
contradicts itself (Yespo's tables say ``price`` is a string while its examples send
numbers) both forms are accepted; where it is consistent, the check is strict.

Pure functions: no I/O besides loading the packaged Customer.io OpenAPI document once.
The Customer.io schema check is the renderer's own
(:mod:`cdptrack.destinations.customerio_schema`): what the sink refuses, cdptrack never
sends.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

from ..destinations.customerio_schema import customerio_openapi as customerio_openapi
from ..destinations.customerio_schema import semantic_event_names as semantic_event_names
from ..destinations.customerio_schema import track_problems

Problems = list[str]

# -- limits (api-facts.md) -------------------------------------------------------------

YESPO_EVENT_MAX_BYTES = 20 * 1024
CUSTOMERIO_MESSAGE_MAX_BYTES = 32 * 1024
CUSTOMERIO_BATCH_MAX_BYTES = 500 * 1024
YESPO_EVENT_TYPE_MAX = 100
YESPO_KEY_VALUE_MAX = 300

# A millisecond epoch between 2001-09-09 and 2286-11-20: seconds or microseconds are out.
_MS_MIN, _MS_MAX = 10**12, 10**13


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_numeric_string(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        float(value.strip().split(" ")[0])
    except ValueError:
        return False
    return True


def _is_int_like(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    if isinstance(value, float):
        return value.is_integer()
    return isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()) is not None


def _need_string(obj: Mapping[str, Any], key: str, path: str, out: Problems) -> None:
    if key not in obj:
        out.append(f"{path}.{key}: required")
    elif not isinstance(obj[key], str) or not obj[key].strip():
        out.append(f"{path}.{key}: must be a non-empty string, got {_kind(obj[key])}")


def _opt_string(obj: Mapping[str, Any], key: str, path: str, out: Problems) -> None:
    if key in obj and obj[key] is not None and not isinstance(obj[key], str):
        out.append(f"{path}.{key}: must be a string, got {_kind(obj[key])}")


def _need_price(obj: Mapping[str, Any], key: str, path: str, out: Problems) -> None:
    # Yespo's tables say string ("754 USD"), its examples send numbers (201.95): both ok.
    if key not in obj:
        out.append(f"{path}.{key}: required")
    elif not (_is_number(obj[key]) or _is_numeric_string(obj[key])):
        out.append(f"{path}.{key}: must be a price (number or numeric string)")


def _opt_flag(obj: Mapping[str, Any], key: str, path: str, out: Problems) -> None:
    if key not in obj:
        return
    value = obj[key]
    if isinstance(value, bool) or value not in (0, 1, "0", "1"):
        out.append(f'{path}.{key}: must be 0 or 1 (or "0"/"1"), got {value!r}')


def _need_quantity(obj: Mapping[str, Any], key: str, path: str, out: Problems) -> None:
    if key not in obj:
        out.append(f"{path}.{key}: required")
    elif not _is_int_like(obj[key]):
        out.append(f"{path}.{key}: must be an integer, got {obj[key]!r}")


def _tags(obj: Mapping[str, Any], path: str, out: Problems) -> None:
    """``tag_<name>`` fields and the ``Tags`` object hold arrays of strings."""
    for key, value in obj.items():
        if key.startswith("tag_") and not _is_string_list(value):
            out.append(f"{path}.{key}: tag_ fields must be arrays of strings")
    if "Tags" in obj:
        tags = obj["Tags"]
        if not isinstance(tags, dict):
            out.append(f"{path}.Tags: must be an object, got {_kind(tags)}")
        else:
            for key, value in tags.items():
                if not _is_string_list(value):
                    out.append(f"{path}.Tags.{key}: must be an array of strings")


def _is_string_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _object(value: Any, path: str, out: Problems) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        out.append(f"{path}: must be an object, got {_kind(value)}")
        return None
    return value


def _array(value: Any, path: str, out: Problems) -> list[Any] | None:
    if not isinstance(value, list):
        out.append(f"{path}: must be an array, got {_kind(value)}")
        return None
    return value


# -- Yespo web tracker (spec 003) ------------------------------------------------------

# eventName -> the key of its event body (None: GeneralInfo only).  eS.JS and the spec's
# example send ProductImpressions with the singular body key ProductImpression.
YESPO_TRACKER_BODY_KEYS: dict[str, str | None] = {
    "ProductPage": "ProductPage",
    "StatusCart": "StatusCart",
    "AddToWishlist": "AddToWishlist",
    "PurchasedItems": "PurchasedItems",
    "ProductImpressions": "ProductImpression",
    "CategoryPage": "CategoryPage",
    "CustomerData": None,
    "SearchRequest": "SearchRequest",
    "ProductUpdate": "ProductUpdate",
}
_GENERAL_INFO_STRINGS = (
    "externalCustomerId",
    "user_phone",
    "user_email",
    "user_name",
    "user_es_contact_id",
)


def check_yespo_tracker(body: Any) -> Problems:
    """``POST /api/v2``: ``GeneralInfo`` plus exactly the event body its eventName names."""
    out: Problems = []
    root = _object(body, "body", out)
    if root is None:
        return out
    info = _object(root.get("GeneralInfo"), "GeneralInfo", out) if "GeneralInfo" in root else None
    if "GeneralInfo" not in root:
        out.append("GeneralInfo: required")
    if info is None:
        return out
    name = info.get("eventName")
    _need_string(info, "eventName", "GeneralInfo", out)
    _need_string(info, "siteId", "GeneralInfo", out)
    for key in _GENERAL_INFO_STRINGS:
        _opt_string(info, key, "GeneralInfo", out)
    if "datetime" in info:
        stamp = info["datetime"]
        if not isinstance(stamp, int) or isinstance(stamp, bool):
            out.append(f"GeneralInfo.datetime: must be an integer (epoch ms), got {_kind(stamp)}")
        elif not _MS_MIN <= stamp < _MS_MAX:
            out.append(f"GeneralInfo.datetime: {stamp} is not an epoch time in milliseconds")
    if name != "ProductUpdate":  # the spec's ProductUpdate example carries no visitor
        if "cookies" not in info:
            out.append("GeneralInfo.cookies: required (with the sc visitor cookie)")
        elif yespo_tracker_sc(body) is None:
            out.append("GeneralInfo.cookies.sc: required, a non-empty string")
    if not isinstance(name, str) or name not in YESPO_TRACKER_BODY_KEYS:
        if isinstance(name, str):
            known = ", ".join(YESPO_TRACKER_BODY_KEYS)
            out.append(f"GeneralInfo.eventName: unknown event {name!r} (known: {known})")
        return out
    body_key = YESPO_TRACKER_BODY_KEYS[name]
    others = [
        k for k in root
        if k not in ("GeneralInfo", body_key, "TrackedOrderId")
        and (k in YESPO_TRACKER_BODY_KEYS.values() or k in YESPO_TRACKER_BODY_KEYS)
    ]
    for key in others:
        out.append(f"{key}: unexpected event body in a {name} request (one event per request)")
    if body_key is None:
        return out
    if body_key not in root:
        hint = " (singular, as in the spec)" if body_key == "ProductImpression" else ""
        out.append(f"{body_key}: required for eventName {name}{hint}")
        return out
    _YESPO_TRACKER_BODIES[name](root[body_key], body_key, out)
    if name == "PurchasedItems" and "TrackedOrderId" in root:
        _opt_string(root, "TrackedOrderId", "body", out)
    return out


def _lines(value: Any, path: str, out: Problems, *, at_least_one: str = ""
           ) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(path, object)`` for each object in the array ``value``; problems for the rest."""
    items = _array(value, path, out)
    if items is not None and not items and at_least_one:
        out.append(f"{path}: {at_least_one}")
    for i, item in enumerate(items or []):
        where = f"{path}[{i}]"
        line = _object(item, where, out)
        if line is not None:
            yield where, line


def _tracker_product_page(value: Any, path: str, out: Problems) -> None:
    event = _object(value, path, out)
    if event is None:
        return
    product = _object(event.get("Product"), f"{path}.Product", out)
    if product is not None:
        _need_string(product, "productKey", f"{path}.Product", out)
        _need_price(product, "price", f"{path}.Product", out)
        _opt_flag(product, "isInStock", f"{path}.Product", out)
        _tags(product, f"{path}.Product", out)
    _tags(event, path, out)


def _tracker_status_cart(value: Any, path: str, out: Problems) -> None:
    event = _object(value, path, out)
    if event is None:
        return
    _need_string(event, "GUID", path, out)
    for where, line in _lines(event.get("Products"), f"{path}.Products", out):
        _need_string(line, "productKey", where, out)
        _need_price(line, "price", where, out)
        _need_quantity(line, "quantity", where, out)
        if "discount" in line and not (
            _is_number(line["discount"]) or _is_numeric_string(line["discount"])
        ):
            out.append(f"{where}.discount: must be a number or numeric string")
        _opt_string(line, "price_currency_code", where, out)
        _tags(line, where, out)
    _tags(event, path, out)


def _tracker_purchased(value: Any, path: str, out: Problems) -> None:
    event = _object(value, path, out)
    if event is None:
        return
    _need_string(event, "OrderNumber", path, out)
    for where, line in _lines(event.get("Products"), f"{path}.Products", out,
                              at_least_one="a purchase needs at least one product"):
        _need_string(line, "product_id", where, out)
        _need_price(line, "unit_price", where, out)
        _need_quantity(line, "quantity", where, out)
    _tags(event, path, out)


def _tracker_impressions(value: Any, path: str, out: Problems) -> None:
    event = _object(value, path, out)
    if event is None:
        return
    for where, line in _lines(event.get("Products"), f"{path}.Products", out):
        _need_string(line, "product_id", where, out)
        _need_string(line, "container_type", where, out)
    _tags(event, path, out)


def _tracker_category(value: Any, path: str, out: Problems) -> None:
    event = _object(value, path, out)
    if event is None:
        return
    category = _object(event.get("Category"), f"{path}.Category", out)
    if category is not None:
        _need_string(category, "categoryKey", f"{path}.Category", out)
    _tags(event, path, out)


def _tracker_search(value: Any, path: str, out: Problems) -> None:
    event = _object(value, path, out)
    if event is None:
        return
    if not isinstance(event.get("search"), str):
        out.append(f"{path}.search: required, a string")
    _opt_flag(event, "isFound", path, out)


def _tracker_product_update(value: Any, path: str, out: Problems) -> None:
    for where, line in _lines(value, path, out, at_least_one="at least one product"):
        if "product_id" not in line:
            out.append(f"{where}.product_id: required")
        elif not (isinstance(line["product_id"], str) and line["product_id"]) and not (
            _is_int_like(line["product_id"])
        ):
            out.append(f"{where}.product_id: must be a product id")
        if "isInStock" not in line:
            out.append(f"{where}.isInStock: required (0 or 1)")
        _opt_flag(line, "isInStock", where, out)
        if "unit_price" in line and not (
            _is_number(line["unit_price"]) or _is_numeric_string(line["unit_price"])
        ):
            out.append(f"{where}.unit_price: must be a price")
        for key in ("name", "brand", "description", "imgurl", "url", "price_currency_code"):
            _opt_string(line, key, where, out)
        _tags(line, where, out)


_YESPO_TRACKER_BODIES: dict[str, Callable[[Any, str, Problems], None]] = {
    "ProductPage": _tracker_product_page,
    "AddToWishlist": _tracker_product_page,
    "StatusCart": _tracker_status_cart,
    "PurchasedItems": _tracker_purchased,
    "ProductImpressions": _tracker_impressions,
    "CategoryPage": _tracker_category,
    "SearchRequest": _tracker_search,
    "ProductUpdate": _tracker_product_update,
}


def yespo_tracker_sc(body: Any) -> str | None:
    """The visitor's ``sc`` cookie: ``GeneralInfo.cookies.sc`` (or a cookie string)."""
    if not isinstance(body, dict) or not isinstance(body.get("GeneralInfo"), dict):
        return None
    cookies = body["GeneralInfo"].get("cookies")
    if isinstance(cookies, dict):
        sc = cookies.get("sc")
        return sc if isinstance(sc, str) and sc.strip() else None
    if isinstance(cookies, str) and cookies.strip():
        for part in cookies.split(";"):
            name, _, value = part.strip().partition("=")
            if name == "sc" and value:
                return value
        return None if "=" in cookies else cookies.strip()
    return None


# -- Yespo generic events (spec 001) ---------------------------------------------------

# Params whose string value is itself JSON (spec 001's examples).
YESPO_JSON_PARAMS = frozenset({"items", "products", "product", "page", "category"})
# Without keyValue, one of these params identifies the contact (api-facts.md).
YESPO_CONTACT_PARAMS = frozenset(
    {"contactid", "externalcustomerid", "email", "phone", "pushtoken"}
)
_YESPO_ORDER_REQUIRED = ("externalOrderId", "status", "date", "totalCost")


def check_yespo_event(body: Any) -> Problems:
    """``POST /api/v1/event``: ``eventTypeKey``, ``keyValue``, ``params[{name, value}]``."""
    out: Problems = []
    root = _object(body, "body", out)
    if root is None:
        return out
    key = root.get("eventTypeKey")
    if not isinstance(key, str) or not key.strip():
        out.append("eventTypeKey: required, a non-empty string")
    elif len(key) > YESPO_EVENT_TYPE_MAX:
        out.append(f"eventTypeKey: at most {YESPO_EVENT_TYPE_MAX} characters, got {len(key)}")
    key_value = root.get("keyValue")
    if key_value is not None:
        if not isinstance(key_value, str) or not key_value.strip():
            out.append("keyValue: must be a non-empty string")
        elif len(key_value) > YESPO_KEY_VALUE_MAX:
            out.append(
                f"keyValue: at most {YESPO_KEY_VALUE_MAX} characters, got {len(key_value)}"
            )
    params: dict[str, str] = {}
    raw_params = root.get("params", [])
    plist = _array(raw_params, "params", out)
    for i, item in enumerate(plist or []):
        where = f"params[{i}]"
        param = _object(item, where, out)
        if param is None:
            continue
        name, value = param.get("name"), param.get("value")
        if not isinstance(name, str) or not name:
            out.append(f"{where}.name: required, a non-empty string")
            continue
        if not isinstance(value, str):
            out.append(f"{where}.value ({name}): must be a string, got {_kind(value)}")
            continue
        if name in params:
            out.append(f"{where}.name: duplicate parameter {name!r}")
        params[name] = value
        if name in YESPO_JSON_PARAMS:
            try:
                json.loads(value)
            except json.JSONDecodeError as err:
                out.append(f"{where}.value ({name}): not valid JSON ({err.msg})")
    if key_value is None and not any(n.lower() in YESPO_CONTACT_PARAMS for n in params):
        out.append(
            "keyValue: required unless params hold contactId, externalCustomerId, email, "
            "phone or pushToken"
        )
    if isinstance(key, str):
        for problem in _yespo_event_rules(key, params):
            out.append(problem)
    return out


def _json_param(params: Mapping[str, str], name: str) -> Any:
    try:
        return json.loads(params[name])
    except (KeyError, ValueError):
        return None


def _yespo_event_rules(key: str, params: Mapping[str, str]) -> Problems:
    """The per-event parameters spec 001 names."""
    out: Problems = []
    if key == "orderCreated":
        for name in _YESPO_ORDER_REQUIRED:
            if not params.get(name):
                out.append(f"params.{name}: required for orderCreated")
        if params.get("totalCost") and not _is_numeric_string(params["totalCost"]):
            out.append("params.totalCost: must be a number")
    elif key in ("orderUpdated", "orderDelivered", "orderCancelled"):
        if not params.get("externalOrderId"):
            out.append(f"params.externalOrderId: required for {key}")
    elif key == "pageViewed":
        page = _json_param(params, "page")
        if not isinstance(page, dict) or not isinstance(page.get("location"), str):
            out.append('params.page: required, JSON {"location": "<url>"}')
    elif key == "productViewed":
        product = _json_param(params, "product")
        if not isinstance(product, dict) or not isinstance(product.get("productId"), str):
            out.append('params.product: required, JSON {"productId": "...", "price": ...}')
        elif "price" in product and not _is_number(product["price"]):
            out.append("params.product.price: must be a number")
    elif key == "productCategoryViewed":
        category = _json_param(params, "category")
        if not isinstance(category, dict) or not isinstance(
            category.get("productCategoryId"), str
        ):
            out.append('params.category: required, JSON {"productCategoryId": "..."}')
    elif key == "cartUpdated":
        if not params.get("recycleStateId"):
            out.append("params.recycleStateId: required for cartUpdated")
        if "products" in params:
            products = _json_param(params, "products")
            if not isinstance(products, list):
                out.append("params.products: must be a JSON array")
            else:
                for i, line in enumerate(products):
                    if not isinstance(line, dict) or not isinstance(line.get("productId"), str):
                        out.append(f"params.products[{i}].productId: required, a string")
                    elif "quantity" in line and not _is_number(line["quantity"]):
                        out.append(f"params.products[{i}].quantity: must be a number")
    return out


# -- Customer.io Data Pipelines (spec 002) ---------------------------------------------

CUSTOMERIO_CALLS = frozenset({"track", "identify", "page", "screen", "group", "alias", "batch"})


def check_customerio(call: str, body: Any) -> Problems:
    """One Data Pipelines call (``track``, ``identify``, ``page``, ... or ``batch``)."""
    if call == "batch":
        return _check_customerio_batch(body)
    return check_customerio_message(call, body, "body")


def _check_customerio_batch(body: Any) -> Problems:
    out: Problems = []
    root = _object(body, "body", out)
    if root is None:
        return out
    batch = _array(root.get("batch"), "batch", out)
    if batch is not None and not batch:
        out.append("batch: must hold at least one message")
    for i, message in enumerate(batch or []):
        where = f"batch[{i}]"
        if not isinstance(message, dict):
            out.append(f"{where}: must be an object, got {_kind(message)}")
            continue
        call = message.get("type")
        if call not in CUSTOMERIO_CALLS or call == "batch":
            out.append(f"{where}.type: must be track, identify, page, screen, group or alias")
            continue
        size = len(json.dumps(message, separators=(",", ":")).encode())
        if size > CUSTOMERIO_MESSAGE_MAX_BYTES:
            out.append(f"{where}: {size} bytes, over the 32 KB per-message limit")
        out.extend(check_customerio_message(call, message, where))
    return out


def check_customerio_message(call: str, body: Any, path: str = "body") -> Problems:
    out: Problems = []
    message = _object(body, path, out)
    if message is None:
        return out
    prefix = "" if path == "body" else f"{path}."
    if "type" in message and message["type"] != call:
        out.append(f"{prefix}type: {message['type']!r} sent to the /{call} endpoint")
    has_user = "userId" in message and message["userId"] is not None
    has_anon = "anonymousId" in message and message["anonymousId"] is not None
    for key in ("userId", "anonymousId"):
        if key in message and message[key] is not None and (
            not isinstance(message[key], str) or not message[key]
        ):
            out.append(f"{prefix}{key}: must be a non-empty string")
    if not has_user and not has_anon:
        out.append(f"{prefix}userId: one of userId or anonymousId is required")
    if "timestamp" in message and not _is_iso_datetime(message["timestamp"]):
        out.append(f"{prefix}timestamp: must be an ISO-8601 date-time")
    if "messageId" in message and not (
        isinstance(message["messageId"], str) and message["messageId"]
    ):
        out.append(f"{prefix}messageId: must be a non-empty string")
    for key in ("properties", "traits", "context", "integrations"):
        if key in message and not isinstance(message[key], dict):
            out.append(f"{prefix}{key}: must be an object, got {_kind(message[key])}")
    if call == "track":
        out.extend(_check_track(message, prefix))
    elif call in ("page", "screen"):
        _opt_string(message, "name", path, out)
    elif call == "group" and not isinstance(message.get("groupId"), str):
        out.append(f"{prefix}groupId: required for group calls")
    elif call == "alias" and not isinstance(message.get("previousId"), str):
        out.append(f"{prefix}previousId: required for alias calls")
    return out


def _check_track(message: Mapping[str, Any], prefix: str) -> Problems:
    name = message.get("event")
    if not isinstance(name, str) or not name.strip():
        return [f"{prefix}event: required, a non-empty string"]
    return track_problems(message, prefix)


def _is_iso_datetime(value: Any) -> bool:
    if not isinstance(value, str) or "T" not in value:
        return False
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def customerio_messages(call: str, body: Any) -> list[tuple[str, Any]]:
    """The (call, message) pairs a request carries: one, or each item of a batch."""
    if call != "batch":
        return [(call, body)]
    if isinstance(body, dict) and isinstance(body.get("batch"), list):
        return [
            (str(m.get("type", "?")) if isinstance(m, dict) else "?", m) for m in body["batch"]
        ]
    return [(call, body)]


# -- Orangepill / Infobip People (spec 000) --------------------------------------------

_PERSON_STRINGS = (
    "firstName", "lastName", "middleName", "address", "city", "country", "gender",
    "birthDate", "profilePicture", "preferredLanguage", "externalId",
)
_EVENT_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,99}$")


def check_orangepill_event(event_name: str, body: Any) -> Problems:
    """``POST /v1/identities/:id/person/event/:event``: ``{"data": {"properties": {}}}``."""
    out: Problems = []
    if not _EVENT_NAME_RE.match(event_name):
        out.append(f"path.event: {event_name!r} is not an event definition id")
    root = _object(body, "body", out)
    if root is None:
        return out
    data = _object(root.get("data"), "data", out) if "data" in root else None
    if "data" not in root:
        out.append("data: required, an object holding properties")
        return out
    if data is None:
        return out
    if "properties" not in data:
        out.append("data.properties: required, an object")
    else:
        _object(data["properties"], "data.properties", out)
    return out


def check_orangepill_person(body: Any, path: str = "body") -> Problems:
    """``PATCH /v1/identities/:id/person``: the person fields to change."""
    out: Problems = []
    root = _object(body, path, out)
    if root is None:
        return out
    if not root:
        out.append(f"{path}: an update needs at least one field")
    for key in _PERSON_STRINGS:
        _opt_string(root, key, path, out)
    gender = root.get("gender")
    if isinstance(gender, str) and gender not in ("MALE", "FEMALE"):
        out.append(f"{path}.gender: must be MALE or FEMALE, got {gender!r}")
    birth = root.get("birthDate")
    if isinstance(birth, str) and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", birth):
        out.append(f"{path}.birthDate: must be YYYY-MM-DD")
    if "tags" in root and not _is_string_list(root["tags"]):
        out.append(f"{path}.tags: must be an array of strings")
    contact = root.get("contactInformation")
    if isinstance(contact, dict):
        for kind, field_name in (("email", "address"), ("phone", "number")):
            entries = contact.get(kind, [])
            if not isinstance(entries, list) or not all(
                isinstance(e, dict) and isinstance(e.get(field_name), str) for e in entries
            ):
                out.append(
                    f"{path}.contactInformation.{kind}: must be a list of "
                    f'{{"{field_name}": "..."}} objects'
                )
    for key in ("contactInformation", "customAttributes", "data"):
        if key in root and not isinstance(root[key], dict):
            out.append(f"{path}.{key}: must be an object, got {_kind(root[key])}")
    return out


_IDENTITY_TYPES = ("person", "neutral", "company")


def check_orangepill_create_person(body: Any) -> Problems:
    """``POST /v1/identities/person`` (spec 000 "Create Person and Identity"): ``type``
    one of person/neutral/company (api-facts), optional ``country`` (2 letters) and
    ``currency`` (3 letters), defaulting to the realm's, optional ``alias`` (text),
    ``company``, ``data`` (an object), and ``person``: the Infobip person, checked as
    an update's fields are."""
    out: Problems = []
    root = _object(body, "body", out)
    if root is None:
        return out
    kind = root.get("type")
    if kind is not None and kind not in _IDENTITY_TYPES:
        out.append(f"body.type: must be one of {', '.join(_IDENTITY_TYPES)}, got {kind!r}")
    country = root.get("country")
    if country is not None and not (isinstance(country, str)
                                    and re.fullmatch(r"[A-Z]{2}", country)):
        out.append(f"body.country: must be a 2-letter country code, got {country!r}")
    currency = root.get("currency")
    if currency is not None and not (isinstance(currency, str)
                                     and re.fullmatch(r"[A-Z]{3}", currency)):
        out.append(f"body.currency: must be a 3-letter currency code, got {currency!r}")
    _opt_string(root, "alias", "body", out)
    if "data" in root and not isinstance(root["data"], dict):
        out.append(f"body.data: must be an object, got {_kind(root['data'])}")
    if "person" not in root:
        out.append("body.person: required, the person to create")
        return out
    out.extend(check_orangepill_person(root["person"], "body.person"))
    return out
