"""The request layer: from a request to canonical events, framework-free.

One request flows through these modules in this order:

* :mod:`.core`: the :class:`Observer` both middlewares share: at the start, whether the
  request is tracked at all and who the visitor is; at the end, hand its record to the
  tracker (an :class:`~cdptrack.capture.EventSink`);
* :mod:`.state`: what is known about one request while it runs (:class:`RequestState`),
  filled in by the middleware, the framework adapter and the view;
* :mod:`.visitor` (the ``sc`` cookie, the signed-in identity) and :mod:`.session` (the
  cart, identity and last order in the session, signed session cookies);
* :mod:`.declare`: ``cdptrack.track``, the view's own word on what the page is;
* :mod:`.page`: the page decision (declaration, route rule, convention), its key and the
  page's details; :mod:`.products` and :mod:`.fields` read the shop's objects;
* :mod:`.build`: the finished request → canonical events, a pure function;
* :mod:`.deferred`: that build handed to the tracker to run on its sender thread.

:mod:`.options` holds the settings (:class:`ObserveOptions`).  Nothing here imports the
delivery engine: the tracker is only ever seen through :class:`~cdptrack.capture.EventSink`.
"""

from __future__ import annotations

from .core import Observer
from .options import ObserveOptions, RouteRule
from .state import PageDeclaration, RequestState

__all__ = ["ObserveOptions", "Observer", "PageDeclaration", "RequestState", "RouteRule"]
