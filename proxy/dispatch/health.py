"""Deployment health: a circuit breaker per (deployment, model), and requests in flight.

    closed --(failures in window)--> open --(cooldown_s)--> half_open --probe ok--> closed
                                       ^------------------ probe failed ---------'

A breaker counts attempt results in a sliding window of `window_s` (12 buckets). It opens
when the window holds at least `failures` failures and at least `failure_ratio` of the
window's attempts failed. Only retryable failures count (429, 5xx, timeouts, refused
connections, garbage); a 4xx is the request's fault. While open, dispatch skips the
deployment for that model. Once cooldown_s has passed, `allow()` lets exactly one probe
through (half-open); its success closes the breaker, its failure re-opens it, and a probe
that ends neutrally (a 4xx, a cancelled request, a capacity skip) frees the slot for the
next request.

Breakers are per (deployment, model), not per deployment: one overloaded model behind a
provider's endpoint must not take the endpoint's other models out. A deployment's state
(admin view, metrics) is the worst of its models' breakers.

State is per process (like uvicorn workers, each learns on its own); nothing here awaits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from proxy.dispatch.deployments import DeploymentTable
from proxy.policy.dispatch import Cooldown

CLOSED, HALF_OPEN, OPEN = "closed", "half_open", "open"
SEVERITY = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}
BUCKETS = 12


class Ticket:
    """What `allow()` grants: an ordinary attempt, or the half-open breaker's one probe."""

    __slots__ = ("probe",)

    def __init__(self, probe: bool) -> None:
        self.probe = probe


PASS = Ticket(False)
PROBE = Ticket(True)


