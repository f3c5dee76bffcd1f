"""Per-deployment capacity: the `DeploymentGate` protocol and its in-process implementation.

Dispatch asks the gate before every upstream attempt and tells it when the attempt (or
the stream it opened) is over:

    lease = await gate.acquire(dep, model, est_tokens)   # None: at capacity, skip dep
    ...                                                   # the attempt / the whole stream
    await gate.release(lease, actual_tokens)              # None: unknown, keep the estimate

`acquire` must not wait: a deployment at its limit (requests in flight >= max_concurrent,
requests in the last minute >= rpm, tokens in the last minute + est_tokens > tpm) answers
None at once and dispatch moves to the next deployment. `release` is called exactly once
per lease, even when the attempt is cancelled. A lease is opaque to dispatch.

`LocalGate` holds the limits for one process (asyncio, no locks needed: one event loop).
A Redis-backed gate with the same two methods makes them hold across replicas.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from proxy.policy.registry import Deployment, ModelSpec

WINDOW_S = 60.0


class DeploymentGate(Protocol):
    async def acquire(self, dep: Deployment, model: ModelSpec, est_tokens: int) -> object | None:
        """A lease for one attempt on `dep`, or None when `dep` is at capacity."""
        ...

    async def release(self, lease: object, actual_tokens: int | None) -> None:
        """The attempt is over; `actual_tokens` replaces the estimate in the tpm window."""
        ...


class _Unlimited:
    """The lease for a deployment without rpm/tpm/max_concurrent: nothing to count."""

    __slots__ = ()


UNLIMITED = _Unlimited()


@dataclass(slots=True)
class _Entry:
    at: float
    tokens: float
    live: bool = True  # still in its window's deque


@dataclass
class _Window:
    in_flight: int = 0
    calls: deque[float] = field(default_factory=deque)  # admission times (rpm)
    tokens: deque[_Entry] = field(default_factory=deque)  # tpm
    token_sum: float = 0.0

    def trim(self, now: float) -> None:
        horizon = now - WINDOW_S
        while self.calls and self.calls[0] <= horizon:
            self.calls.popleft()
        while self.tokens and self.tokens[0].at <= horizon:
            gone = self.tokens.popleft()
            gone.live = False
            self.token_sum -= gone.tokens


@dataclass(slots=True)
class LocalLease:
    deployment: str
    concurrent: bool  # counted against max_concurrent
    entry: _Entry | None  # its place in the tpm window


class LocalGate:
    """rpm / tpm over a sliding 60 s window and max_concurrent, for this process only."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[str, _Window] = {}

    async def acquire(self, dep: Deployment, model: ModelSpec, est_tokens: int) -> object | None:
        if dep.rpm is None and dep.tpm is None and dep.max_concurrent is None:
            return UNLIMITED
        w = self._windows.get(dep.id)
        if w is None:
            w = self._windows[dep.id] = _Window()
        now = self._clock()
        w.trim(now)
        if dep.max_concurrent is not None and w.in_flight >= dep.max_concurrent:
            return None
        if dep.rpm is not None and len(w.calls) >= dep.rpm:
            return None
        # A request larger than the whole tpm still passes when the window is empty,
        # otherwise it could never be sent.
        if dep.tpm is not None and w.token_sum > 0 and w.token_sum + est_tokens > dep.tpm:
            return None
        if dep.max_concurrent is not None:
            w.in_flight += 1
        if dep.rpm is not None:
            w.calls.append(now)
        entry = None
        if dep.tpm is not None:
            entry = _Entry(now, float(max(0, est_tokens)))
            w.tokens.append(entry)
            w.token_sum += entry.tokens
        return LocalLease(dep.id, dep.max_concurrent is not None, entry)

    async def release(self, lease: object, actual_tokens: int | None) -> None:
        if not isinstance(lease, LocalLease):
            return
        w = self._windows[lease.deployment]
        if lease.concurrent:
            w.in_flight -= 1
        entry = lease.entry
        if entry is not None and entry.live and actual_tokens is not None:
            new = float(max(0, actual_tokens))
            w.token_sum += new - entry.tokens
            entry.tokens = new

    def usage(self, dep_id: str) -> dict[str, float]:
        """In flight, requests and tokens in the current window (for the admin view)."""
        w = self._windows.get(dep_id)
        if w is None:
            return {"in_flight": 0, "requests_last_minute": 0, "tokens_last_minute": 0}
        w.trim(self._clock())
        return {"in_flight": w.in_flight, "requests_last_minute": len(w.calls), "tokens_last_minute": round(w.token_sum)}
