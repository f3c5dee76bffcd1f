"""Admission: one request's reservation in the limits store, taken as dispatch picks a deployment.

Dispatch asks its gate before every upstream attempt (proxy/dispatch/gate.py). For a chat request
that gate is an `Admission`: the first attempt's `acquire` is the request's admission, ONE
atomic script that checks and reserves the key's rpm / tpm / day, month, total and task
budgets together with the chosen deployment's rpm / tpm / max_concurrent. A later attempt on
another deployment or model swaps the deployment part (`reserve(replaces=...)`; the request
keeps its one request slot and its key-side reservation moves to the new estimate).

- The key over a limit -> the 429 propagates out of dispatch to the client.
- The deployment at capacity -> `acquire` answers None and dispatch tries the next one.
- The reservation lives until the request is over: `finish()` settles it to the real tokens
  and cost, or releases it when nothing was charged. `release(lease)` per attempt is a no-op:
  between attempts the deployment part is swapped by the next `reserve`.
- Cancelled while reserving (the client left): the admission script may already have run on the
  store, its reply still in flight. The reserve call is shielded and awaited to its end, so the
  reservation it took is recorded here and `finish()` (the accounting, shielded too) releases
  it, instead of leaving it pending until `reservation_ttl_s`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio

from proxy.keys.store import KeyRecord
from proxy.limits.format import DeploymentBusy
from proxy.limits.limiter import Limiter, Reservation
from proxy.policy.registry import Deployment, ModelSpec

if TYPE_CHECKING:
    from proxy.providers.base import Usage
    from proxy.routing.planning import Plan


@dataclass
class Admission:
    limiter: Limiter
    key: KeyRecord
    plan: Plan
    task_id: str | None = None
    agent: str | None = None
    reservation: Reservation | None = None

    async def acquire(self, dep: Deployment, model: ModelSpec, est_tokens: int) -> object | None:
        reserving = asyncio.ensure_future(
            self.limiter.reserve(
                self.key,
                dep,
                model=model.id,
                input_tokens=self.plan.input_tokens,
                output_tokens=self.plan.output_tokens_for(model),
                cost_usd=self.plan.estimated_cost_usd(model),
                task_id=self.task_id,
                agent=self.agent,
                replaces=self.reservation,
            )
        )
        try:
            self.reservation = await asyncio.shield(reserving)
        except DeploymentBusy:
            return None
        except asyncio.CancelledError:
            with anyio.CancelScope(shield=True):
                await self._keep(reserving)
            raise
        return self.reservation

    async def _keep(self, reserving: asyncio.Future[Reservation]) -> None:
        """After a cancellation: wait for the reserve call, and keep what it reserved for finish()."""
        try:
            self.reservation = await reserving
        except (Exception, asyncio.CancelledError):  # refused, store failed: nothing new was reserved
            return

    async def release(self, lease: object, actual_tokens: int | None) -> None:
        return None  # the request's reservation is settled once, by finish()

    @property
    def headers(self) -> dict[str, str]:
        return dict(self.reservation.headers) if self.reservation is not None else {}

    async def finish(self, usage: Usage | None, cost_usd: float, model: ModelSpec | None) -> None:
        """Settle to the real usage (a model answered, even partly) or release (nothing charged)."""
        res = self.reservation
        if res is None:
            return
        self.reservation = None
        if usage is not None and model is not None:
            await self.limiter.settle(
                res,
                input_tokens=usage.prompt_tokens,
                output_tokens=usage.completion_tokens,
                cost_usd=cost_usd,
                model=model.id,
            )
        else:
            await self.limiter.release(res)
