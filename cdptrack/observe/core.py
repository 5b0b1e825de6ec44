"""The observer: the protocol-free heart shared by the ASGI and WSGI middlewares.

It decides at the start of a request whether the request is tracked at all (method,
static file, prefetch, bot, consent), gives it a visitor id, says at response start
whether the ``sc`` cookie must be set, and at the end builds the events and hands them
to the tracker: as a deferred build (:mod:`.deferred`) that the tracker's sender
thread turns into events, when the tracker has ``capture_deferred``, else built at once
and captured one by one.  Every step is guarded: an error inside cdptrack is logged and counted,
never raised into the shop's request.

The observer holds only cross-request state that must be shared: counters and the
bounded memory of orders already reported (so reloading a thank-you page, from any
device, does not send Order Completed twice).  Everything about one request lives in its
:class:`~cdptrack.observe.state.RequestState`.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, unquote_to_bytes

from ..capture import EventSink
from ..events import ORDER_COMPLETED, Event
from .build import build_events
from .carts import request_cart
from .deferred import BuildOrder, RequestEvents, detach, detachable, reduce_page_objects
from .memory import LocalMemory, Memory, memory_for, server_workers
from .options import ObserveOptions
from .page import plain_order
from .state import RequestState
from .visitor import identity_from_user, new_sc, parse_cookies, set_cookie_header, valid_sc

logger = logging.getLogger("cdptrack.observe")

BOT_CACHE_SIZE = 2048
TRACKED_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
_FALSE_WORDS = frozenset({"", "0", "false", "no", "off", "deny", "denied", "reject"})


# Hosts checked against cookie_domain; beyond this (a forged Host header?) no more checks.
MAX_COOKIE_DOMAIN_HOSTS = 256


def host_outside_domain(host: str, domain: str) -> bool:
    """Is ``host`` (``name[:port]``) outside cookie ``domain`` (``.shop.example`` or
    ``shop.example``), so that a browser refuses a cookie with that ``Domain``?"""
    name = host.strip().lower()
    name = name[1:].split("]", 1)[0] if name.startswith("[") else name.rsplit(":", 1)[0]
    wanted = domain.strip().lower().lstrip(".")
    if not name or not wanted:
        return False
    return not (name == wanted or name.endswith("." + wanted))


# Characters a path may carry unencoded (RFC 3986 pchar and "/"); anything else is
# percent-encoded in the URLs events report.
_PATH_SAFE = "/:@!$&'()*+,;=-._~"
_NEEDS_QUOTING = re.compile(r"[^A-Za-z0-9/:@!$&'()*+,;=\-._~]").search


def plain_path(path: str) -> bool:
    """Whether ``path`` reads the same percent-encoded (most paths: a fast check)."""
    return _NEEDS_QUOTING(path) is None


def url_path(path: bytes, requested: str | None = None) -> str:
    """The path as it goes into an event's URL: ``requested`` (the request target as
    the client sent it: ASGI ``raw_path``, WSGI ``RAW_URI`` / ``REQUEST_URI``) when it
    names the same path, else ``path`` (the path's bytes) percent-encoded."""
    if requested is not None:
        requested = requested.split("?", 1)[0].split("#", 1)[0]
        if requested.startswith("/") and unquote_to_bytes(requested) == path:
            return requested
    return quote(path, safe=_PATH_SAFE)


def forwarded_value(header: str | None, hops: int) -> str | None:
    """The value the outermost of ``hops`` trusted proxies appended to an
    ``X-Forwarded-*`` header (``values[-hops]``, as werkzeug's ProxyFix takes it), or
    None when the header is missing or has fewer values than trusted proxies (then a
    client, not a proxy, wrote it).  Values the client put in front are never read."""
    if not header or hops <= 0:
        return None
    values = header.split(",")
    if len(values) < hops:
        return None
    return values[-hops].strip() or None


class Observer:
    """Turns requests into canonical events for one tracker, with one set of options."""

    def __init__(self, tracker: EventSink, options: ObserveOptions | None = None) -> None:
        self.tracker = tracker
        self.options = options or ObserveOptions()
        opts = self.options
        self._bot_search: Callable[[str], Any] = re.compile(opts.bot_pattern, re.I).search
        self._bot_cache: dict[str, bool] = {}  # User-Agents repeat: match each once
        wanted = [opts.cookie_name, opts.session_cookie_name]
        if opts.consent_cookie:
            wanted.append(opts.consent_cookie)
        self.wanted_cookies = tuple(wanted)
        self._for_hops, self._proto_hops, self._host_hops = opts.forwarded_hops()
        self._static_prefixes = opts.static_prefixes + opts.ignore_paths
        self._static_suffixes = tuple(s.lower() for s in opts.static_suffixes)
        # The visitor cookie's attributes never change: only the value is per request.
        self._cookie_tail = {
            secure: set_cookie_header(opts.cookie_name, "", max_age=opts.cookie_max_age,
                                      path=opts.cookie_path, domain=opts.cookie_domain,
                                      secure=secure)[len(opts.cookie_name) + 1:]
            for secure in (False, True)
        }
        self._cookie_domain_hosts: set[str] = set()  # hosts checked against cookie_domain
        # A response header that sets the visitor cookie starts with this (the app's own).
        self.visitor_cookie_prefix = (opts.cookie_name + "=").encode("latin-1")
        self.counters: Counter[str] = Counter()
        # Each visitor's last cart and the orders already reported: in Redis when the
        # outbox is Redis (a fleet agrees), else in this process, bounded.
        config = getattr(tracker, "config", None)
        self.memory: Memory = memory_for(getattr(config, "outbox", None),
                                         orders=opts.order_dedupe_size)
        self._counters_lock = threading.Lock()  # for counts made on the sender thread
        # A durable outbox: the middlewares build and commit a request's events before
        # the last body chunk goes out (a crash after the client got the response must
        # not lose them); otherwise after the response, off the client's clock.
        self.commit_first = bool(getattr(getattr(tracker, "outbox", None), "durable", False))
        self._defer: Callable[[Any], None] | None = getattr(
            tracker, "capture_deferred", None) if opts.defer_events else None
        # Builds touch the per-visitor memory: they run in request order (see BuildOrder).
        self.build_order = BuildOrder()
        self._checked_pid = 0  # the process whose server was checked (see _check_workers)

    # -- start of a request --------------------------------------------------------------

    def begin(
        self,
        method: str,
        scheme: str,
        host: str,
        path: str,
        query: str,
        script_root: str,
        ip: str | None,
        headers: Mapping[str, str],
        raw: Any,
        url_path: str | None = None,
    ) -> RequestState | None:
        """A new request's state, or ``None`` when this request is never tracked.

        ``path`` is the decoded path (script root included); ``url_path`` the same path
        percent-encoded as the client requested it, when it differs (see
        :func:`url_path`): it is what events report in their URLs."""
        try:
            state = self._begin(method, scheme, host, path, query, script_root, ip,
                                headers, raw)
            if state is not None and url_path is not None and url_path != path:
                state.url_path = url_path
            return state
        except Exception:
            self.error("begin")
            return None

    def _begin(self, method: str, scheme: str, host: str, path: str, query: str,
               script_root: str, ip: str | None, headers: Mapping[str, str],
               raw: Any) -> RequestState | None:
        counters = self.counters
        counters["requests"] += 1
        if method not in TRACKED_METHODS:
            counters["skipped_method"] += 1
            return None
        local = path[len(script_root):] if script_root and path.startswith(script_root) \
            else path
        if self.is_static(local):
            counters["skipped_static"] += 1
            return None
        get = headers.get
        if "prefetch" in (get("sec-purpose") or get("purpose") or get("x-purpose")
                          or get("x-moz") or "").lower():
            counters["skipped_prefetch"] += 1
            return None
        user_agent = get("user-agent")
        if user_agent and self._is_bot(user_agent):
            counters["skipped_bot"] += 1
            return None
        opts = self.options
        if self._for_hops:
            ip = forwarded_value(get("x-forwarded-for"), self._for_hops) or ip
        if self._proto_hops:
            proto = forwarded_value(get("x-forwarded-proto"), self._proto_hops)
            if proto is not None and proto.lower() in ("http", "https"):
                scheme = proto.lower()
        if self._host_hops:
            host = forwarded_value(get("x-forwarded-host"), self._host_hops) or host
        cookies = parse_cookies(get("cookie"), self.wanted_cookies)
        state = RequestState(method, scheme, host, path, query, script_root, ip, user_agent,
                             get("referer"), cookies, raw)
        if not self._consented(state, get("sec-gpc")):
            counters["skipped_no_consent"] += 1
            return None
        sc = cookies.get(opts.cookie_name)
        if sc is not None and not valid_sc(sc):
            counters["sc_rejected"] += 1
            sc = None
        if sc is None:
            sc = new_sc()
            state.sc_new = True
        state.sc = sc
        return state

    def is_static(self, path: str) -> bool:
        """Whether requests to ``path`` (without the script root) are never tracked: it
        starts with one of ``static_prefixes`` or ``ignore_paths``, or ends with one of
        ``static_suffixes`` (case-insensitive)."""
        return path.startswith(self._static_prefixes) or path.lower().endswith(
            self._static_suffixes)

    def _is_bot(self, user_agent: str) -> bool:
        cache = self._bot_cache
        found = cache.get(user_agent)
        if found is None:
            found = self._bot_search(user_agent) is not None
            if len(cache) >= BOT_CACHE_SIZE:
                cache.clear()
            cache[user_agent] = found
        return found

    def _consented(self, state: RequestState, gpc: str | None) -> bool:
        opts = self.options
        if opts.honour_gpc and gpc is not None and gpc.strip() == "1":
            return False
        if opts.consent_cookie:
            value = state.cookies.get(opts.consent_cookie)
            if value is None:
                return False
            if opts.consent_value is not None:
                if value != opts.consent_value:
                    return False
            elif value.strip().lower() in _FALSE_WORDS:
                return False
        if opts.consent is not None:
            try:
                return bool(opts.consent(state))
            except Exception:
                self.error("consent")
                return False
        return True

    # -- response start ------------------------------------------------------------------

    def app_set_visitor(self, state: RequestState, set_cookie: str) -> None:
        """The app's own response sets the visitor cookie (``Set-Cookie: sc=...``):
        cdptrack adds none, and the events use the app's value when it is a valid id
        (a deletion or a malformed value leaves the request's id as it was)."""
        state.sc_set_by_app = True
        value = set_cookie.split(";", 1)[0].partition("=")[2].strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if valid_sc(value):
            state.sc = value
            state.sc_new = False

    def response_cookie(self, state: RequestState, status: int) -> str | None:
        """The ``Set-Cookie`` value for a new visitor, when this response may carry it
        (never when the app's response sets the visitor cookie itself)."""
        state.status = status
        opts = self.options
        if not state.sc_new or not opts.set_cookie or state.skip or not 200 <= status < 400 \
                or state.sc_set_by_app:
            return None
        self.counters["sc_created"] += 1
        if opts.cookie_domain is not None and state.host not in self._cookie_domain_hosts:
            self._check_cookie_domain(state.host, opts.cookie_domain)
        return f"{opts.cookie_name}={state.sc or ''}{self._cookie_tail[state.scheme == 'https']}"

    def _check_cookie_domain(self, host: str, domain: str) -> None:
        """Warn, once per host, when a browser would refuse the visitor cookie because the
        request's host is outside ``cookie_domain``: every page view would then be a new
        visitor.  Runs only when a new cookie is set, and once per host."""
        seen = self._cookie_domain_hosts
        if len(seen) >= MAX_COOKIE_DOMAIN_HOSTS:
            return
        seen.add(host)
        if host_outside_domain(host, domain):
            logger.warning("cdptrack: the %s cookie has Domain=%s, which browsers refuse on "
                           "host %s: every request there is a new visitor. Set cookie_domain "
                           "to a domain of this host, or leave it unset (host only).",
                           self.options.cookie_name, domain, host)

    # -- end of a request ----------------------------------------------------------------

    def finish(self, state: RequestState) -> None:
        """Hand the request's events to the tracker.  Never raises."""
        try:
            state.finished = time.time()
            if state.skip or not 200 <= state.status < 400:
                return  # no events: nothing to hand over
            if self._checked_pid != os.getpid():
                self._check_workers()
            self.read_cart(state)
            user = state.user
            loader = self.options.user_loader
            if user is None and loader is not None:
                try:  # needs the request: runs here, never in the sender
                    # Plain data now: a user object (or a proxy to one) may not be
                    # readable later, on another thread.
                    user = identity_from_user(
                        loader(state.request if state.request is not None else state.raw))
                except Exception:
                    self.error("user_loader")
            defer = self._defer
            if defer is None:
                events = self.events_of(state, user)
            else:
                # ORM rows and app-context objects: read now, while they can be.
                reduce_page_objects(state, self.options.product_fields)
                if detachable(state):
                    defer(RequestEvents(self.events_in_sender, state, detach(state, user),
                                        self.build_order))
                    return
                # What the view left is not readable later (objects the build reads):
                # built on this thread, but in its turn, after the builds of the
                # requests that finished before it (they may still wait for the
                # sender), so both read and update the visitor's remembered cart in
                # request order.
                events = RequestEvents(self.events_of, state, user,
                                       self.build_order).build()
                self.counters["built_on_request"] += 1
            capture = self.tracker.capture
            for event in events:
                capture(event)
            state.raw = state.request = None  # no state <-> scope cycle for the GC
        except Exception:
            self.error("finish")

    def _check_workers(self) -> None:
        """Once per process: warn when the memory is this process's own but the server
        runs several worker processes (each would remember its own carts and orders)."""
        self._checked_pid = os.getpid()
        if not isinstance(self.memory, LocalMemory):
            return
        workers = server_workers()
        if workers is not None:
            self.warn_once(
                "memory_per_process",
                f"cdptrack: {workers}, but the outbox is in memory, so each process "
                "remembers its own visitors' carts, orders and sign-ins: a visitor whose "
                "requests reach different workers gets repeated or missing Cart Updated, "
                "and an order may be reported twice. Share the outbox: "
                "CDPTRACK_OUTBOX=sqlite:////path/cdptrack.db for the workers of one host, "
                "redis://host:6379/0 for a fleet.")

    def read_cart(self, state: RequestState, objects: list[Any] | None = None) -> None:
        """Read the shop's cart (the ``cart_loader``, ``objects`` an adapter found on the
        request, the template context's ``cart``/``basket``) into plain lines, once.
        Adapters call it while the request and its database session are live (cart
        objects may be ORM rows); :meth:`finish` calls it for the rest.  Never raises."""
        if state.cart_read or state.skip:
            return
        ctx = state.template_context
        if isinstance(ctx, Mapping) and "order" in ctx:
            try:  # an order row, read while its database session is open
                order = plain_order(ctx["order"])
                if order is not None:
                    state.template_context = {**ctx, "order": order}
            except Exception:
                self.error("order")
        if self.options.cart_loader is None and not objects and not isinstance(
                state.template_context, Mapping):
            return
        state.cart_read = True
        try:
            state.cart_lines = request_cart(state, self.options, objects)
        except Exception:
            self.error("cart")

    def read_order(self, state: RequestState, order: Any) -> None:
        """Read an order object an adapter found on the request (``g.order``,
        ``request.state.order``, ``request.order``: often an ORM row) into plain data
        now, while its database session is open.  Used for Order Completed on a
        thank-you or checkout page, after the view's return value and the template
        context.  Never raises."""
        if order is None or state.skip:
            return
        try:
            found = order if isinstance(order, Mapping) else plain_order(order)
            if found is not None:
                state.request_order = dict(found)
        except Exception:
            self.error("order")

    def events_in_sender(self, state: RequestState,
                         identity: dict[str, str] | None) -> list[Event]:
        """:meth:`events_of` for a deferred build on the sender thread: an error is
        counted here and re-raised (the tracker logs it and counts the events as
        dropped)."""
        try:
            return self.events_of(state, identity)
        except Exception:
            with self._counters_lock:
                self.counters["errors"] += 1
                self.counters["errors_build"] += 1
            raise

    def events_of(self, state: RequestState, user: Any = None) -> list[Event]:
        """The events to capture for a finished request: built, counted, an order
        reported once."""
        built = build_events(state, self.options, user, self.memory)
        events: list[Event] = []
        deduplicated = 0
        for event in built.events:
            if event.event == ORDER_COMPLETED and not self._first_report(event):
                deduplicated += 1
                continue
            events.append(event)
        if built.problems or deduplicated or events:
            with self._counters_lock:
                counters = self.counters
                for problem in built.problems:
                    counters[problem] += 1
                if deduplicated:
                    counters["orders_deduplicated"] += deduplicated
                counters["events"] += len(events)
        return events

    def _first_report(self, event: Event) -> bool:
        # Per order, not per visitor: the thank-you page reloaded on another device, or
        # shared and opened by someone else, is the same purchase.
        return self.memory.first_report(str(event.properties.get("order_id")))

    def error(self, where: str) -> None:
        """Log and count an error inside cdptrack (the shop's request carries on)."""
        self.counters["errors"] += 1
        self.counters[f"errors_{where}"] += 1
        logger.warning("cdptrack: error in %s (request not affected)", where, exc_info=True)

    def warn_once(self, key: str, message: str) -> None:
        """Log a setup problem once per observer (and count each time it is seen)."""
        counters = self.counters
        counters[f"warning_{key}"] += 1
        if counters[f"warning_{key}"] == 1:
            logger.warning(message)

    def stats(self) -> dict[str, int]:
        """The counters: requests seen, skipped by reason, events captured, errors."""
        return dict(self.counters)


__all__ = ["TRACKED_METHODS", "Observer", "forwarded_value", "plain_path", "url_path"]
