"""Orangepill identity provisioning: the identity id an Orangepill event needs, found
or created before the event is sent.

Orangepill's person events and person updates name an identity
(``/identities/{id}/person/...``) that only Orangepill can hand out.  When an event's
visitor is a signed-in user (``user_id``) without ``orangepill_identity``, the Orangepill
lane asks :meth:`IdentityProvisioner.prepare` for it before rendering:

1. the id remembered for that user (this process's cache, then the outbox's
   :mod:`.identity_store`: memory, the SQLite file, or Redis for a fleet);
2. otherwise, when the visitor has an e-mail or a phone, ``POST /v1/identities/person``
   (spec 000 "Create Person and Identity") with an ``idempotency-key`` derived from the
   realm and the user id (:func:`~cdptrack.destinations.orangepill.person_idempotency_key`),
   so retries, restarts and other processes never create a second person.  One create
   per user runs at a time in a process; every event of that user waits for it.
3. An answer saying the person already exists (409, or a 4xx whose text says "already
   exists"; the spec does not describe one) is followed by ``GET /v1/identities/persons``
   for the e-mail or phone, whose ``externalId`` is the identity id.

The id found is remembered, handed to ``on_identity(user_id, identity_id)`` (once, when
it was created or found by lookup; a callback that raises is logged and counted as
``on_identity_error``) and set on the event, which is then rendered as usual.

Bounds: the waiting is done by the lane's workers (one per waiting visitor; that
visitor's later deliveries are parked behind it in order, see :mod:`.ordering`; the
rest stay in the outbox, which is bounded as always), and a create, with its
retries, gets at most ``wait`` seconds.  When it is refused (a final 4xx), runs out of
time, or answers without an id, :class:`IdentityUnavailable` says why and the lane
dead-letters the waiting event with that reason (``cdptrack replay`` sends it again,
creating the identity then).  A refusal is remembered for ``wait`` seconds, so the rest
of that user's events are dead-lettered without asking again.  Other destinations have
their own lanes and never wait for this.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from ..config import Config
from ..destinations import orangepill
from ..destinations.base import WireRequest
from ..events import Event
from .counters import Counters
from .identity_store import IdentityStore

logger = logging.getLogger("cdptrack")

DESTINATION = orangepill.DESTINATION
CACHE_USERS = 100_000
REFUSALS_KEPT = 10_000


class Answer(Protocol):
    """What the lane tells about one request it sent, retries included."""

    ok: bool
    status: int | None
    response: str  # the body on success, the scrubbed answer otherwise
    attempts: int
    reason: str  # "sent", "rejected" (a final 4xx), "retry_time_exceeded"


class Exchange(Protocol):
    """Send one request through the lane's client with retries, for at most
    ``max_time`` seconds; the answer's body is kept."""

    async def __call__(self, request: WireRequest, max_time: float) -> Answer: ...


class IdentityUnavailable(Exception):
    """No identity id for this user now.  ``reason`` is the dead letters' reason:
    ``identity_rejected`` (the create got a final 4xx), ``identity_timeout`` (no success
    within ``wait`` seconds), ``identity_unreadable`` (a 2xx without an id),
    ``identity_exists`` (Orangepill says the person exists and the lookup found no
    identity for it).  ``request`` is the create (or lookup) request, ``status`` and
    ``response`` its answer (scrubbed)."""

    def __init__(self, reason: str, request: WireRequest, *, status: int | None = None,
                 response: str = "", attempts: int = 0) -> None:
        super().__init__(f"{reason}: {request.method} {request.url} answered "
                         f"{status if status is not None else 'nothing'}")
        self.reason = reason
        self.request = request
        self.status = status
        self.response = response
        self.attempts = attempts


