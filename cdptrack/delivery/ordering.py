"""Per-visitor order inside one lane.

Yespo's tracker (StatusCart), Yespo v1/event (cartUpdated) and Orangepill's person
events are state-like: the last request received wins.  A lane sends with several
workers at once, and a request that fails waits for its retry, so without care a
shopper's later cart reaches the API before an earlier one and the API keeps a cart the
shopper has already bought.

:class:`VisitorGate` keeps each visitor's deliveries in the order the lane took them from
the outbox (which is the order they were accepted): while one worker holds a delivery
of visitor V (sending it, waiting for a retry, or waiting for V's Orangepill identity),
every later delivery of V that another worker takes is parked behind it, and the worker
that holds V sends them, in order, once it is done with what it holds.  Other visitors'
deliveries go on in parallel: only V waits behind V.  Parking is bounded: once a lane
holds ``Outbox.park_limit`` parked deliveries (``PARK_LIMIT``, or fewer for a small
memory outbox), its workers take nothing more from the outbox until some are sent, so
the outbox's own bound (and its ``queue_full`` drops) still holds.

The visitor is :func:`visitor_key`: the ``sc`` cookie (the browser, which is what a
cart belongs to and what stays the same when the shopper signs in), else the user id,
else the e-mail, the phone or the external customer id.  An event naming none of these
(a catalogue update) has no order to keep.

All of this runs on the sender's event loop: nothing here is on the request path.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence

from .outbox import PARK_LIMIT, Delivery, visitor_key


class VisitorGate:
    """Which visitors a lane's workers hold, and the deliveries parked behind them."""

    __slots__ = ("_held", "parked")

    def __init__(self) -> None:
        # visitor key -> the deliveries parked behind the one in flight.  A key is
        # present while some worker holds a delivery of that visitor.
        self._held: dict[str, deque[Delivery]] = {}
        self.parked = 0

    def admit(self, deliveries: Sequence[Delivery]) -> tuple[list[Delivery], list[str]]:
        """Of ``deliveries`` (just taken from the outbox, oldest first), those the
        calling worker sends now, in order, and the visitors it holds from now on; the
        rest are parked behind the worker that already holds their visitor."""
        held = self._held
        ready: list[Delivery] = []
        mine: dict[str, None] = {}
        for delivery in deliveries:
            key = delivery.visitor  # a packed event stays packed while it is parked
            if key is None or key in mine:
                ready.append(delivery)
                continue
            behind = held.get(key)
            if behind is None:
                held[key] = deque()
                mine[key] = None
                ready.append(delivery)
            else:
                behind.append(delivery)
                self.parked += 1
        return ready, list(mine)

    def release(self, keys: Iterable[str], limit: int) -> tuple[list[Delivery], list[str]]:
        """The calling worker is done with what it held of ``keys``: the deliveries
        parked behind them (at most ``limit``, oldest first per visitor), which it sends
        next, and the visitors it still holds; the others are let go."""
        held = self._held
        ready: list[Delivery] = []
        still: list[str] = []
        for key in keys:
            behind = held.get(key)
            if not behind:
                held.pop(key, None)
                continue
            still.append(key)
            while behind and len(ready) < limit:
                ready.append(behind.popleft())
        self.parked -= len(ready)
        return ready, still

    def release_all(self, keys: Iterable[str]) -> list[Delivery]:
        """Let ``keys`` go with everything parked behind them (to be handed back to the
        outbox unsent: a graceful stop)."""
        out: list[Delivery] = []
        for key in keys:
            out.extend(self._held.pop(key, ()))
        self.parked -= len(out)
        return out

    def holds(self, key: str) -> bool:
        """Whether a worker holds a delivery of visitor ``key``."""
        return key in self._held

    def drain(self) -> list[Delivery]:
        """Everything parked, forgetting every holder (the lane is stopping)."""
        out = [delivery for behind in self._held.values() for delivery in behind]
        self._held.clear()
        self.parked = 0
        return out

    def __len__(self) -> int:
        return len(self._held)


__all__ = ["PARK_LIMIT", "VisitorGate", "visitor_key"]
