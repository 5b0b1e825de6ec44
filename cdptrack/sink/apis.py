"""What each of the four APIs answers, decided from one request.

``SinkApis.answer(api, subpath, request)`` plays the API whose prefix the request came
in under: it checks authentication the way that API does, validates the body with
:mod:`cdptrack.sink.validate`, and returns an :class:`Answer` (status, headers, body)
together with what the inspector needs to show it (one :class:`Message` per event the
request carried, with its problems and the visitor ids found in it).  No sockets here:
the server module does the I/O.  The only state is Orangepill's idempotency store and
the person profiles PATCH requests build up, and the identities ``POST
/v1/identities/person`` created (found again by ``GET /v1/identities/persons?identifier=
...&type=EMAIL|PHONE``).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl

from ..config import CREDENTIAL_FIELDS, URL_FIELDS, env_name
from . import validate

# Path prefix on the sink -> API name (the ``cdptrack render`` destination names).
PREFIXES: dict[str, str] = {
    "/yespo-tracker": "yespo_tracker",
    "/yespo": "yespo_events",
    "/customerio": "customerio",
    "/orangepill": "orangepill",
}
# The base URL a shop configures for each API, relative to the sink's root.
BASE_PATHS: dict[str, str] = {
    "yespo_tracker": "/yespo-tracker/api/v2",
    "yespo_events": "/yespo/api/v1",
    "customerio": "/customerio/v1",
    "orangepill": "/orangepill/v1",
}
# The settings a shop uses to point each API at the sink.
CONFIG_NAMES: dict[str, str] = dict(URL_FIELDS)
ENV_NAMES: dict[str, str] = {api: env_name(field) for api, field in URL_FIELDS.items()}
API_NAMES: tuple[str, ...] = tuple(BASE_PATHS)
# Credentials a shop sends the sink with: a shop sends nothing to an API whose key (or
# Yespo site id) is unset, and the sink takes any non-empty key (never recording it).
DUMMY_CREDENTIALS: dict[str, str] = {
    env_name(field): "SINK" if field == "yespo_site_id" else "sink-key"
    for field in CREDENTIAL_FIELDS.values()
}

_ORANGEPILL_EVENT = re.compile(r"^/v1/identities/([^/]+)/person/event/([^/]+)/?$")
_ORANGEPILL_PERSON = re.compile(r"^/v1/identities/([^/]+)/person/?$")
_ORANGEPILL_CREATE = "/v1/identities/person"
IDEMPOTENCY_KEYS_KEPT = 10_000


def is_probe(api: str, subpath: str, method: str, body: bytes) -> bool:
    """Is this ``cdptrack doctor --live``'s probe, which checks URL and key and carries no
    event (an empty JSON object, an empty Customer.io batch, an Orangepill person list)?
    The sink answers it as the API would and records nothing."""
    if api == "orangepill":
        return method == "GET" and subpath.rstrip("/") == "/v1/identities/persons"
    if method != "POST":
        return False
    parsed, error = _parse_json(body)
    if error:
        return False
    return bool(parsed == ({"batch": []} if api == "customerio" else {}))


def split_prefix(path: str) -> tuple[str, str] | None:
    """``/customerio/v1/track`` -> (``customerio``, ``/v1/track``); None if no API."""
    for prefix in sorted(PREFIXES, key=len, reverse=True):
        if path == prefix or path.startswith(prefix + "/"):
            return PREFIXES[prefix], path[len(prefix):] or "/"
    return None


@dataclass(frozen=True, slots=True)
class Incoming:
    """One HTTP request as the sink received it (header names lower-case)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    query: str = ""  # the URL's query string, undecoded


@dataclass(slots=True)
class Message:
    """One event inside a request (a batch request carries several)."""

    call: str  # the API's own kind: track, identify, page, ... or the event route
    event: str  # a short label: "Product Viewed", "ProductPage", "orderCreated", ...
    body: Any
    problems: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)  # "sc:...", "user:...", "email:..."


@dataclass(slots=True)
class Answer:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    messages: list[Message] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # about the request as a whole
    duplicate: bool = False

    @property
    def valid(self) -> bool:
        return not self.problems and all(not m.problems for m in self.messages)


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _text(status: int, lines: list[str]) -> Answer:
    return Answer(status, ("\n".join(lines) + "\n").encode(), "text/plain; charset=utf-8")


def _parse_json(raw: bytes) -> tuple[Any, str | None]:
    if not raw.strip():
        return None, "body: empty, a JSON object is required"
    try:
        return json.loads(raw), None
    except (ValueError, UnicodeDecodeError) as err:
        return None, f"body: not valid JSON ({err})"


