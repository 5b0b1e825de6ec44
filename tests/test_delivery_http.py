"""The sender's HTTP client against real local servers: framing (Content-Length, chunked,
read-until-close), keep-alive reuse and a stale idle connection, TLS with a real
certificate, proxies from the environment, a bound on each attempt's total time (an API
that trickles its body), and no header values in errors."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.api_server import ApiServer, Reply
from support.delivery import product_viewed

from cdptrack import Tracker
from cdptrack.config import Config
from cdptrack.delivery.http import HTTPClient, HTTPError


class RawServer:
    """A TCP server on 127.0.0.1 whose ``handler(conn)`` is called per connection, in a
    thread; it counts connections."""

    def __init__(self, handler: Callable[[socket.socket], None]) -> None:
        self.handler = handler
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self.handler(conn)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self._stop = True
        self.sock.close()


def read_request(conn: socket.socket) -> bytes:
    """One request's head and body (Content-Length framed); b"" at end of stream."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    while len(body) < length:
        body += conn.recv(65536)
    return head + b"\r\n\r\n" + body


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[socket.socket], None]], RawServer]]:
    servers: list[RawServer] = []

    def make(handler: Callable[[socket.socket], None]) -> RawServer:
        server = RawServer(handler)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def post(client: HTTPClient, url: str, body: bytes = b'{"a":1}', **headers: str
               ) -> Any:
    return await client.request("POST", url, headers=headers, content=body)


def test_content_length_answers_and_keep_alive_reuse_one_connection() -> None:
    with ApiServer() as server:
        server.default = Reply(201, body='{"ok":true}')

        async def main() -> list[Any]:
            client = HTTPClient(timeout=5)
            out = [await post(client, server.url + f"/v1/e?i={i}", x_api_key="k")
                   for i in range(5)]
            await client.aclose()
            return out

        answers = run(main())
        assert [a.status_code for a in answers] == [201] * 5
        assert answers[0].content == b'{"ok":true}'
        assert answers[0].headers["content-length"] == "11"
        got = server.received()
        assert [r.path for r in got] == [f"/v1/e?i={i}" for i in range(5)]
        assert got[0].headers["x_api_key"] == "k" and got[0].body == b'{"a":1}'


def test_one_connection_serves_every_request_when_the_server_keeps_it_open(serve) -> None:
    def handler(conn: socket.socket) -> None:
        while read_request(conn):
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    server = serve(handler)

    async def main() -> list[int]:
        client = HTTPClient(timeout=5)
        out = [(await post(client, server.url + "/x")).status_code for _ in range(10)]
        await client.aclose()
        return out

    assert run(main()) == [200] * 10
    assert server.connections == 1


def test_chunked_answer_is_reassembled(serve) -> None:
    def handler(conn: socket.socket) -> None:
        while read_request(conn):
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"5\r\nhello\r\n")
            time.sleep(0.05)  # the rest in a later packet
            conn.sendall(b"7\r\n, world\r\n0\r\n\r\n")

    server = serve(handler)

    async def main() -> tuple[Any, Any]:
        client = HTTPClient(timeout=5)
        first = await post(client, server.url + "/x")
        second = await post(client, server.url + "/x")
        await client.aclose()
        return first, second

    first, second = run(main())
    assert (first.status_code, first.text) == (400, "hello, world")
    assert second.text == "hello, world"
    assert server.connections == 1  # chunked framing kept the connection usable


