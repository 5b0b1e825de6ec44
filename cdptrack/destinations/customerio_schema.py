"""Customer.io ``track`` messages checked against the OpenAPI document of spec 002.

One implementation, used twice: by the Customer.io renderer, so that a message the API
would refuse is never queued (it is :class:`~.base.NotSent` with
``invalid_field:<field>``), and by the local sink (:mod:`cdptrack.sink.validate`), which
reports every problem of what it receives.  The document ships with the package
(``customerio-openapi.json``, the ``components.schemas`` of spec 002's OpenAPI file).

The spec's 28 semantic e-commerce events (``Product Viewed``, ``Order Completed``, ...)
each have a known (``userId``) and an anonymous (``anonymousId``) form; any other event
name is a custom event whose properties are free.  The semantic schemas constrain the
JSON *types* of a message's fields (besides ``event``/``type``, which the renderer
writes itself), so whether a rendered message is valid depends only on its event name,
its ids and the shape of its properties (keys and value types).  :func:`first_problem`
therefore validates each shape once and remembers the answer (a bounded cache): about
2-4 µs per message after the first of its shape (``benchmarks/bench_customerio_schema.py``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft7Validator  # type: ignore[import-untyped,unused-ignore]

# Shapes remembered by first_problem; the cache is emptied when it is full.
SHAPE_CACHE_SIZE = 4096


@cache
def customerio_openapi() -> dict[str, Any]:
    """The Customer.io OpenAPI document shipped with the package (spec 002)."""
    text = resources.files("cdptrack.destinations").joinpath(
        "customerio-openapi.json").read_text("utf-8")
    doc: dict[str, Any] = json.loads(text)
    return doc


@cache
def semantic_validators() -> dict[str, list[tuple[str, Any]]]:
    """Semantic event name -> ``[(variant title, validator)]`` for its known and
    anonymous forms.

    The ``/track`` body is a ``oneOf`` over the 28 semantic events, each itself a
    ``oneOf`` of a known (``userId``) and an anonymous (``anonymousId``) form.  Neither
    form forbids the other's id, so a body with both ids (what Segment-style SDKs send
    after sign-in) matches both forms and a literal ``oneOf`` would reject it; the check
    therefore picks the event's schema by name and accepts a body any form accepts.
    """
    doc = customerio_openapi()
    out: dict[str, list[tuple[str, Any]]] = {}
    for name, schema in doc["components"]["schemas"].items():
        if not name.endswith("_event") or "oneOf" not in schema:
            continue
        variants: list[tuple[str, Any]] = []
        event_name: str | None = None
        for i, variant in enumerate(schema["oneOf"]):
            enum = variant.get("properties", {}).get("event", {}).get("enum") or [None]
            event_name = enum[0]
            root = {"$ref": f"#/components/schemas/{name}/oneOf/{i}",
                    "components": doc["components"]}
            variants.append((variant.get("title", name), Draft7Validator(root)))
        if event_name:
            out[event_name] = variants
    return out


def semantic_event_names() -> frozenset[str]:
    """The 28 semantic e-commerce event names spec 002 defines a schema for."""
    return frozenset(semantic_validators())


def track_problems(message: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Every way a ``track`` message breaks its semantic event's schema, each
    ``"<prefix><path>: <what is wrong>"`` (``properties.products[3].price: 'x' is not
    of type 'number'``); for a message both forms refuse, the form with fewer problems
    is reported.  An empty list for a valid message or a custom event."""
    name = message.get("event")
    variants = semantic_validators().get(name) if isinstance(name, str) else None
    if variants is None:
        return []
    best: list[str] | None = None
    for _title, validator in variants:
        errors = sorted(validator.iter_errors(message), key=lambda e: list(e.path))
        if not errors:
            return []
        described = [describe_error(e, prefix) for e in errors]
        if best is None or len(described) < len(best):
            best = described
    return best or []


def describe_error(error: Any, prefix: str = "") -> str:
    """A jsonschema error as ``"<prefix><path>: <message>"``."""
    return f"{prefix}{error_path(error) or 'body'}: {error.message}"


def error_path(error: Any) -> str:
    """Where a jsonschema error is: ``properties.products[3].price``."""
    where = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in error.path)
    return where.replace(".[", "[")


_shapes: dict[tuple[Any, ...], tuple[str, str] | None] = {}


def first_problem(message: Mapping[str, Any]) -> tuple[str, str] | None:
    """``None`` when the ``track`` message is what spec 002 accepts, else ``(field,
    detail)``: the field named without list indices and without the ``properties.``
    prefix (``products.price``: a bounded set, fit for a counter's name) and the first
    problem spelt out (``properties.products[3].price: 'x' is not of type 'number'``).

    Validates each (event, ids, properties shape) once; see the module docstring."""
    name = message.get("event")
    if not isinstance(name, str) or name not in semantic_validators():
        return None
    key = (name, "userId" in message, "anonymousId" in message,
           _shape(message.get("properties")))
    if key in _shapes:
        return _shapes[key]
    found = _first_problem(message)
    if len(_shapes) >= SHAPE_CACHE_SIZE:
        _shapes.clear()
    _shapes[key] = found
    return found


def _first_problem(message: Mapping[str, Any]) -> tuple[str, str] | None:
    best: list[Any] | None = None
    for _title, validator in semantic_validators()[message["event"]]:
        errors = sorted(validator.iter_errors(message), key=lambda e: list(e.path))
        if not errors:
            return None
        if best is None or len(errors) < len(best):
            best = errors
    assert best
    first = best[0]
    parts = [str(p) for p in first.path if not isinstance(p, int)]
    if parts[:1] == ["properties"] and len(parts) > 1:
        parts = parts[1:]
    return ".".join(parts) or "body", describe_error(first)


def _shape(value: Any) -> Any:
    """What a value's validity depends on: its JSON type, and for objects and arrays
    the shapes inside (an object by its keys and their values' shapes, an array by its
    distinct item shapes).  A flat object (no nested object or array: most products)
    is read with C-level calls only."""
    kind = type(value)
    if kind is dict:
        kinds = tuple(map(type, value.values()))
        if dict in kinds or list in kinds:
            return (tuple(value), tuple(_shape(v) if k is dict or k is list else k
                                        for k, v in zip(kinds, value.values(), strict=True)))
        return (tuple(value), kinds)
    if kind is list:
        return ("[]", *dict.fromkeys(map(_shape, value)))
    return kind


__all__ = [
    "SHAPE_CACHE_SIZE",
    "customerio_openapi",
    "describe_error",
    "error_path",
    "first_problem",
    "semantic_event_names",
    "semantic_validators",
    "track_problems",
]
