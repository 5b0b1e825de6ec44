"""What the sink remembers: one record per event received, secrets masked.

A request carrying several events (a Customer.io batch) becomes several records that
share a ``request_id``.  Records live in a bounded in-memory ring (the inspector and the
Python API read it) and, when asked, are appended to a JSON-lines file.  Credentials
never enter a record: ``Authorization`` and ``x-api-key`` values are replaced before
anything is stored, and the secret parts seen in those headers are also scrubbed from
the rest of the record in case a body or path echoes them.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, deque
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from .apis import Answer, Incoming, basic_credentials

REDACTED = "<redacted>"
SECRET_HEADERS = frozenset({"authorization", "x-api-key", "proxy-authorization", "cookie"})
MIN_SCRUBBED_SECRET = 4


def secret_values(headers: dict[str, str]) -> set[str]:
    """The credential strings inside a request's headers (Basic user/password, keys)."""
    found: set[str] = set()
    auth = headers.get("authorization", "")
    creds = basic_credentials(auth)
    if creds:
        found.update(part for part in creds if part)
    if auth:
        found.add(auth.split(" ", 1)[-1].strip())
    for name in ("x-api-key", "proxy-authorization"):
        if headers.get(name):
            found.add(headers[name].strip())
    return {s for s in found if len(s) >= MIN_SCRUBBED_SECRET}


def masked_headers(headers: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in headers.items():
        if name.lower() in SECRET_HEADERS:
            scheme = value.split(" ", 1)[0] if " " in value else ""
            out[name] = f"{scheme} {REDACTED}".strip() if name == "authorization" else REDACTED
        else:
            out[name] = value
    return out


def _scrub(value: Any, secrets: set[str]) -> Any:
    if not secrets:
        return value
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, list):
        return [_scrub(v, secrets) for v in value]
    if isinstance(value, dict):
        return {_scrub(k, secrets): _scrub(v, secrets) for k, v in value.items()}
    return value


def _response_view(answer: Answer) -> Any:
    if not answer.body:
        return None
    text = answer.body.decode("utf-8", "replace")
    if answer.content_type.startswith("application/json"):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def _raw_body_view(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        text = body.decode("utf-8", "replace")
        return text if len(text) <= 4000 else text[:4000] + "…"


def build_records(
    request_id: int,
    api: str,
    incoming: Incoming,
    answer: Answer | None,
    *,
    fault: str | None = None,
    status: int | None = None,
) -> list[dict[str, Any]]:
    """The records for one request (``answer`` None: refused before any answer)."""
    now = time.time()
    stamp = datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="milliseconds")
    stamp = stamp.replace("+00:00", "Z")
    secrets = secret_values(incoming.headers)
    shared: dict[str, Any] = {
        "request_id": request_id,
        "time": stamp,
        "ts": now,
        "api": api,
        "method": incoming.method,
        "path": incoming.path,
        "headers": masked_headers(incoming.headers),
        "bytes": len(incoming.body),
        "status": status if status is not None else (answer.status if answer else None),
        "response": _response_view(answer) if answer else None,
        "fault": fault,
        "duplicate": bool(answer and answer.duplicate),
        "request_problems": list(answer.problems) if answer else [],
    }
    messages = answer.messages if answer else []
    records: list[dict[str, Any]] = []
    if not messages:
        problems = list(answer.problems) if answer else []
        records.append({
            **shared, "call": "", "event": "?", "body": _raw_body_view(incoming.body),
            "ids": [], "visitor": None, "problems": problems, "valid": not problems,
            "batch": None,
        })
    for index, message in enumerate(messages):
        problems = list(shared["request_problems"]) + list(message.problems)
        records.append({
            **shared,
            "call": message.call,
            "event": message.event,
            "body": message.body,
            "ids": list(message.ids),
            "visitor": _display_visitor(message.ids),
            "problems": problems,
            "valid": not problems,
            "batch": {"index": index, "size": len(messages)} if len(messages) > 1 else None,
        })
    return [_scrub(r, secrets) for r in records]


def _display_visitor(ids: list[str]) -> str | None:
    for prefix in ("sc:", "email:", "user:", "phone:", "identity:"):
        for item in ids:
            if item.startswith(prefix):
                return item.split(":", 1)[1]
    return None


class Recorder:
    """A bounded, thread-safe log of records with a wait-for-new primitive (for SSE)."""

    def __init__(self, limit: int = 5000, path: str | Path | None = None) -> None:
        self._records: deque[dict[str, Any]] = deque(maxlen=limit)
        self._cond = threading.Condition()
        self._next_id = 1
        self._next_request = 1
        self._closed = False
        self._cleared = 0  # bumped by clear(); readers reset their view
        self._file: IO[str] | None = None
        self.path = Path(path) if path else None
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")

    def new_request_id(self) -> int:
        with self._cond:
            rid = self._next_request
            self._next_request += 1
            return rid

    def add(self, records: list[dict[str, Any]]) -> None:
        with self._cond:
            for record in records:
                record["id"] = self._next_id
                self._next_id += 1
                self._records.append(record)
                if self._file:
                    self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
            if self._file:
                self._file.flush()
            self._cond.notify_all()

    def since(self, after: int = 0) -> list[dict[str, Any]]:
        with self._cond:
            return [r for r in self._records if r["id"] > after]

    def all(self) -> list[dict[str, Any]]:
        with self._cond:
            return list(self._records)

    @property
    def last_id(self) -> int:
        with self._cond:
            return self._next_id - 1

    @property
    def generation(self) -> int:
        with self._cond:
            return self._cleared

    def wait(self, after: int, generation: int, timeout: float) -> list[dict[str, Any]] | None:
        """Records newer than ``after``; waits up to ``timeout``.  None once closed or
        cleared since ``generation`` (the reader should start over)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if self._closed or self._cleared != generation:
                    return None
                fresh = [r for r in self._records if r["id"] > after]
                remaining = deadline - time.monotonic()
                if fresh or remaining <= 0:
                    return fresh
                self._cond.wait(remaining)

    def clear(self) -> None:
        with self._cond:
            self._records.clear()
            self._cleared += 1
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            if self._file:
                self._file.close()
                self._file = None
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed


def summarize(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per API: HTTP requests, events, valid/invalid events, faults, duplicates, by event."""
    out: dict[str, dict[str, Any]] = {}
    seen_requests: dict[str, set[int]] = {}
    for record in records:
        api = record["api"]
        entry = out.setdefault(api, {
            "requests": 0, "events": 0, "valid": 0, "invalid": 0, "faults": 0,
            "duplicates": 0, "by_event": Counter(), "problems": Counter(),
        })
        requests = seen_requests.setdefault(api, set())
        if record["request_id"] not in requests:
            requests.add(record["request_id"])
            entry["requests"] += 1
            if record["fault"]:
                entry["faults"] += 1
        entry["events"] += 1
        entry["valid" if record["valid"] else "invalid"] += 1
        if record["duplicate"]:
            entry["duplicates"] += 1
        entry["by_event"][record["event"]] += 1
        for problem in record["problems"]:
            entry["problems"][problem] += 1
    for entry in out.values():
        entry["by_event"] = dict(sorted(entry["by_event"].items()))
        entry["problems"] = dict(entry["problems"].most_common())
    return out
