"""Retry decisions and batch packing: pure functions, no network."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from cdptrack.delivery.batching import MAX_BATCH_BYTES, batch_body, pack
from cdptrack.delivery.retry import RetryPolicy, classify, parse_retry_after
from cdptrack.destinations.base import WireRequest


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_2xx_is_success(status: int) -> None:
    assert classify(status) == "ok"


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 599])
def test_network_like_statuses_are_retried(status: int) -> None:
    assert classify(status) == "retry"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 413, 422, 301])
def test_other_statuses_are_final(status: int) -> None:
    assert classify(status) == "dead"


def test_retry_after_in_seconds() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") == 0.0


def test_retry_after_as_http_date() -> None:
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
    later = format_datetime(now + timedelta(seconds=42), usegmt=True)
    assert parse_retry_after(later, now=now) == pytest.approx(42.0)
    earlier = format_datetime(now - timedelta(seconds=42), usegmt=True)
    assert parse_retry_after(earlier, now=now) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "nan"])
def test_unreadable_retry_after_is_ignored(value: str | None) -> None:
    assert parse_retry_after(value) is None


def test_retry_after_is_clamped() -> None:
    policy = RetryPolicy(max_retry_after=300.0)
    assert policy.delay(1, retry_after=86_400.0) == 300.0
    assert policy.delay(1, retry_after=2.0) == 2.0


def test_backoff_grows_is_jittered_and_capped() -> None:
    policy = RetryPolicy(backoff=0.5, max_backoff=30.0)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (10, 30.0), (60, 30.0)]:
        waits = {policy.delay(attempt) for _ in range(50)}
        assert all(ceiling / 2 <= w <= ceiling for w in waits)
        assert len(waits) > 1  # jittered: a fleet does not retry in lock-step
    assert RetryPolicy(backoff=0.5, jitter=False).delay(3) == 2.0


def test_total_retry_time_is_bounded() -> None:
    policy = RetryPolicy(max_retry_time=10.0)
    assert policy.allows(elapsed=4.0, next_delay=5.0)
    assert not policy.allows(elapsed=6.0, next_delay=5.0)


def _request(i: int, size: int) -> WireRequest:
    return WireRequest(destination="customerio", method="POST", url="http://x/v1/track",
                       headers={"Authorization": "Basic abc"},
                       json={"type": "track", "messageId": str(i), "pad": "x" * size},
                       message_id=str(i), batch_url="http://x/v1/batch")


def test_batches_stay_under_the_byte_limit_and_keep_order() -> None:
    requests = [(_request(i, 30_000), i) for i in range(40)]  # ~1.2 MB in all
    batches = pack(requests)
    assert len(batches) > 1
    assert [i for batch in batches for _, i in batch] == list(range(40))
    for batch in batches:
        assert len(batch_body([r for r, _ in batch])) <= MAX_BATCH_BYTES


def test_batch_body_is_the_single_bodies_in_a_batch_array() -> None:
    import json

    body = json.loads(batch_body([_request(1, 1), _request(2, 1)]))
    assert [m["messageId"] for m in body["batch"]] == ["1", "2"]
    assert all(m["type"] == "track" for m in body["batch"])


def test_requests_with_different_credentials_are_not_batched_together() -> None:
    a, b = _request(1, 1), _request(2, 1)
    b = WireRequest(**{**{f: getattr(b, f) for f in b.__dataclass_fields__},
                       "headers": {"Authorization": "Basic other"}})
    assert len(pack([(a, 1), (b, 2)])) == 2