class Breaker:
    __slots__ = ("state", "opened_at", "probing", "opens", "last_error", "_width", "_slot", "_ok", "_fail")

    def __init__(self, window_s: float) -> None:
        self.state = CLOSED
        self.opened_at = 0.0
        self.probing = False
        self.opens = 0
        self.last_error: str | None = None
        self._width = window_s / BUCKETS
        self._slot = [-1] * BUCKETS  # absolute bucket number each slot holds
        self._ok = [0] * BUCKETS
        self._fail = [0] * BUCKETS

    def count(self, now: float, ok: bool) -> None:
        n = int(now // self._width)
        i = n % BUCKETS
        if self._slot[i] != n:
            self._slot[i], self._ok[i], self._fail[i] = n, 0, 0
        if ok:
            self._ok[i] += 1
        else:
            self._fail[i] += 1

    def window(self, now: float) -> tuple[int, int]:
        """(successes, failures) in the window ending now."""
        n = int(now // self._width)
        ok = fail = 0
        for i in range(BUCKETS):
            if n - self._slot[i] < BUCKETS:
                ok += self._ok[i]
                fail += self._fail[i]
        return ok, fail

    def forget(self) -> None:
        self._slot = [-1] * BUCKETS

    def effective(self, now: float, cooldown_s: float) -> str:
        if self.state == OPEN and now >= self.opened_at + cooldown_s:
            return HALF_OPEN  # cooled down: the next request probes
        return self.state


class DeploymentHealth:
    """Breakers and in-flight counts for every deployment; `snapshot()` for admin and metrics."""

    def __init__(
        self,
        table: DeploymentTable,
        cooldown: Cooldown,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str, str], None] | None = None,
    ) -> None:
        self.table = table
        self.cfg = cooldown
        self._clock = clock
        self._breakers: dict[tuple[str, str], Breaker] = {}
        self._tripped: set[tuple[str, str]] = set()  # breakers not closed
        self._in_flight: dict[str, int] = {d.id: 0 for d in table.deployments}
        self.on_change = on_change  # (deployment id, its worst state) on every transition

    # ── per attempt ─────────────────────────────────────────────────────────
    def allow(self, dep_id: str, model_id: str) -> Ticket | None:
        """PASS, PROBE (the half-open breaker's single probe) or None (open: skip it)."""
        b = self._breakers.get((dep_id, model_id))
        if b is None or b.state == CLOSED:
            return PASS
        if b.state == OPEN:
            if self._clock() < b.opened_at + self.cfg.cooldown_s:
                return None
            self._set(b, dep_id, model_id, HALF_OPEN)
        if b.probing:
            return None
        b.probing = True
        return PROBE

    def success(self, dep_id: str, model_id: str, ticket: Ticket) -> None:
        b = self._breaker(dep_id, model_id)
        b.count(self._clock(), True)
        if ticket.probe:
            b.probing = False
            b.forget()  # the failures that opened it are history now
            self._set(b, dep_id, model_id, CLOSED)

    def failure(self, dep_id: str, model_id: str, ticket: Ticket, reason: str) -> None:
        """A retryable failure (never a 4xx) of an attempt admitted with `ticket`."""
        b = self._breaker(dep_id, model_id)
        now = self._clock()
        b.count(now, False)
        b.last_error = reason
        if ticket.probe:
            b.probing = False
            self._open(b, dep_id, model_id, now)
        elif b.state == CLOSED:
            ok, fail = b.window(now)
            if fail >= self.cfg.failures and fail >= self.cfg.failure_ratio * (ok + fail):
                self._open(b, dep_id, model_id, now)
        # open / half-open: a late result of an attempt admitted earlier changes nothing

    def trip(self, dep_id: str, model_id: str, reason: str) -> None:
        """Open the breaker now: the deployment said the model is not there (e.g. a 404)."""
        b = self._breaker(dep_id, model_id)
        b.last_error = reason
        b.probing = False
        self._open(b, dep_id, model_id, self._clock())

    def neutral(self, dep_id: str, model_id: str, ticket: Ticket) -> None:
        """The attempt says nothing about the deployment (4xx, cancelled, skipped)."""
        if ticket.probe:
            b = self._breakers.get((dep_id, model_id))
            if b is not None:
                b.probing = False

    def begin(self, dep_id: str) -> None:
        self._in_flight[dep_id] += 1

    def end(self, dep_id: str) -> None:
        self._in_flight[dep_id] -= 1

    def in_flight(self, dep_id: str) -> int:
        return self._in_flight.get(dep_id, 0)

    # ── queries ─────────────────────────────────────────────────────────────
    def is_open(self, dep_id: str, model_id: str) -> bool:
        b = self._breakers.get((dep_id, model_id))
        return b is not None and b.effective(self._clock(), self.cfg.cooldown_s) == OPEN

    def available_models(self) -> frozenset[str]:
        """Models with a deployment that has credentials and is not open for that model."""
        if not self._tripped:
            return self.table.usable_models
        return frozenset(m for m in self.table.usable_models if any(not self.is_open(d.id, m) for d in self.table.usable[m]))

    def retry_in_s(self, model_ids: list[str]) -> float | None:
        """Seconds until the first open breaker among these models' deployments half-opens."""
        now, waits = self._clock(), []
        for m in model_ids:
            for d in self.table.for_model(m):
                b = self._breakers.get((d.id, m))
                if b is not None and b.state == OPEN:
                    waits.append(max(0.0, b.opened_at + self.cfg.cooldown_s - now))
        return min(waits) if waits else None

    def last_error(self, model_ids: list[str]) -> str | None:
        """The most recent failure recorded by an open breaker among these models' deployments."""
        for m in model_ids:
            for d in self.table.for_model(m):
                b = self._breakers.get((d.id, m))
                if b is not None and b.state != CLOSED and b.last_error:
                    return b.last_error
        return None

    async def wait_idle(self, timeout: float) -> bool:
        """Wait (at shutdown) until no upstream call is in flight; False on timeout."""
        deadline = self._clock() + timeout
        while any(self._in_flight.values()):
            if self._clock() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    def snapshot(self) -> list[dict[str, Any]]:
        """Per deployment: provider, limits, in-flight, worst breaker state, per-model breakers."""
        now, cool = self._clock(), self.cfg.cooldown_s
        out = []
        for dep in self.table.deployments:
            models: list[dict[str, Any]] = []
            for m in self.table.serves[dep.id]:
                b = self._breakers.get((dep.id, m))
                state = b.effective(now, cool) if b else CLOSED
                ok, fail = b.window(now) if b else (0, 0)
                remaining = max(0.0, b.opened_at + cool - now) if b and state == OPEN else 0.0
                models.append(
                    {
                        "id": m,
                        "strategy": self.table.strategy.get(m, "failover"),
                        "state": state,
                        "recent_failures": fail,
                        "recent_successes": ok,
                        "cooldown_remaining_s": round(remaining, 3),
                        "times_opened": b.opens if b else 0,
                        "last_error": b.last_error if b else None,
                    }
                )
            worst = max((x["state"] for x in models), key=SEVERITY.__getitem__, default=CLOSED)
            out.append(
                {
                    "id": dep.id,
                    "provider": dep.provider,
                    "has_credentials": self.table.has_credentials[dep.id],
                    "priority": dep.priority,
                    "weight": dep.weight,
                    "limits": {"rpm": dep.rpm, "tpm": dep.tpm, "max_concurrent": dep.max_concurrent},
                    "in_flight": self._in_flight[dep.id],
                    "state": worst,
                    "recent_failures": sum(x["recent_failures"] for x in models),
                    "cooldown_remaining_s": max((x["cooldown_remaining_s"] for x in models), default=0.0),
                    "models": models,
                }
            )
        return out

    # ── internals ───────────────────────────────────────────────────────────
    def _breaker(self, dep_id: str, model_id: str) -> Breaker:
        b = self._breakers.get((dep_id, model_id))
        if b is None:
            b = self._breakers[(dep_id, model_id)] = Breaker(self.cfg.window_s)
        return b

    def _open(self, b: Breaker, dep_id: str, model_id: str, now: float) -> None:
        b.opened_at = now
        b.opens += 1
        self._set(b, dep_id, model_id, OPEN)

    def _set(self, b: Breaker, dep_id: str, model_id: str, state: str) -> None:
        before = self.deployment_state(dep_id) if self.on_change is not None else CLOSED
        b.state = state
        if state == CLOSED:
            self._tripped.discard((dep_id, model_id))
        else:
            self._tripped.add((dep_id, model_id))
        if self.on_change is not None:
            after = self.deployment_state(dep_id)
            if after != before or state == OPEN:  # every opening is reported (and counted)
                self.on_change(dep_id, after)

    def deployment_state(self, dep_id: str) -> str:
        """The worst state among the deployment's breakers (for a per-deployment gauge)."""
        worst = CLOSED
        for (d, _), b in self._breakers.items():
            if d == dep_id and SEVERITY[b.state] > SEVERITY[worst]:
                worst = b.state
        return worst