def test_answer_delimited_by_close_and_interim_100_are_handled(serve) -> None:
    def handler(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n"
                     b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\n\r\nbusy")
        conn.shutdown(socket.SHUT_WR)

    server = serve(handler)

    async def main() -> list[Any]:
        client = HTTPClient(timeout=5)
        out = [await post(client, server.url + "/x") for _ in range(2)]
        await client.aclose()
        return out

    answers = run(main())
    assert [(a.status_code, a.text, a.headers["retry-after"]) for a in answers] == [
        (503, "busy", "7")] * 2
    assert server.connections == 2  # not reused: the server closed it


def test_stale_idle_connection_is_replaced_without_an_error(serve) -> None:
    def handler(conn: socket.socket) -> None:
        read_request(conn)
        # Says keep-alive, then closes the idle connection (a server's idle timeout).
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        time.sleep(0.1)

    server = serve(handler)

    async def main() -> list[int]:
        client = HTTPClient(timeout=5)
        first = (await post(client, server.url + "/x")).status_code
        await asyncio.sleep(0.4)  # the server has closed it by now
        second = (await post(client, server.url + "/x")).status_code
        await client.aclose()
        return [first, second]

    assert run(main()) == [200, 200]
    assert server.connections == 2


def test_connection_refused_and_reset_mid_answer_are_http_errors(serve) -> None:
    def handler(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")

    server = serve(handler)
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    dead_port = free.getsockname()[1]
    free.close()

    async def main() -> list[str]:
        client = HTTPClient(timeout=5)
        errors = []
        for url in (f"http://127.0.0.1:{dead_port}/x", server.url + "/x"):
            with pytest.raises(HTTPError) as info:
                await post(client, url)
            errors.append(str(info.value))
        await client.aclose()
        return errors

    refused, cut = run(main())
    assert "cannot connect" in refused
    assert "before a complete answer" in cut


def test_a_trickling_answer_is_cut_at_the_attempt_timeout(serve) -> None:
    """Headers at once, then one body byte every 0.3 s for a minute: the gaps are short,
    the whole is not; the attempt ends at its total timeout."""
    stop = threading.Event()

    def handler(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 200\r\n\r\n")
        for _ in range(200):
            if stop.wait(0.3):
                return
            conn.sendall(b"x")

    server = serve(handler)

    async def main() -> str:
        client = HTTPClient(timeout=1.0)
        try:
            with pytest.raises(HTTPError) as info:
                await post(client, server.url + "/x")
        finally:
            await client.aclose()
        return str(info.value)

    try:
        assert "within 1 s" in run(main())
    finally:
        stop.set()


def test_a_trickling_api_cannot_hold_a_lane_past_its_retry_budget(serve) -> None:
    """The issue's case through the whole tracker: every answer trickles for a minute;
    with ``timeout=1`` and ``max_retry_time=3`` the event is dead-lettered as
    ``retry_time_exceeded`` and ``flush`` returns, long before the trickle would end."""
    stop = threading.Event()

    def handler(conn: socket.socket) -> None:
        if not read_request(conn):
            return
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 400\r\n\r\n")
        for _ in range(400):
            if stop.wait(0.2):
                return
            conn.sendall(b"x")

    server = serve(handler)
    config = Config(yespo_site_id="s", yespo_tracker_url=server.url + "/api/v2")
    tracker = Tracker(config, timeout=1.0, max_retry_time=3.0, backoff=0.1, max_backoff=0.2)
    try:
        tracker.capture(product_viewed(1))
        assert tracker.flush(40)
        letters = tracker.dead_letters()
        assert [(d.reason, d.status) for d in letters] == [("retry_time_exceeded", None)]
        assert "within 1 s" in letters[0].response
    finally:
        stop.set()
        tracker.shutdown(2)


def test_a_header_that_would_split_the_request_is_refused_without_its_value() -> None:
    async def main() -> str:
        client = HTTPClient(timeout=1)
        with pytest.raises(HTTPError) as info:
            await post(client, "http://127.0.0.1:9/x", authorization="Basic SECRET\r\nX: y")
        await client.aclose()
        return str(info.value)

    message = run(main())
    assert "authorization" in message and "SECRET" not in message


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_verifies_the_certificate_and_keeps_the_connection(tmp_path: Path, serve
                                                               ) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days",
                    "1", "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)

    def handler(conn: socket.socket) -> None:
        with server_tls.wrap_socket(conn, server_side=True) as tls:
            while read_request(tls):  # type: ignore[arg-type]
                tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecure")

    server = serve(handler)
    url = f"https://localhost:{server.port}/v1/batch"

    async def main(context: ssl.SSLContext) -> list[str]:
        client = HTTPClient(timeout=5, tls=context)
        try:
            return [(await post(client, url)).text for _ in range(3)]
        finally:
            await client.aclose()

    trusting = ssl.create_default_context(cafile=str(cert))
    assert run(main(trusting)) == ["secure"] * 3
    assert server.connections == 1
    with pytest.raises(HTTPError, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
        run(main(ssl.create_default_context()))  # the system store does not know it


def test_proxy_from_the_environment_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    with ApiServer() as proxy:
        proxy.default = Reply(200, body="via proxy")
        for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTPS_PROXY",
                     "https_proxy", "http_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy.url)

        async def main() -> Any:
            client = HTTPClient(timeout=5)
            try:
                return await post(client, "http://api.example.invalid/v1/event")
            finally:
                await client.aclose()

        answer = run(main())
        assert answer.text == "via proxy"
        assert proxy.received("http://")[0].path == "http://api.example.invalid/v1/event"


def test_an_answer_s_repr_shows_neither_its_headers_nor_its_body() -> None:
    """An API may echo the request (and its key) back; a repr in a log line must not."""
    from cdptrack.delivery.http import Response

    text = repr(Response(400, {"www-authenticate": "Basic Q0lPS0VZ"}, b"x-api-key: OPKEY"))
    assert "Q0lPS0VZ" not in text and "OPKEY" not in text and "400" in text
