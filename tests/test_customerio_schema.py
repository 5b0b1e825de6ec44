"""Customer.io output validated against the OpenAPI document of spec 002, for all 28
semantic e-commerce events, in the known (``userId``) and anonymous (``anonymousId``) forms.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7
from spec_examples import customerio_openapi

from cdptrack.config import Config
from cdptrack.destinations import customerio
from cdptrack.events import Event

CONFIG = Config(customerio_api_key="cio-key")
DOC_URI = "urn:customerio-openapi"


def schemas() -> dict[str, Any]:
    return dict(customerio_openapi()["components"]["schemas"])


def validator_for(schema_name: str) -> jsonschema.Draft7Validator:
    registry: Registry[Any] = Registry().with_resource(
        DOC_URI, Resource(contents=customerio_openapi(), specification=DRAFT7)
    )
    ref = {"$ref": f"{DOC_URI}#/components/schemas/{schema_name}"}
    return jsonschema.Draft7Validator(ref, registry=registry)


def semantic_events() -> list[tuple[str, str]]:
    """(schema name, event name) for every semantic event the spec defines."""
    out = []
    for name, schema in customerio_openapi()["components"]["schemas"].items():
        if name.endswith("_event"):
            out.append((name, schema["oneOf"][0]["properties"]["event"]["enum"][0]))
    return out


def example_properties(schema: dict[str, Any]) -> dict[str, Any]:
    """Build a properties object from the ``example`` values the spec gives."""
    if "$ref" in schema:
        schema = schemas()[schema["$ref"].rsplit("/", 1)[-1]]
    out: dict[str, Any] = {}
    for part in schema.get("allOf", []):
        out.update(example_properties(part))
    for key, prop in schema.get("properties", {}).items():
        if "example" in prop:
            out[key] = prop["example"]
        elif prop.get("type") == "array" and "$ref" in prop.get("items", {}):
            out[key] = [example_properties(prop["items"])]
    return out


def test_spec_defines_28_semantic_events() -> None:
    assert len(semantic_events()) == 28


@pytest.mark.parametrize("schema_name,event_name", semantic_events())
@pytest.mark.parametrize("visitor", [{"user_id": "user_12345", "sc": "ANON-1"},
                                     {"sc": "CDA68358-94FB-4D83-9655-3FEB3C4114A3"}],
                         ids=["known", "anonymous"])
def test_semantic_event_matches_schema(
    schema_name: str, event_name: str, visitor: dict[str, str]
) -> None:
    variant = customerio_openapi()["components"]["schemas"][schema_name]["oneOf"][0]
    properties = example_properties(variant["properties"]["properties"])
    event = Event.from_dict({"type": "track", "event": event_name, "visitor": visitor,
                             "properties": properties,
                             "context": {"ip": "203.0.113.9", "user_agent": "UA",
                                         "url": "https://shop.example/p/1"}})
    [request] = customerio.render(event, CONFIG)
    body = request.json
    errors = sorted(validator_for(schema_name).iter_errors(body), key=str)
    assert not errors, [e.message for e in errors]
    assert body["properties"] == properties
    if "user_id" in visitor:
        assert body["userId"] == "user_12345" and "anonymousId" not in body
    else:
        assert body["anonymousId"] == visitor["sc"] and "userId" not in body
    assert body["messageId"] == event.message_id
    assert body["context"]["userAgent"] == "UA"
    assert body["context"]["library"]["name"] == "cdptrack"


def test_cart_updated_becomes_added_and_removed_events_that_match_the_schema() -> None:
    event = Event.from_dict({
        "type": "track", "event": "Cart Updated", "visitor": {"sc": "S1"},
        "properties": {"cart_id": "c-1", "currency": "EUR",
                       "products": [{"product_id": "a", "quantity": 2, "price": "9.50"}],
                       "added": [{"product_id": "a", "quantity": 1, "price": "9.50"}],
                       "removed": [{"product_id": "b", "quantity": 1, "price": 3}]},
    })
    requests = customerio.render(event, CONFIG)
    assert [r.json["event"] for r in requests] == ["Product Added", "Product Removed"]
    schemas_ = ["product_added_event", "product_removed_event"]
    for request, schema in zip(requests, schemas_, strict=True):
        assert not list(validator_for(schema).iter_errors(request.json))
        assert request.json["properties"]["cart_id"] == "c-1"
    added = requests[0].json["properties"]
    assert (added["product_id"], added["quantity"], added["price"]) == ("a", 1, 9.5)
    # Each derived message has its own id, and the same one every time it is rendered.
    ids = [r.json["messageId"] for r in requests]
    assert len(set(ids)) == 2
    assert ids == [r.json["messageId"] for r in customerio.render(event, CONFIG)]
