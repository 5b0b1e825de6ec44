"""Delivery: getting wire requests from ``Tracker.capture`` to the APIs, off the request
path, and never losing them silently.

* :mod:`.outbox` (and ``outbox_memory`` / ``outbox_sqlite`` / ``outbox_redis``): where
  accepted events and per-destination deliveries wait; :mod:`.outbox_url` opens one
  from its ``CDPTRACK_OUTBOX`` URL;
* :mod:`.deferred`: running the request layer's deferred builds
  (:class:`cdptrack.capture.DeferredBuild`) on the sender thread;
* :mod:`.sender`: the background thread and its asyncio loop; the dispatcher renders;
* :mod:`.lane`: one per destination (HTTP client, concurrency, batching, retries);
* :mod:`.retry`: what is retried and how long to wait; :mod:`.batching`: batch bodies;
* :mod:`.counters`, :mod:`.callbacks`, :mod:`.progress`: what is counted, user hooks,
  the CLI's progress bar.
"""
