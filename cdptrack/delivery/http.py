"""The sender's HTTP/1.1 client: asyncio transports and the ``httptools`` (llhttp) parser.

Why not httpx: on the sender thread the HTTP client is most of the CPU a tracked page
view costs the shop.  Measured per 1 KB POST to a loopback keep-alive server
(``benchmarks/bench_clients.py``), httpx.AsyncClient costs several times what an asyncio
protocol writing pre-encoded bytes costs; this client is that protocol plus what the
lanes need and nothing else (see benchmarks/README.md, "Clients"):

* **keep-alive**: one idle-connection list per (scheme, host, port); a connection goes
  back when the response said it may (``should_keep_alive``), else it is closed.  A
  request that fails on a *reused* connection before any byte of the answer arrived (the
  server closed an idle connection) is sent once more on a fresh one; the APIs' ids
  (Customer.io ``messageId``, Orangepill ``idempotency-key``) make a repeat harmless.
* **TLS** through :func:`asyncio.loop.create_connection` with the lane's verified
  :class:`ssl.SSLContext` and SNI; certificates are checked as by httpx.
* **responses** with ``Content-Length``, ``Transfer-Encoding: chunked``, or read until
  the server closes; 1xx interim answers are skipped.
* **timeouts**: ``timeout`` seconds bound the *whole* attempt (connect, send, and every
  byte of the answer), not only the gaps between reads, so an API that trickles a body
  one byte at a time cannot hold a lane's worker longer than that.
* **proxies**: when the environment names a proxy for a URL (``HTTPS_PROXY``,
  ``HTTP_PROXY``, ``ALL_PROXY``, honouring ``NO_PROXY``; read once, when the client is
  made), requests to it go through ``httpx.AsyncClient(trust_env=True)`` instead,
  bounded by the same total timeout.
* **no redirects** are followed (credentials are never re-sent elsewhere).

Failures raise :class:`HTTPError` (connection refused or reset, timeout, a malformed
answer, a header that would split the request).  Its message never contains header
values, so API keys cannot leak through it.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import urllib.request
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httptools

URL_CACHE = 256  # parsed targets kept per client (Orangepill's URLs carry the identity)
_BAD_HEADER = str.maketrans("", "", "\r\n\0")


class HTTPError(Exception):
    """A request got no complete HTTP answer: network error, timeout, protocol error."""


@dataclass(slots=True)
class Response:
    """A complete answer: ``status_code``; ``headers`` with lower-case names (a repeated
    field keeps its last value); ``content``, the body bytes (de-chunked)."""

    status_code: int
    # Not in the repr: an API may echo the request's headers (its key) in its answer.
    headers: dict[str, str] = field(repr=False)
    content: bytes = field(repr=False)

    @property
    def text(self) -> str:
        """The body decoded as UTF-8 (invalid bytes replaced)."""
        return self.content.decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed URL: where to connect and the request line's target."""

    scheme: str
    host: str
    port: int
    path: str  # path and query, as sent on the request line
    host_header: str

    @property
    def origin(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)


