"""Failures on a schedule, to test how a shop's delivery copes with a flaky API.

A plan is either random (``refuse:0.2,503:0.2,429:0.1``: each API request draws once,
with these probabilities) or a deterministic cycle (every N-th API request fails with one
mode).  Modes: ``refuse`` (the connection is closed without an answer), ``slow`` (the
answer is delayed by ``slow_seconds``), or any HTTP status from 400 to 599 (``429`` and
``503`` carry ``Retry-After``).  Only the four APIs' endpoints fail; the inspector never.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass

MODES_HELP = "refuse, slow, or an HTTP status 400-599 (e.g. 429, 500, 503)"


class FaultSpecError(ValueError):
    """A ``--fail`` specification that cannot be read."""


@dataclass(frozen=True, slots=True)
class Fault:
    """What to do to one request instead of (or before) answering it."""

    mode: str  # "refuse", "slow" or a status code as text
    retry_after: int = 1
    slow_seconds: float = 2.0

    @property
    def status(self) -> int | None:
        return int(self.mode) if self.mode.isdigit() else None

    @property
    def label(self) -> str:
        return self.mode


def _check_mode(mode: str) -> str:
    mode = mode.strip().lower()
    if mode in ("refuse", "slow"):
        return mode
    if mode.isdigit() and 400 <= int(mode) <= 599:
        return mode
    raise FaultSpecError(f"unknown failure mode {mode!r}; use {MODES_HELP}")


class FailurePlan:
    """Decides, request by request, whether the sink fails and how.  Thread-safe."""

    def __init__(
        self,
        chances: dict[str, float] | None = None,
        *,
        every: int | None = None,
        mode: str = "503",
        seed: int | None = None,
        retry_after: int = 1,
        slow_seconds: float = 2.0,
    ) -> None:
        self.chances = {_check_mode(m): p for m, p in (chances or {}).items()}
        for m, p in self.chances.items():
            if not 0 <= p <= 1:
                raise FaultSpecError(f"probability for {m} must be within 0..1, got {p}")
        if sum(self.chances.values()) > 1 + 1e-9:
            raise FaultSpecError("failure probabilities add up to more than 1")
        if every is not None and every < 1:
            raise FaultSpecError("--fail-every must be at least 1")
        self.every = every
        self.mode = _check_mode(mode)
        self.retry_after = retry_after
        self.slow_seconds = slow_seconds
        self._random = random.Random(seed)
        self._count = 0
        self._lock = threading.Lock()

    @classmethod
    def parse(
        cls,
        spec: str | None = None,
        *,
        every: int | None = None,
        mode: str = "503",
        seed: int | None = None,
        retry_after: int = 1,
        slow_seconds: float = 2.0,
    ) -> FailurePlan:
        """``"refuse:0.2,503:0.2,429:0.1"`` (probabilities), and/or ``every=N``."""
        chances: dict[str, float] = {}
        for part in (spec or "").split(","):
            if not part.strip():
                continue
            name, sep, chance = part.partition(":")
            if not sep:
                raise FaultSpecError(f"expected MODE:PROBABILITY, got {part.strip()!r}")
            mode = _check_mode(name)
            try:
                chances[mode] = float(chance)
            except ValueError as err:
                raise FaultSpecError(f"bad probability in {part.strip()!r}") from err
        return cls(chances, every=every, mode=mode, seed=seed, retry_after=retry_after,
                   slow_seconds=slow_seconds)

    def describe(self) -> str:
        parts = [f"{m} {p:.0%}" for m, p in self.chances.items()]
        if self.every:
            parts.append(f"{self.mode} on every {self.every}. request")
        return ", ".join(parts) or "never"

    def next(self) -> Fault | None:
        """The fault for the next API request, or None to answer it normally."""
        with self._lock:
            self._count += 1
            if self.every and self._count % self.every == 0:
                return self._fault(self.mode)
            if self.chances:
                draw = self._random.random()
                total = 0.0
                for mode, chance in self.chances.items():
                    total += chance
                    if draw < total:
                        return self._fault(mode)
        return None

    def _fault(self, mode: str) -> Fault:
        return Fault(mode, retry_after=self.retry_after, slow_seconds=self.slow_seconds)