class IdentityProvisioner:
    """Finds or creates the Orangepill identity of a signed-in user (module docstring).

    Runs on the sender's event loop; ``prepare`` is called by the Orangepill lane for
    each event it is about to render.
    """

    def __init__(self, *, config: Config, store: IdentityStore, counters: Counters,
                 on_identity: Callable[[str, str], Any] | None = None,
                 wait: float = 60.0) -> None:
        self._config = config
        self._store = store
        self._counters = counters
        self._on_identity = on_identity
        self._wait = wait
        self._realm = orangepill.realm_of(config) if config.orangepill_api_key else ""
        self._cache: OrderedDict[str, str] = OrderedDict()
        self._pending: dict[str, asyncio.Task[str]] = {}
        self._refused: OrderedDict[str, tuple[float, IdentityUnavailable]] = OrderedDict()

    def needs(self, event: Event) -> bool:
        """Whether ``event`` waits for an identity id (a user id and no identity)."""
        visitor = event.visitor
        return not visitor.orangepill_identity and bool(visitor.user_id)

    async def prepare(self, event: Event, exchange: Exchange) -> Event:
        """``event`` with ``visitor.orangepill_identity`` set when it needed one and one
        was found or created; unchanged when it needs none, or when its visitor has
        neither e-mail nor phone to create a person with (the renderer then counts
        ``no_identity``).  Raises :class:`IdentityUnavailable`."""
        if not self.needs(event):
            return event
        user_id = event.visitor.user_id or ""
        identity = self.known(user_id)
        if identity is None:
            if not orangepill.can_create_person(event):
                return event
            identity = await self._provisioned(user_id, event, exchange)
        return replace(event, visitor=replace(event.visitor, orangepill_identity=identity))

    def known(self, user_id: str) -> str | None:
        """The id remembered for ``user_id``: this process's cache, then the store."""
        identity = self._cache.get(user_id)
        if identity is not None:
            self._cache.move_to_end(user_id)
            return identity
        identity = self._store.get(self._realm, user_id)
        if identity is not None:
            self._remember(user_id, identity)
        return identity

    def _remember(self, user_id: str, identity: str) -> None:
        self._cache[user_id] = identity
        while len(self._cache) > CACHE_USERS:
            self._cache.popitem(last=False)

    async def _provisioned(self, user_id: str, event: Event, exchange: Exchange) -> str:
        refused = self._refused.get(user_id)
        if refused is not None:
            until, why = refused
            if time.monotonic() < until:
                raise why
            del self._refused[user_id]
        task = self._pending.get(user_id)
        if task is None:
            task = asyncio.ensure_future(self._create(user_id, event, exchange))
            self._pending[user_id] = task
            task.add_done_callback(lambda _: self._pending.pop(user_id, None))
        # Shielded: one waiting worker cancelled (shutdown) does not cancel the create
        # the others wait for; aclose() cancels it.
        return await asyncio.shield(task)

    async def _create(self, user_id: str, event: Event, exchange: Exchange) -> str:
        request = orangepill.create_person(event, self._config)
        answer = await exchange(request, self._wait)
        identity: str | None = None
        if answer.ok:
            identity = orangepill.created_identity(_json(answer.response))
            if identity is None:
                raise self._refuse(user_id, IdentityUnavailable(
                    "identity_unreadable", request, status=answer.status,
                    response=answer.response[:2000], attempts=answer.attempts))
            self._counters.add(DESTINATION, "identity_created")
        elif answer.reason == "rejected" and _already_exists(answer):
            identity = await self._look_up(user_id, event, request, answer, exchange)
            self._counters.add(DESTINATION, "identity_found")
        else:
            reason = "identity_rejected" if answer.reason == "rejected" \
                else "identity_timeout"
            why = IdentityUnavailable(reason, request, status=answer.status,
                                      response=answer.response, attempts=answer.attempts)
            raise self._refuse(user_id, why) if reason == "identity_rejected" else why
        self._keep(user_id, identity)
        return identity

    async def _look_up(self, user_id: str, event: Event, create: WireRequest,
                       refused: Answer, exchange: Exchange) -> str:
        lookup = orangepill.find_person(event, self._config)
        if lookup is None:  # pragma: no cover - a create needs an e-mail or a phone
            raise IdentityUnavailable("identity_exists", create, status=refused.status,
                                      response=refused.response)
        answer = await exchange(lookup, self._wait)
        identity = orangepill.found_identity(_json(answer.response)) if answer.ok else None
        if identity is None:
            raise self._refuse(user_id, IdentityUnavailable(
                "identity_exists", lookup, status=answer.status,
                response=answer.response[:2000] if not answer.ok else refused.response,
                attempts=answer.attempts))
        return identity

    def _refuse(self, user_id: str, why: IdentityUnavailable) -> IdentityUnavailable:
        self._refused[user_id] = (time.monotonic() + self._wait, why)
        while len(self._refused) > REFUSALS_KEPT:
            self._refused.popitem(last=False)
        return why

    def _keep(self, user_id: str, identity: str) -> None:
        self._remember(user_id, identity)
        try:
            self._store.put(self._realm, user_id, identity)
        except Exception:
            # Only this process remembers it now; another create would get the same id.
            logger.warning("cdptrack: could not store the Orangepill identity of a user",
                           exc_info=True)
            self._counters.add(DESTINATION, "identity_store_error")
        if self._on_identity is not None:
            try:
                self._on_identity(user_id, identity)
            except Exception:
                logger.exception("the on_identity callback raised; ignored")
                self._counters.add(DESTINATION, "on_identity_error")

    async def aclose(self) -> None:
        """Cancel creates still running (the sender is stopping)."""
        tasks = list(self._pending.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _json(text: str) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def _already_exists(answer: Answer) -> bool:
    return answer.status == 409 or (
        answer.status is not None and 400 <= answer.status < 500
        and "already exist" in answer.response.lower())


__all__ = ["Answer", "Exchange", "IdentityProvisioner", "IdentityUnavailable"]