def parse_target(url: str) -> Target:
    """``url`` split for sending; :class:`HTTPError` when it is not http(s) with a host."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise HTTPError(f"unsupported URL scheme or no host: {scheme!r}")
    default = 443 if scheme == "https" else 80
    try:
        port = parts.port or default
    except ValueError as exc:
        raise HTTPError("invalid port in URL") from exc
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == default else f"{shown}:{port}"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(scheme, host, port, path, host_header)


def encode_request(method: str, target: Target, headers: Mapping[str, str],
                   body: bytes) -> bytes:
    """The request head and body as one ``bytes``.  A header name or value holding CR,
    LF or NUL (which would split the request) raises :class:`HTTPError` naming only the
    header, never its value."""
    lines = [f"{method} {target.path} HTTP/1.1\r\nHost: {target.host_header}\r\n"
             f"Content-Length: {len(body)}\r\n"]
    for name, value in headers.items():
        if name.translate(_BAD_HEADER) != name or value.translate(_BAD_HEADER) != value:
            raise HTTPError(f"header {name.strip()!r} holds a line break or NUL; not sent")
        lower = name.lower()
        if lower in ("host", "content-length", "transfer-encoding"):
            continue  # set by the client
        lines.append(f"{name}: {value}\r\n")
    lines.append("\r\n")
    try:
        head = "".join(lines).encode("latin-1")
    except UnicodeEncodeError as exc:
        raise HTTPError("a header is not latin-1 text; not sent") from exc
    return head + body


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False
        self._waiter: asyncio.Future[Response] | None = None
        self._status = 0
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._started = False  # a byte of the current answer arrived
        self._headers_done = False
        self._framed = False  # the answer has Content-Length or chunked framing
        self._keep_alive = False  # the last complete answer allows another request

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._started = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(HTTPError("the server switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(HTTPError(f"malformed HTTP answer: {exc}"))

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._headers_done and not self._framed:
            self._complete()  # an answer delimited by the end of the connection
            return
        what = "reset" if exc is not None else "closed"
        self._fail(HTTPError(f"connection {what} by the server before a complete answer"))

    # -- parser callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._headers = {}
        self._body = []
        self._headers_done = False
        self._framed = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        self._headers_done = True
        headers = self._headers
        self._framed = "content-length" in headers or "chunked" in headers.get(
            "transfer-encoding", "").lower()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self._status < 200:  # an interim answer: the real one follows
            self._headers_done = False
            return
        self._complete()

    # -- the exchange -------------------------------------------------------------------

    def _complete(self) -> None:
        # Read now: the parser forgets it once it is ready for the next message.
        self._keep_alive = self._framed and self._parser.should_keep_alive()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(Response(self._status, self._headers, b"".join(self._body)))

    def _fail(self, exc: BaseException) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.abort()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def timed_out(self, seconds: float) -> None:
        self._fail(HTTPError(f"no complete answer within {seconds:g} s"))

    def send(self, data: bytes) -> asyncio.Future[Response]:
        assert self.transport is not None
        self._waiter = waiter = self._loop.create_future()
        self._started = False
        self._headers_done = False
        self._keep_alive = False
        self.transport.write(data)
        return waiter

    @property
    def answer_started(self) -> bool:
        return self._started

    def reusable(self) -> bool:
        return (not self.closed and self._keep_alive
                and self.transport is not None and not self.transport.is_closing())


class HTTPClient:
    """Keep-alive HTTP/1.1 client for one lane (use from one event loop).

    ``timeout``: seconds for a whole attempt, connect to last byte.  ``tls``: the
    :class:`ssl.SSLContext` for https URLs (default: a verifying one).
    ``max_idle``: idle connections kept per origin.  ``trust_env``: route URLs that the
    environment's proxy variables cover through httpx (see the module docstring).
    """

    def __init__(self, *, timeout: float = 10.0, tls: ssl.SSLContext | None = None,
                 max_idle: int = 4, trust_env: bool = True) -> None:
        self._timeout = timeout
        self._tls = tls
        self._max_idle = max(1, max_idle)
        self._idle: dict[tuple[str, str, int], deque[_Connection]] = {}
        self._targets: dict[str, Target] = {}
        self._proxies: dict[str, str] = urllib.request.getproxies() if trust_env else {}
        self._proxied: dict[tuple[str, str], bool] = {}
        self._fallback: Any = None  # httpx.AsyncClient, made on first proxied request
        self._closed = False

    def _target(self, url: str) -> Target:
        target = self._targets.get(url)
        if target is None:
            if len(self._targets) >= URL_CACHE:
                self._targets.clear()
            target = self._targets[url] = parse_target(url)
        return target

    def _uses_proxy(self, target: Target) -> bool:
        if not self._proxies:
            return False
        key = (target.scheme, target.host)
        known = self._proxied.get(key)
        if known is None:
            proxy = self._proxies.get(target.scheme) or self._proxies.get("all")
            known = bool(proxy) and not urllib.request.proxy_bypass(target.host)
            self._proxied[key] = known
        return known

    async def request(self, method: str, url: str, *, headers: Mapping[str, str],
                      content: bytes) -> Response:
        """Send one request and return the complete answer; :class:`HTTPError` when
        there is none within ``timeout`` seconds (counted from this call)."""
        if self._closed:
            raise HTTPError("the client is closed")
        target = self._target(url)
        if self._uses_proxy(target):
            return await self._via_proxy(method, url, headers, content)
        data = encode_request(method, target, headers, content)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        conn = self._take_idle(target)
        if conn is not None:
            try:
                return await self._exchange(conn, target, data, deadline, loop)
            except HTTPError:
                if conn.answer_started or loop.time() >= deadline:
                    raise
                # The server closed the idle connection as we reused it: once more, fresh.
        conn = await self._connect(target, deadline, loop)
        return await self._exchange(conn, target, data, deadline, loop)

    def _take_idle(self, target: Target) -> _Connection | None:
        idle = self._idle.get(target.origin)
        while idle:
            conn = idle.pop()
            if conn.reusable():
                conn.reused = True
                return conn
            conn.abort()
        return None

    async def _connect(self, target: Target, deadline: float,
                       loop: asyncio.AbstractEventLoop) -> _Connection:
        tls: ssl.SSLContext | None = None
        if target.scheme == "https":
            if self._tls is None:
                self._tls = ssl.create_default_context()
            tls = self._tls
        left = deadline - loop.time()
        try:
            try:
                _, conn = await asyncio.wait_for(loop.create_connection(
                    lambda: _Connection(loop), target.host, target.port, ssl=tls,
                    server_hostname=target.host if tls is not None else None),
                    max(0.0, left))
            except RuntimeError:
                # asyncio resolves names on its default executor, which refuses work once
                # the interpreter is exiting: the exit flush of a script whose first
                # request is made then would lose its events.  Resolve here instead.
                conn = await self._connect_resolved(target, tls, deadline, loop)
        except asyncio.TimeoutError:
            raise HTTPError(f"connect timed out after {self._timeout:g} s") from None
        except (OSError, ssl.SSLError) as exc:
            raise HTTPError(f"cannot connect to {target.host}:{target.port}: "
                            f"{type(exc).__name__}: {exc}") from None
        return conn

    async def _connect_resolved(self, target: Target, tls: ssl.SSLContext | None,
                                deadline: float, loop: asyncio.AbstractEventLoop
                                ) -> _Connection:
        """Connect to ``target`` after resolving its name on this thread (blocking), each
        address in turn; used only where asyncio's resolver executor is gone."""
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        error: OSError = OSError(f"no address for {target.host}")
        for family, _, _, _, address in infos:
            host = str(address[0])  # the address as text (an IP literal): no lookup
            try:
                _, conn = await asyncio.wait_for(loop.create_connection(
                    lambda: _Connection(loop), host, target.port, family=family,
                    ssl=tls, server_hostname=target.host if tls is not None else None),
                    max(0.0, deadline - loop.time()))
                return conn
            except OSError as exc:
                error = exc
        raise error

    async def _exchange(self, conn: _Connection, target: Target, data: bytes,
                        deadline: float, loop: asyncio.AbstractEventLoop) -> Response:
        left = deadline - loop.time()
        waiter = conn.send(data)
        timer = loop.call_later(max(0.0, left), conn.timed_out, self._timeout)
        try:
            response = await waiter
        except BaseException:
            conn.abort()
            raise
        finally:
            timer.cancel()
        if conn.reusable() and not self._closed:
            idle = self._idle.setdefault(target.origin, deque())
            if len(idle) < self._max_idle:
                idle.append(conn)
                return response
        conn.abort()
        return response

    async def _via_proxy(self, method: str, url: str, headers: Mapping[str, str],
                         content: bytes) -> Response:
        import httpx

        if self._fallback is None:
            self._fallback = httpx.AsyncClient(
                timeout=httpx.Timeout(self._timeout), follow_redirects=False,
                trust_env=True, verify=self._tls if self._tls is not None else True)
        try:
            answer = await asyncio.wait_for(
                self._fallback.request(method, url, headers=dict(headers), content=content),
                self._timeout)
        except asyncio.TimeoutError:
            raise HTTPError(f"no complete answer within {self._timeout:g} s "
                            "(through the proxy)") from None
        except httpx.HTTPError as exc:
            raise HTTPError(f"{type(exc).__name__} through the proxy: {exc}") from None
        return Response(answer.status_code,
                        {k.lower(): v for k, v in answer.headers.items()}, answer.content)

    async def aclose(self) -> None:
        """Close every idle connection (and the proxy client).  Idempotent."""
        self._closed = True
        for idle in self._idle.values():
            while idle:
                idle.pop().abort()
        self._idle.clear()
        if self._fallback is not None:
            await self._fallback.aclose()
            self._fallback = None
