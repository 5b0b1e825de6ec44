"""The compact form of an event waiting for an API that does not answer.

While an API is down, its lane's deliveries wait in memory up to the outbox's bound
(``max_queue``, 10,000 by default).  As an :class:`~cdptrack.events.Event` a waiting
product view costs about 1 KiB (the event, its visitor, its properties, traits and
context dicts, the timestamp and the message id: seven objects, three of which the
garbage collector tracks for as long as the event waits).  :func:`pack` turns it into
one ``bytes`` object holding the same fields in :mod:`marshal`'s format (about 400
bytes for a product view; the collector does not track it) and :func:`unpack` gives the
event back when the lane takes it, about 5 µs later in CPU.  The memory outbox packs
only what waits for a lane whose API is failing (:meth:`.Outbox.set_failing`), where an
event waits seconds to minutes; a healthy lane takes its events within milliseconds and
never pays for packing.

Exact by construction: marshal keeps every value's type (``bool`` apart from ``int``,
``float`` bits, ``tuple`` apart from ``list``), dict order and shared references, so an
unpacked event is equal to the packed one field by field and renders to the same bytes
at every API (``tests/test_delivery_compact.py``).  What marshal cannot hold exactly is
not packed and waits as the event itself: a subclass of ``Event`` or ``Visitor``, a
value of a subclass of a built-in type (a ``str`` enum, an ``OrderedDict``: marshal
refuses those), or a timestamp that is not in ``timezone.utc`` (kept as microseconds
since the epoch, which would lose another offset or time zone).
"""

from __future__ import annotations

import marshal
from datetime import datetime, timedelta, timezone

from ..events import Event, Visitor

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


def pack(event: Event) -> bytes | None:
    """``event`` as one ``bytes`` object, or None when it cannot be packed exactly."""
    visitor = event.visitor
    moment = event.timestamp
    if type(event) is not Event or type(visitor) is not Visitor \
            or type(moment) is not datetime or moment.tzinfo is not timezone.utc \
            or moment.fold:
        return None
    try:
        return marshal.dumps((
            event.type, event.event, event.name, event.properties, event.traits,
            event.context, (moment - _EPOCH) // _MICROSECOND, event.message_id,
            event.dropped,
            visitor.sc, visitor.user_id, visitor.email, visitor.phone, visitor.name,
            visitor.external_customer_id, visitor.yespo_contact_id,
            visitor.orangepill_identity,
        ))
    except ValueError:  # a value marshal cannot hold (or hold exactly)
        return None


def unpack(packed: bytes) -> Event:
    """The event :func:`pack` gave ``packed`` for."""
    fields = marshal.loads(packed)
    return Event(fields[0], fields[1], fields[2], Visitor(*fields[9:]), fields[3],
                 fields[4], fields[5], _EPOCH + timedelta(microseconds=fields[6]),
                 fields[7], fields[8])


__all__ = ["pack", "unpack"]
