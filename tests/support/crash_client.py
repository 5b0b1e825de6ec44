"""The crash test's client, in a process of its own:
``python crash_client.py PORT COUNT THREADS OK_FILE KILL_EVERY KILLED_FILE``.

It asks for ``/products/p-<i>`` for i in 0..COUNT-1 from THREADS threads (one connection
per request, as gunicorn's sync workers close each).  For every answer that was a 200
with the whole page it appends ``p-<i>`` to OK_FILE (one ``write`` per line on an
``O_APPEND`` file, so the test can watch progress).  After every KILL_EVERY-th such
answer it SIGKILLs the worker that served it (named by the page's ``X-Worker`` header)
at once, and appends that pid to KILLED_FILE: the worker dies just after the client had
the whole response, where events built after the body was sent would be lost."""

from __future__ import annotations

import http.client
import os
import signal
import sys
import threading


def main() -> None:
    port, count, threads = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    ok_file, kill_every, killed_file = sys.argv[4], int(sys.argv[5]), sys.argv[6]
    ok = os.open(ok_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    killed = os.open(killed_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    lock = threading.Lock()
    next_id = iter(range(count))

    def work() -> None:
        while True:
            with lock:
                i = next(next_id, None)
            if i is None:
                return
            product = f"p-{i}"
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                connection.request("GET", f"/products/{product}")
                response = connection.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException):
                continue  # the worker was killed mid-request: no 200 reached us
            finally:
                connection.close()
            if response.status != 200 or not body.endswith(
                    f"<footer>{product}</footer></body></html>".encode()):
                continue
            os.write(ok, (product + "\n").encode())
            if kill_every and i % kill_every == kill_every - 1:
                worker = int(response.getheader("X-Worker") or 0)
                try:
                    os.kill(worker, signal.SIGKILL)
                except OSError:
                    continue  # already killed by another thread's request
                os.write(killed, f"{worker}\n".encode())

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    os.close(ok)
    os.close(killed)


if __name__ == "__main__":
    main()
