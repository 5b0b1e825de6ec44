"""Sending from a process of its own: ``Config(sender="process")``, ``CDPTRACK_SENDER=process``.

With the memory outbox the sender is a thread of the shop's process: rendering, the HTTP
client and the system calls of every wire request take that process's CPU, and its
request threads wait for the GIL while the sender holds it (see benchmarks/README.md,
"What a shop pays").  With ``sender="process"`` the web process only builds each
request's events (on the request thread, after the response) and writes them, one line
of JSON per request, to a pipe; a child process (``python -m
cdptrack.delivery.sender_child``, one per web process, started on first use and again
after a fork) holds the memory outbox and runs the usual sender: lanes, batching,
retries, dead letters.  The child names itself ``cdptrack-sender`` (``ps``, ``top``).

What it guarantees, against the thread sender:

* ``capture`` still never blocks and never raises: the pipe is non-blocking.  While the
  child reads slower than the shop writes, up to ``max_queue`` events wait in this
  process; beyond that the new ones are dropped and counted (``dropped:queue_full``).
* Like the memory outbox, what the child holds is lost if the child is killed (the web
  process logs it and starts a new child for what comes next).  Unlike it, a web process
  that is killed does not lose what it already handed over: the child reads the pipe to
  its end, drains for ``flush_at_exit`` seconds, and exits.  The child ignores SIGINT
  and SIGTERM: it lives as long as its pipe, so a Ctrl-C or a server's SIGTERM to the
  process group never cuts a drain the web process asked for.
* ``flush`` and ``shutdown`` ask the child and wait for its answer (bounded);
  ``stats()`` are the child's counters plus the drops made in this process.
* ``on_error``, ``on_drop`` and ``on_identity`` run in this process: the child sends
  them back over its standard output and a reader thread here calls them (it sleeps in
  a blocking read otherwise, so it costs the shop nothing).
* The child gets the configuration, API keys included, over the pipe: never in its
  command line or environment.  Its log lines go to this process's standard error.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import IO, Any

from ..config import ENV_PREFIX, Config, Secret
from ..events import Event
from .callbacks import Callbacks
from .counters import Counters
from .outbox import DeadLetter

logger = logging.getLogger("cdptrack")
start_logger = logging.getLogger("cdptrack.start")  # as the thread sender's start line

CHILD_MODULE = "cdptrack.delivery.sender_child"
PIPE_SIZE = 1 << 20  # bytes asked of the kernel for the pipe (Linux: F_SETPIPE_SZ)
RESPAWN_PAUSE = 1.0  # seconds between starts of a child that keeps dying
REPLY_TIMEOUT = 2.0  # seconds to wait for stats from the child
FLUSH_MARGIN = 0.05  # seconds of a flush's budget left for the child's answer
_F_SETPIPE_SZ = 1031
# A forked process's copies of its parent's pipe objects (see _forget_inherited).
_INHERITED: list[subprocess.Popen[bytes]] = []


def encode_events(events: Sequence[Event | Mapping[str, Any]]) -> bytes:
    """One request's events as the line the child reads: ``{"op": "events", "events":
    [canonical event, ...]}`` (compact JSON, UTF-8), newline-terminated."""
    items = [e.to_dict() if isinstance(e, Event) else dict(e) for e in events]
    return json.dumps({"op": "events", "events": items}, separators=(",", ":"),
                      ensure_ascii=False, default=str).encode("utf-8") + b"\n"


def config_for_child(config: Config) -> dict[str, Any]:
    """``config`` as the child rebuilds it (``Config(**...)``): keys revealed (they go
    through the pipe only), the thread sender (the child sends itself), and no
    callables (``on_identity`` is called back here)."""
    out: dict[str, Any] = {}
    for f in fields(config):
        value = getattr(config, f.name)
        if f.name == "on_identity":
            continue
        out[f.name] = value.reveal() if isinstance(value, Secret) else value
    out["sender"] = "thread"
    out["handle_signals"] = False
    return out


class _Reply:
    __slots__ = ("done", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: dict[str, Any] | None = None


class SenderProcess:
    """This process's end of the child that sends (see the module docstring).

    ``options`` are the :class:`~cdptrack.tracker.Tracker` keyword arguments the child's
    tracker gets (``max_retry_time``, ``timeout``, ``concurrency``, ``backoff``, ...);
    ``counters`` and ``callbacks`` are the web-side tracker's.  Thread-safe.
    """

    def __init__(self, config: Config, *, options: Mapping[str, Any], counters: Counters,
                 callbacks: Callbacks, max_queue: int) -> None:
        self._config = config
        self._options = dict(options)
        self._counters = counters
        self._callbacks = callbacks
        self._max_waiting = max(1, max_queue)
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None  # the process that started the child
        self._fd = -1
        # Lines not yet written (the first possibly in part): bytes, events in it.
        self._waiting: deque[tuple[memoryview, int]] = deque()
        self._waiting_events = 0
        self._replies: dict[int, _Reply] = {}
        self._next_id = 0
        self._closing = False
        self._gone = False  # the reader saw the child's end (cheaper than polling it)
        self._started_at = -RESPAWN_PAUSE  # when the last child was started (or failed to)

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def child_pid(self) -> int | None:
        """The child's process id while it runs (benchmarks read its CPU)."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def running(self) -> bool:
        return self._live() is not None

    def _live(self) -> subprocess.Popen[bytes] | None:
        proc = self._proc
        if proc is None or self._gone or self._pid != os.getpid():
            return None
        return proc

    def start(self) -> bool:
        """Start the child unless it runs; False when it cannot be started now."""
        with self._lock:
            return self._ensure() is not None

    def _ensure(self) -> subprocess.Popen[bytes] | None:
        # Called with the lock held.
        if self._pid is not None and self._pid != os.getpid():
            self._forget_inherited()
        proc = self._live()
        if proc is not None:
            return proc
        if self._proc is not None:
            self._lost_child()
        # A child that dies as it starts is not started again more than once a second.
        if self._closing or time.monotonic() - self._started_at < RESPAWN_PAUSE:
            return None
        self._started_at = time.monotonic()
        try:
            return self._spawn()
        except Exception:
            logger.exception("cannot start the sender process; events are dropped "
                             "(counted as dropped:sender_process) until it starts")
            return None

    def _spawn(self) -> subprocess.Popen[bytes]:
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__))))
        # The child reads its settings from the pipe: no CDPTRACK_* variable (keys
        # among them) goes into its environment.
        env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_root, env.get("PYTHONPATH", "")) if p)
        proc = subprocess.Popen(
            [sys.executable, "-m", CHILD_MODULE], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, close_fds=True, env=env)
        assert proc.stdin is not None and proc.stdout is not None
        start = {"op": "start", "config": config_for_child(self._config),
                 "options": self._options,
                 "relay": [name for name in ("on_error", "on_drop", "on_identity")
                           if getattr(self._callbacks, name) is not None]}
        proc.stdin.write(json.dumps(start, default=str).encode("utf-8") + b"\n")
        proc.stdin.flush()
        fd = proc.stdin.fileno()
        with contextlib.suppress(ImportError, OSError):  # Linux: a larger pipe
            import fcntl
            fcntl.fcntl(fd, _F_SETPIPE_SZ, PIPE_SIZE)
        os.set_blocking(fd, False)
        self._proc, self._fd, self._pid = proc, fd, os.getpid()
        self._gone = False
        reader = threading.Thread(target=self._read_replies, args=(proc, proc.stdout),
                                  name="cdptrack-sender-replies", daemon=True)
        reader.start()
        enabled = ", ".join(self._config.enabled()) or "no destination"
        dry = " in dry run: nothing leaves" if self._config.dry_run else ""
        start_logger.info("sending to %s (memory outbox in sender process %d, pid %d)%s",
                          enabled, proc.pid, os.getpid(), dry)
        return proc

    def _forget_inherited(self) -> None:
        """In a forked child (gunicorn ``--preload``): the pipe belongs to the parent's
        sender process.  Close this copy of it without a word (else that process never
        sees its end) and start afresh, lazily."""
        proc = self._proc
        if proc is not None:
            # Closed by descriptor: the file objects' locks may have been held by the
            # parent's reader thread at the fork, and are never released here.  The
            # objects are kept for good so that they never close the numbers again.
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError, ValueError):
                        os.close(stream.fileno())
            _INHERITED.append(proc)
        self._reset()

    def after_fork(self) -> None:
        """Called in a forked child: see :meth:`_forget_inherited`."""
        if self._pid is not None and self._pid != os.getpid():
            self._forget_inherited()
        else:
            self._lock = threading.Lock()

    def _lost_child(self) -> None:
        # Called with the lock held, once the child has gone unexpectedly.
        proc = self._proc
        code = proc.poll() if proc is not None else None
        waiting = self._waiting_events
        if waiting:
            for name in self._config.enabled():
                self._counters.drop(name, "sender_process", waiting)
        if not self._closing:
            logger.warning("the sender process exited (status %s): the events it held are "
                           "lost; %d waiting here were dropped; a new one starts for what "
                           "comes next", code, waiting)
        self._close_pipe()
        self._proc = None
        self._waiting.clear()
        self._waiting_events = 0
        for reply in self._replies.values():
            reply.done.set()
        self._replies.clear()

    def _close_pipe(self) -> None:
        proc = self._proc
        if proc is not None and proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        self._fd = -1

    # -- the hot path ------------------------------------------------------------------

    def send(self, events: Sequence[Event | Mapping[str, Any]]) -> str | None:
        """Hand one request's events to the child.  Never blocks, never raises; returns
        None when they were accepted, else the reason they were not (``queue_full``,
        ``sender_process``, ``error``) for the caller to count."""
        if not events:
            return None
        try:
            line = encode_events(events)
        except Exception:
            logger.exception("encoding events for the sender process failed")
            return "error"
        with self._lock:
            if self._ensure() is None:
                return "sender_process"
            if self._waiting_events + len(events) > self._max_waiting:
                self._write_waiting()
                if self._waiting_events + len(events) > self._max_waiting:
                    return "queue_full"
            self._waiting.append((memoryview(line), len(events)))
            self._waiting_events += len(events)
            self._write_waiting()
        return None

    def _write_waiting(self) -> bool:
        """Write what waits, as far as the pipe takes it now.  Lock held.  True when
        nothing waits any more."""
        waiting = self._waiting
        while waiting:
            data, count = waiting[0]
            try:
                written = os.write(self._fd, data)
            except BlockingIOError:
                return False
            except OSError:  # EPIPE: the child is gone
                self._lost_child()
                return False
            if written < len(data):
                waiting[0] = (data[written:], count)
                return False
            waiting.popleft()
            self._waiting_events -= count
        return True

    def _write_all(self, deadline: float) -> bool:
        """Write what waits, waiting for the pipe until ``deadline``.  Lock held."""
        while not self._write_waiting():
            if self._proc is None or self._fd < 0:
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            select.select([], [self._fd], [], min(left, 0.05))
        return True

    # -- asking the child --------------------------------------------------------------

    def _call(self, op: str, wait: float, **fields: Any) -> dict[str, Any] | None:
        """Send ``op`` after everything written before it and wait for the answer;
        None when the child is gone or did not answer in ``wait`` seconds."""
        deadline = time.monotonic() + max(0.0, wait)
        with self._lock:
            if self._live() is None:
                return None
            self._next_id += 1
            ident = self._next_id
            reply = _Reply()
            self._replies[ident] = reply
            line = json.dumps({"op": op, "id": ident, **fields}).encode("utf-8") + b"\n"
            self._waiting.append((memoryview(line), 0))
            if not self._write_all(deadline):
                self._replies.pop(ident, None)
                return None
        reply.done.wait(max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._replies.pop(ident, None)
        return reply.value

    def flush(self, timeout: float | None) -> bool:
        """True once the child has delivered (or dead-lettered) everything handed to it
        so far, within ``timeout`` seconds (None: up to an hour)."""
        budget = 3600.0 if timeout is None else max(0.0, timeout)
        if self._proc is None and not self._waiting:
            return True
        # The child's own wait ends a little earlier, so that its answer is in time.
        answer = self._call("flush", budget, timeout=max(0.0, budget - FLUSH_MARGIN))
        return bool(answer and answer.get("ok"))

    def stats(self) -> dict[str, Any] | None:
        """The child's ``{"stats": {...}, "pending": n}``, or None when none runs."""
        return self._call("stats", REPLY_TIMEOUT)

    def dead_letters(self, limit: int, destination: str | None) -> list[DeadLetter]:
        """The child's dead letters (its memory outbox keeps the last ones)."""
        answer = self._call("dead_letters", REPLY_TIMEOUT, limit=limit,
                            destination=destination)
        letters = answer.get("letters") if answer else None
        return [DeadLetter(**letter) for letter in letters or ()]

    def replay_dead(self, ids: list[int] | None, destination: str | None) -> int:
        """Have the child queue its dead letters again; how many."""
        answer = self._call("replay", REPLY_TIMEOUT, ids=ids, destination=destination)
        return int(answer.get("moved", 0)) if answer else 0

    def shutdown(self, timeout: float) -> dict[str, Any] | None:
        """Stop intake, let the child drain for up to ``timeout`` seconds and exit.
        Returns its last ``{"ok", "stats", "pending"}`` (``{"ok": False}`` when it did
        not answer), None when none ran.  Idempotent."""
        with self._lock:
            self._closing = True
            started = self._live() is not None
        if not started:
            return None
        answer = self._call("shutdown", timeout + 2.0, timeout=timeout) or {"ok": False}
        with self._lock:
            self._close_pipe()
            proc = self._proc
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(2.0)
        return answer

    # -- the reader thread -------------------------------------------------------------

    def _read_replies(self, proc: subprocess.Popen[bytes], stream: IO[bytes]) -> None:
        try:
            for line in stream:
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                self._dispatch(message)
        except Exception:  # pragma: no cover - a closed stream at exit
            logger.debug("reading the sender process's answers stopped", exc_info=True)
        finally:
            with contextlib.suppress(Exception):
                stream.close()
            with self._lock:
                if self._proc is proc:
                    self._gone = True
                    for reply in self._replies.values():
                        reply.done.set()

    def _dispatch(self, message: Mapping[str, Any]) -> None:
        op = message.get("op")
        if op == "reply":
            with self._lock:
                reply = self._replies.get(int(message.get("id", 0)))
            if reply is not None:
                reply.value = dict(message)
                reply.done.set()
        elif op == "error":
            letter = message.get("letter") or {}
            with contextlib.suppress(TypeError):
                self._callbacks.error(DeadLetter(**letter))
        elif op == "drop":
            event: Any = message.get("event")
            with contextlib.suppress(Exception):
                event = Event.from_dict(event)
            self._callbacks.drop(event, str(message.get("destination")),
                                 str(message.get("reason")))
        elif op == "identity":
            call = self._callbacks.on_identity
            if call is not None:
                try:
                    call(str(message.get("user_id")), str(message.get("identity_id")))
                except Exception:
                    self._counters.add("orangepill", "on_identity_error")
                    logger.exception("the on_identity callback raised; ignored")


__all__ = ["CHILD_MODULE", "SenderProcess", "config_for_child", "encode_events"]
