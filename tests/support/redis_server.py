"""A real ``redis-server`` for tests: its own free loopback port, a temporary directory,
no persistence, stopped (and waited for) at the end.

    with RedisServer(tmp_path) as server:
        url = server.url(prefix="t1")
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

BINARY = shutil.which("redis-server") or "/usr/bin/redis-server"


def available() -> bool:
    return Path(BINARY).exists()


def free_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = int(probe.getsockname()[1])
    probe.close()
    return port


class RedisServer:
    def __init__(self, directory: Path, *, password: str | None = None,
                 port: int | None = None) -> None:
        self.directory = directory
        self.password = password
        self.port = port or free_port()
        self._process: subprocess.Popen[bytes] | None = None

    def url(self, prefix: str | None = None, **options: str) -> str:
        auth = f":{self.password}@" if self.password else ""
        query = dict(options)
        if prefix:
            query["prefix"] = prefix
        tail = "&".join(f"{k}={v}" for k, v in query.items())
        return f"redis://{auth}127.0.0.1:{self.port}/0" + (f"?{tail}" if tail else "")

    def start(self) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [BINARY, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.directory), "--save", "", "--appendonly", "no",
                "--daemonize", "no", "--loglevel", "warning"]
        if self.password:
            args += ["--requirepass", self.password]
        self._process = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self._process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(64):  # +PONG, or -NOAUTH: either way it is up
                        return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError("redis-server did not start within 10 s")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
