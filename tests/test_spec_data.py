"""The spec examples kept in ``tests/data/specs`` are the vendors' examples, unchanged.

These tests read the vendors' prose documents, which a clone of the repository does not
have; each one skips, with the reason, when the documents are not found.
"""

from __future__ import annotations

import json

import spec_examples
import spec_extract


def test_yespo_tracker_examples_match_spec_003() -> None:
    assert spec_extract.tracker_examples() == spec_examples.tracker_examples()


def test_yespo_events_examples_match_spec_001() -> None:
    assert spec_extract.events_v1_examples() == spec_examples.events_v1_examples()


def test_orangepill_examples_match_spec_000() -> None:
    assert spec_extract.orangepill_examples() == spec_examples.orangepill_examples()


def test_packaged_customerio_openapi_is_spec_002() -> None:
    assert json.loads(spec_extract.spec_text(spec_extract.CUSTOMERIO)) == (
        spec_examples.customerio_openapi())