def _content_type_problem(request: Incoming) -> list[str]:
    ctype = request.headers.get("content-type", "")
    if ctype.split(";")[0].strip().lower() != "application/json":
        return [f"Content-Type: must be application/json, got {ctype or 'nothing'!r}"]
    return []


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """Decode ``Authorization: Basic ...`` into (user, password); None if absent/bad."""
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def _classify_key(value: str) -> str:
    if "@" in value:
        return f"email:{value.lower()}"
    if re.fullmatch(r"\+?[\d\s()-]{7,}", value):
        return f"phone:{re.sub(r'[^0-9]', '', value)}"
    return f"user:{value}"


def _add(ids: list[str], prefix: str, value: Any) -> None:
    if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
        text = str(value).strip()
        if prefix == "email":
            text = text.lower()
        elif prefix == "phone":
            text = re.sub(r"[^0-9]", "", text)
        item = f"{prefix}:{text}"
        if item not in ids:
            ids.append(item)


class SinkApis:
    """The four APIs' behaviour, with the little state they keep between requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idempotent: OrderedDict[str, Answer] = OrderedDict()
        self._persons: dict[str, dict[str, Any]] = {}
        # "email:<address>" / "phone:<digits>" -> the identity created with it.
        self._contacts: dict[str, str] = {}

    def reset(self) -> None:
        with self._lock:
            self._idempotent.clear()
            self._persons.clear()
            self._contacts.clear()

    def answer(self, api: str, subpath: str, request: Incoming) -> Answer:
        if api == "yespo_tracker":
            return self._yespo_tracker(subpath, request)
        if api == "yespo_events":
            return self._yespo_events(subpath, request)
        if api == "customerio":
            return self._customerio(subpath, request)
        return self._orangepill(subpath, request)

    # -- Yespo web tracker ------------------------------------------------------------

    def _yespo_tracker(self, subpath: str, request: Incoming) -> Answer:
        if subpath.rstrip("/") != "/api/v2":
            return _text(404, [f"no such endpoint: {subpath} (POST /api/v2)"])
        if request.method != "POST":
            return _method_not_allowed("POST")
        body, error = _parse_json(request.body)
        problems = _content_type_problem(request)
        if error:
            answer = _text(400, [error, *problems])
            answer.problems = [error, *problems]
            return answer
        message = Message("event", _tracker_label(body), body, validate.check_yespo_tracker(body))
        message.ids = _tracker_ids(body)
        all_problems = problems + message.problems
        answer = _text(400, all_problems) if all_problems else Answer(200, b"", "text/plain")
        answer.messages = [message]
        answer.problems = problems
        return answer

    # -- Yespo generic events ---------------------------------------------------------

    def _yespo_events(self, subpath: str, request: Incoming) -> Answer:
        if subpath.rstrip("/") != "/api/v1/event":
            return _text(404, [f"no such endpoint: {subpath} (POST /api/v1/event)"])
        if request.method != "POST":
            return _method_not_allowed("POST")
        creds = basic_credentials(request.headers.get("authorization"))
        if creds is None or not creds[1]:
            answer = _text(401, ["Unauthorized: Basic auth with the API key as password"])
            answer.problems = ["Authorization: Basic auth with the API key as password required"]
            answer.headers["WWW-Authenticate"] = 'Basic realm="yespo"'
            parsed, error = _parse_json(request.body)
            answer.messages = [] if error else self._yespo_event_messages(parsed)
            return answer
        if len(request.body) > validate.YESPO_EVENT_MAX_BYTES:
            problem = f"body: {len(request.body)} bytes, over the 20 KB limit"
            answer = _text(413, [problem])
            answer.problems = [problem]
            return answer
        body, error = _parse_json(request.body)
        problems = _content_type_problem(request)
        if error:
            answer = _text(400, [error, *problems])
            answer.problems = [error, *problems]
            return answer
        messages = self._yespo_event_messages(body)
        all_problems = problems + messages[0].problems
        answer = _text(400, all_problems) if all_problems else Answer(200, b"", "text/plain")
        answer.messages = messages
        answer.problems = problems
        return answer

    @staticmethod
    def _yespo_event_messages(body: Any) -> list[Message]:
        label = body.get("eventTypeKey") if isinstance(body, dict) else None
        return [
            Message(
                "event",
                str(label or "?"),
                body,
                validate.check_yespo_event(body),
                _yespo_event_ids(body),
            )
        ]

    # -- Customer.io Data Pipelines ---------------------------------------------------

    def _customerio(self, subpath: str, request: Incoming) -> Answer:
        match = re.fullmatch(r"/v1/([a-z]+)/?", subpath)
        call = match.group(1) if match else ""
        if call not in validate.CUSTOMERIO_CALLS:
            return Answer(404, _json({"meta": {"errors": [f"no such endpoint: {subpath}"]}}))
        if request.method != "POST":
            return _method_not_allowed("POST")
        strict = request.headers.get("x-strict-mode", "").strip() == "1"
        creds = basic_credentials(request.headers.get("authorization"))
        request_problems = _content_type_problem(request)
        limit = (
            validate.CUSTOMERIO_BATCH_MAX_BYTES
            if call == "batch"
            else validate.CUSTOMERIO_MESSAGE_MAX_BYTES
        )
        if len(request.body) > limit:
            request_problems.append(
                f"body: {len(request.body)} bytes, over the {limit // 1024} KB limit "
                f"for /{call}"
            )
        body, error = _parse_json(request.body)
        messages: list[Message] = []
        if error:
            request_problems.append(error)
        else:
            for i, (kind, message) in enumerate(validate.customerio_messages(call, body)):
                where = "body" if call != "batch" else f"batch[{i}]"
                problems = (
                    validate.check_customerio_message(kind, message, where)
                    if kind in validate.CUSTOMERIO_CALLS and kind != "batch"
                    else [f"{where}.type: must be track, identify, page, screen, group or alias"]
                )
                messages.append(Message(kind, _customerio_label(kind, message), message,
                                        problems, _customerio_ids(message)))
            if call == "batch":
                # Problems about the batch envelope itself (not any one message).
                envelope = [p for p in validate.check_customerio("batch", body)
                            if not p.startswith("batch[")]
                request_problems.extend(envelope)
        if creds is None or not creds[0]:
            answer = Answer(401 if strict else 200, _json({}) if not strict else b"")
            answer.problems = [
                "Authorization: Basic auth with the API key as user name required",
                *request_problems,
            ]
            answer.messages = messages
            if strict:
                answer.headers["WWW-Authenticate"] = 'Basic realm="customerio"'
            return answer
        errors = request_problems + [p for m in messages for p in m.problems]
        if errors and strict:
            answer = Answer(400, _json({"meta": {"errors": errors}}))
        else:
            answer = Answer(200, _json({}))
        answer.messages = messages
        answer.problems = request_problems
        return answer

    # -- Orangepill ---------------------------------------------------------------------

    def _orangepill(self, subpath: str, request: Incoming) -> Answer:
        if subpath.rstrip("/") == _ORANGEPILL_CREATE:
            if request.method != "POST":
                return _method_not_allowed("POST")
            return self._orangepill_create(request)
        event_match = _ORANGEPILL_EVENT.match(subpath)
        person_match = _ORANGEPILL_PERSON.match(subpath)
        if event_match and request.method != "POST":
            return _method_not_allowed("POST")
        if person_match and request.method != "PATCH":
            return _method_not_allowed("PATCH")
        if request.method == "GET" and subpath.rstrip("/") == "/v1/identities/persons":
            if not request.headers.get("x-api-key", "").strip():
                return Answer(401, _json(_orangepill_error(401, "Unauthorized",
                                                           "x-api-key header required")))
            return self._orangepill_find(request)
        if not event_match and not person_match:
            return Answer(404, _json(_orangepill_error(404, "NotFound", f"no route {subpath}")))
        identity = (event_match or person_match).group(1)  # type: ignore[union-attr]
        if not request.headers.get("x-api-key", "").strip():
            answer = Answer(401, _json(_orangepill_error(401, "Unauthorized",
                                                         "x-api-key header required")))
            answer.problems = ["x-api-key: header required"]
            return answer
        key = request.headers.get("idempotency-key", "").strip()
        if key:
            with self._lock:
                stored = self._idempotent.get(key)
            if stored is not None:
                replay = Answer(stored.status, stored.body, stored.content_type,
                                dict(stored.headers))
                replay.messages = [
                    Message(m.call, m.event, m.body, list(m.problems), list(m.ids))
                    for m in self._orangepill_messages(identity, event_match, request)
                ]
                replay.duplicate = True
                return replay
        answer = self._orangepill_fresh(identity, event_match, request)
        if key and answer.status < 500:
            with self._lock:
                self._idempotent[key] = answer
                while len(self._idempotent) > IDEMPOTENCY_KEYS_KEPT:
                    self._idempotent.popitem(last=False)
        return answer

    def _orangepill_create(self, request: Incoming) -> Answer:
        """``POST /v1/identities/person``: a new Identity with its person (spec 000's
        response shape), the same answer again for the same ``idempotency-key``, and a
        409 when another key asks for a person whose e-mail or phone an identity of this
        sink already has (the spec describes no such answer; 409 is this sink's)."""
        if not request.headers.get("x-api-key", "").strip():
            answer = Answer(401, _json(_orangepill_error(401, "Unauthorized",
                                                         "x-api-key header required")))
            answer.problems = ["x-api-key: header required"]
            return answer
        body, error = _parse_json(request.body)
        problems = [error] if error else validate.check_orangepill_create_person(body)
        ids: list[str] = []
        person = body.get("person") if isinstance(body, dict) else None
        if isinstance(person, dict):
            _orangepill_prop_ids(person, ids)
        message = Message("person", "create person", body, problems, ids)
        key = request.headers.get("idempotency-key", "").strip()
        with self._lock:
            stored = self._idempotent.get(key) if key else None
            if stored is not None:
                replay = Answer(stored.status, stored.body, stored.content_type,
                                dict(stored.headers))
                replay.messages = [message]
                replay.duplicate = True
                return replay
            request_problems = _content_type_problem(request)
            if request_problems or problems:
                every = request_problems + problems
                answer = Answer(400, _json({**_orangepill_error(
                    400, "ValidationError", every[0]), "errors": every}))
            elif existing := next((self._contacts[i] for i in ids
                                   if i in self._contacts), None):
                answer = Answer(409, _json(_orangepill_error(
                    409, "Conflict", f"person already exists (identity {existing})")))
            else:
                identity = secrets.token_hex(12)
                assert isinstance(body, dict) and isinstance(person, dict)
                created = {**person, "origin": "API", "modifiedFrom": "API"}
                self._persons[identity] = dict(person)
                for item in ids:
                    if item.startswith(("email:", "phone:")):
                        self._contacts.setdefault(item, identity)
                answer = Answer(200, _json({
                    "id": identity,
                    "owner": "cdptrack-sink",
                    "country": body.get("country", "US"),
                    "currency": body.get("currency", "USD"),
                    "type": body.get("type", "person"),
                    **({"alias": body["alias"]} if "alias" in body else {}),
                    "person": created,
                    "data": body.get("data", {}),
                    "created_at": str(int(time.time() * 1000)),
                    "error": None,
                }))
                ids.insert(0, f"identity:{identity}")
            if key:
                self._idempotent[key] = answer
                while len(self._idempotent) > IDEMPOTENCY_KEYS_KEPT:
                    self._idempotent.popitem(last=False)
        answer.messages = [message]
        answer.problems = _content_type_problem(request)
        return answer

    def _orangepill_find(self, request: Incoming) -> Answer:
        """``GET /v1/identities/persons``: without parameters an empty listing (what
        ``cdptrack doctor --live`` asks); with Infobip's ``identifier`` and ``type``
        (``EMAIL``/``PHONE``) the person created with it, ``externalId`` being its
        identity id (spec 000 "Fields mapping"), or 404 as Infobip answers."""
        query = dict(parse_qsl(request.query))
        identifier, kind = query.get("identifier", ""), query.get("type", "").upper()
        if not identifier:
            return Answer(200, _json({"data": [], "total": 0}))
        ids: list[str] = []
        _add(ids, {"EMAIL": "email", "PHONE": "phone"}.get(kind, "user"), identifier)
        with self._lock:
            identity = self._contacts.get(ids[0]) if ids else None
            person = dict(self._persons.get(identity or "", {}))
        if identity is None:
            return Answer(404, _json({"requestError": {"serviceException": {
                "messageId": "NOT_FOUND", "text": "Person not found"}}}))
        return Answer(200, _json({**person, "externalId": identity}))

    def _orangepill_messages(
        self, identity: str, event_match: re.Match[str] | None, request: Incoming
    ) -> list[Message]:
        body, error = _parse_json(request.body)
        ids = [f"identity:{identity}"]
        if event_match:
            name = event_match.group(2)
            problems = [error] if error else validate.check_orangepill_event(name, body)
            if isinstance(body, dict) and isinstance(body.get("data"), dict):
                props = body["data"].get("properties")
                if isinstance(props, dict):
                    _orangepill_prop_ids(props, ids)
            return [Message("event", name, body, problems, ids)]
        problems = [error] if error else validate.check_orangepill_person(body)
        if isinstance(body, dict):
            _orangepill_prop_ids(body, ids)
        return [Message("person", "person update", body, problems, ids)]

    def _orangepill_fresh(
        self, identity: str, event_match: re.Match[str] | None, request: Incoming
    ) -> Answer:
        messages = self._orangepill_messages(identity, event_match, request)
        request_problems = _content_type_problem(request)
        problems = request_problems + messages[0].problems
        if problems:
            answer = Answer(400, _json({**_orangepill_error(400, "ValidationError",
                                                            problems[0]), "errors": problems}))
        elif event_match:
            body = json.loads(request.body)
            answer = Answer(200, _json({
                "definitionId": event_match.group(2),
                "personId": identity,
                "personIdentifierType": "EXTERNAL_ID",
                "occurredTime": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                "properties": body["data"]["properties"],
            }))
        else:
            changes = json.loads(request.body)
            with self._lock:
                person = self._persons.setdefault(identity, {})
                person.update(changes)
                snapshot = dict(person)
            answer = Answer(200, _json({
                "id": identity,
                "owner": "cdptrack-sink",
                "type": "person",
                "person": snapshot,
                "data": {},
                "created_at": str(int(time.time() * 1000)),
                "error": None,
            }))
        answer.messages = messages
        answer.problems = request_problems
        return answer


def _method_not_allowed(allowed: str) -> Answer:
    answer = Answer(405, _json({"error": f"method not allowed; use {allowed}"}))
    answer.headers["Allow"] = allowed
    return answer


def _orangepill_error(code: int, name: str, message: str) -> dict[str, Any]:
    return {"name": name, "message": message, "code": code}


def _tracker_label(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("GeneralInfo"), dict):
        name = body["GeneralInfo"].get("eventName")
        if isinstance(name, str) and name:
            return name
    return "?"


def _tracker_ids(body: Any) -> list[str]:
    ids: list[str] = []
    _add(ids, "sc", validate.yespo_tracker_sc(body))
    if isinstance(body, dict) and isinstance(body.get("GeneralInfo"), dict):
        info = body["GeneralInfo"]
        _add(ids, "user", info.get("externalCustomerId"))
        _add(ids, "email", info.get("user_email"))
        _add(ids, "phone", info.get("user_phone"))
    return ids


def _yespo_event_ids(body: Any) -> list[str]:
    ids: list[str] = []
    if not isinstance(body, dict):
        return ids
    params = body.get("params")
    named: dict[str, Any] = {}
    if isinstance(params, list):
        for p in params:
            if isinstance(p, dict) and isinstance(p.get("name"), str):
                named[p["name"].lower()] = p.get("value")
    _add(ids, "sc", named.get("sc"))
    _add(ids, "user", named.get("externalcustomerid"))
    _add(ids, "email", named.get("email"))
    _add(ids, "phone", named.get("phone"))
    key = body.get("keyValue")
    if isinstance(key, str) and key.strip():
        item = _classify_key(key.strip())
        if item not in ids:
            ids.append(item)
    return ids


def _customerio_label(call: str, message: Any) -> str:
    if call == "track" and isinstance(message, dict):
        name = message.get("event")
        return name if isinstance(name, str) and name else "?"
    return call


def _customerio_ids(message: Any) -> list[str]:
    ids: list[str] = []
    if not isinstance(message, dict):
        return ids
    # cdptrack's visitor cookie doubles as the anonymous id.
    _add(ids, "sc", message.get("anonymousId"))
    context = message.get("context")
    if isinstance(context, dict):
        _add(ids, "sc", context.get("sc"))
    _add(ids, "user", message.get("userId"))
    for holder in (message.get("traits"), context.get("traits") if isinstance(context, dict)
                   else None):
        if isinstance(holder, dict):
            _add(ids, "email", holder.get("email"))
            _add(ids, "phone", holder.get("phone"))
    return ids


def _orangepill_prop_ids(props: dict[str, Any], ids: list[str]) -> None:
    _add(ids, "sc", props.get("sc"))
    for key in ("userId", "user_id", "externalId", "externalCustomerId"):
        _add(ids, "user", props.get(key))
    _add(ids, "email", props.get("email"))
    # A person update carries Infobip's contactInformation: {email: [{address}], ...}.
    contact = props.get("contactInformation")
    if isinstance(contact, dict):
        for kind, field_name in (("email", "address"), ("phone", "number")):
            entries = contact.get(kind)
            if isinstance(entries, list):
                for entry in entries:
                    if isinstance(entry, dict):
                        _add(ids, kind, entry.get(field_name))
