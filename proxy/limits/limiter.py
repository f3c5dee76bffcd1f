"""Admission and settlement against the limits store: rate limits, budgets, concurrency, usage.

Call points (the pipeline):
    res = await limiter.reserve(key, deployment, model=..., input_tokens=..., output_tokens=...,
                                cost_usd=..., task_id=..., agent=...)      # before dispatch
    response.headers.update(res.headers)                                   # x-ratelimit-*
    await limiter.settle(res, input_tokens=..., output_tokens=..., cost_usd=...)   # after the call
    await limiter.release(res)            # the call failed before the upstream charged anything
    res = await limiter.reserve(..., replaces=res)   # a fallback step (other model/deployment)
    left = await limiter.budget_remaining_usd(key, task_id)   # for selection (homeostasis)
    usage = await limiter.usage.key_usage(key_id)              # admin (proxy/limits/usage.py)
Refusals: KeyRateLimited, DeploymentBusy (429 rate_limit_exceeded), KeyBudgetExceeded (429
budget_exceeded, with `remaining_usd` for re-selecting a cheaper model), StoreUnavailable (503).

Algorithm: a sliding log (a sorted set of this minute's admissions, "rid|tokens" scored by the
admission time in ms) for each key's and each deployment's RPM and TPM, with a running token sum.
Chosen over GCRA because it is exact: "rpm 100" means at most 100 admissions in *any* 60 s
window, while GCRA (a token bucket) with burst = limit lets up to ~2x the limit through in a
rolling minute, or with a small burst refuses legitimate bursts. The log also gives precise reset
times (when the oldest entry leaves), and lets settle rewrite one request's tokens in place. The
cost, O(log n) per call and one small entry per request per window, is fine at API request
rates. Entries are pruned on each call and every structure has a TTL.

Budgets: settled spend lives in per-day / per-month usage hashes and a total counter (integer
nano-USD). Reservations live in a pending sorted set scored by their expiry with a running sum,
so a crash between reserve and settle cannot leak: the entry expires after
`policy.limits.reservation_ttl_s`, is pruned by the next admission and stops counting
(deployment in-flight entries expire the same way; window entries leave with their minute).
Task budgets (X-Task-Id, scoped to the key) use the same scheme in the task's hash.

Time is the Redis server's clock (TIME in the script), so replicas with skewed clocks share one
window; the embedded store (one process) uses a steady clock (the wall clock at start, then monotonic). Day and month boundaries are
UTC from this process's clock. The checks themselves are the admission contract
(`proxy/limits/scripts.py`): Lua on Redis, or the same logic in-process for the embedded store.

Guarantee ("holds exactly"), per key and per deployment, while the store is reachable:
- Requests: at most `rpm` admissions in any window of 60 s. Released requests keep their slot
  (the client did make them) unless `release(refund_request=True)`.
- Tokens: at admission, the reserved tokens (estimated input + requested max output) of the
  requests in the window never exceed `tpm`. After settle an entry holds the real tokens, so real
  tokens in a window exceed `tpm` only by the under-estimate of input tokens.
- USD budgets (day, month, total, task): every admission satisfies
  settled spend + live reservations + this estimate <= budget, atomically. So final spend
  exceeds a budget by at most the sum, over requests in flight together, of (actual - estimated)
  where positive: zero when the estimate is an upper bound (max output tokens priced in), i.e.
  zero beyond estimate error. Requests with an estimated cost of 0 (local models) are never
  stopped by a USD budget. A reservation that expires unsettled (a crash, or a call longer than
  reservation_ttl_s) stops counting, and any spend it had is never recorded.
- Atomicity across key and deployment: on one Redis node (or the embedded store) one script
  call checks and reserves both (in-process: one call that never awaits). On Redis Cluster (`per_slot=True`) the key's section runs first
  on its slot, then the deployment's on its slot; if the deployment refuses, the key's
  reservation is removed again (compensation). Each slot's limits still hold exactly; the only
  effect of the split is that a concurrent request of the same key may be refused during that
  one round trip (a false 429), never an extra admission. (A crash between the two calls leaves
  the key's reservation to expire like any other.)
- Store unreachable: `policy.limits.on_store_error` = fail_closed -> 503 (StoreUnavailable);
  fail_open -> admitted without any reservation (no limit holds), counted in `stats` and
  reported to `on_store_error`. How a call is queued, timed out and classified (a burst on a
  healthy store is never a failure): `proxy/limits/guard.py`; after a failure the store is
  skipped for `retry_interval_s`, then tried again.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from redis.asyncio.cluster import RedisCluster

from proxy.errors import StoreUnavailable
from proxy.keys.store import KeyRecord
from proxy.limits.format import NUSD_PER_USD, RejectionContext, next_period_start, rate_limit_headers, rejection_error
from proxy.limits.guard import LimiterStats, StoreFailure, StoreGuard
from proxy.limits.reservation import Reservation, amount, usd_to_nusd
from proxy.limits.scripts import scripts_of
from proxy.limits.store import gate_of
from proxy.limits.usage import DAY_RETENTION, MONTH_RETENTION, TOTAL_TTL_S, StoreLayout, UsageStore, task_name
from proxy.policy.limits import LimitsPolicy
from proxy.policy.registry import Deployment

__all__ = ["Limiter", "LimiterStats", "Reservation", "usd_to_nusd"]


class Limiter:
    def __init__(
        self,
        redis: Any,
        policy: LimitsPolicy,
        *,
        prefix: str = "ar",
        window_s: float = 60.0,
        per_slot: bool | None = None,
        clock: Callable[[], float] | None = None,
        on_store_error: Callable[[str, BaseException], None] | None = None,
        on_store_call: Callable[..., None] | None = None,
        retry_interval_s: float = 1.0,
    ) -> None:
        self.redis = redis
        self.policy = policy
        self.prefix = prefix
        self.window_ms = int(window_s * 1000)
        if per_slot is None:
            per_slot = isinstance(redis, RedisCluster)
        self.per_slot = per_slot
        self.clock = clock  # None: the store's clock for windows, time.time() for periods
        self.stats = LimiterStats()
        self.guard = StoreGuard(
            gate_of(redis), op_timeout_s=policy.store_timeout_s * 8, retry_interval_s=retry_interval_s,
            fail_mode=policy.on_store_error, stats=self.stats, on_store_error=on_store_error, on_store_call=on_store_call,
        )  # fmt: skip
        self.layout = StoreLayout(prefix)
        self.scripts = scripts_of(redis)  # Lua on Redis, or in-process for the embedded store
        self.usage = UsageStore(self.scripts, self.layout, self._now_s)

    async def register_scripts(self) -> None:
        await self.scripts.register()

    def _now_s(self) -> float:
        return self.clock() if self.clock else time.time()

    def _task_limits(self, key: KeyRecord) -> tuple[float | None, int | None]:
        task = self.policy.task
        return (
            key.task_max_cost_usd if key.task_max_cost_usd is not None else task.max_cost_usd,
            key.task_max_tokens if key.task_max_tokens is not None else task.max_tokens,
        )

    # ------------------------------------------------------------------ store access
    async def _call(self, op: str, fn: Callable[[], Any]) -> Any:
        if not self.scripts.in_process:
            return await self.guard.call(op, fn)
        # in-process (the embedded store): no connection to queue for, no wire to time out or fail
        started = time.perf_counter()
        result = await fn()
        if self.guard.on_store_call is not None:
            self.guard.on_store_call(op, time.perf_counter() - started, failure=None)
        return result

    # ------------------------------------------------------------------ admission
    async def reserve(
        self,
        key: KeyRecord,
        deployment: Deployment | None,
        *,
        model: str,
        input_tokens: int,
        output_tokens: int,
        cost_usd: float,
        task_id: str | None = None,
        agent: str | None = None,
        replaces: Reservation | None = None,
    ) -> Reservation:
        """Check and reserve every limit at once; raise the 429 for the first one that would break.

        Raises KeyRateLimited / KeyBudgetExceeded / DeploymentBusy (429) or StoreUnavailable (503,
        fail_closed). With `replaces`, the earlier reservation of the same request is swapped
        for this one atomically on the key side (its request slot is kept, so a fallback does
        not count as a second request); its deployment part is released first. If this one is
        refused, the earlier one's key part is still held: release it.
        """
        tokens = amount(max(int(input_tokens), 0) + max(int(output_tokens), 0))
        day, month, now = self.usage.periods()
        task_cost, task_tokens = self._task_limits(key) if task_id else (None, None)
        tracked_task = task_id is not None and (task_cost is not None or task_tokens is not None)
        task_ttl = max(self.policy.task.ttl_s, self.policy.reservation_ttl_s + 60)
        res = Reservation(
            rid=os.urandom(8).hex(),  # 16 hex digits, as uuid4().hex[:16] gave, without the UUID object
            key_id=key.id,
            model=model,
            deployment_id=deployment.id if deployment else None,
            tokens=tokens,
            nusd=amount(usd_to_nusd(cost_usd)),
            task=task_name(task_id) if tracked_task and task_id else None,
            task_ttl_s=task_ttl if tracked_task else None,
            agent=agent,
        )
        sections: list[tuple[str, list[str], dict[str, Any]]] = []
        k = self._key_section(key, res, task_cost, task_tokens, replaces)
        if key.has_rate_limits or key.has_budgets or "task" in k or "prev" in k:
            sections.append(("k", self.layout.key_keys(key.id, res.task, day, month), k))
        if deployment is not None and (deployment.rpm or deployment.tpm or deployment.max_concurrent):
            d = {"win": self.window_ms, "rpm": deployment.rpm, "tpm": deployment.tpm,
                 "conc": deployment.max_concurrent, "tok": tokens, "wm": res.window_member, "rid": res.rid}  # fmt: skip
            sections.append(("d", self.layout.dep_keys(deployment.id), _compact(d)))
        if replaces is not None and replaces.deployment_id:
            await self._release_parts(replaces, key_side=False, dep_side=True, drop=False)
        if not sections:
            return res
        base: dict[str, Any] = {"ttl": self.policy.reservation_ttl_s * 1000}
        if self.clock:
            base["now"] = int(self.clock() * 1000)
        try:
            result = await self._admit_sections(res, base, sections)
        except StoreFailure:
            return self._store_down_admission(res)
        if not result["ok"]:
            raise rejection_error(result, self._context(key, res, deployment, task_id, task_cost, task_tokens, now))
        left = {period: nusd / NUSD_PER_USD for period, nusd in (result.get("b") or {}).items()}
        return replace(res, headers=rate_limit_headers(result.get("k")), budget_left_usd=left)

    def _key_section(
        self, key: KeyRecord, res: Reservation, task_cost: float | None, task_tokens: int | None,
        replaces: Reservation | None,
    ) -> dict[str, Any]:  # fmt: skip
        """admit.lua's `k` parameters (see its header)."""
        k: dict[str, Any] = {
            "win": self.window_ms, "rpm": key.rpm, "tpm": key.tpm, "tok": res.tokens, "nusd": res.nusd,
            "wm": res.window_member, "pm": res.pending_member, "tm": res.task_member,
        }  # fmt: skip
        for name, usd in (("bday", key.budget_usd_day), ("bmon", key.budget_usd_month), ("btot", key.budget_usd_total)):
            if usd is not None:
                k[name] = usd_to_nusd(usd)
        if res.task:
            cost = usd_to_nusd(task_cost) if task_cost is not None else None
            k["task"] = _compact({"cost": cost, "tok": task_tokens, "ttl": res.task_ttl_s})
        if replaces is not None and replaces.key_id == key.id and not replaces.degraded:
            k["prev"] = {"w": replaces.window_member, "p": replaces.pending_member}
            if replaces.task:
                k["prev"]["t"] = replaces.task_member
        return _compact(k)

    async def _admit_sections(
        self, res: Reservation, base: dict[str, Any], sections: list[tuple[str, list[str], dict[str, Any]]]
    ) -> dict[str, Any]:
        """One script call for all sections (one node), or one per slot in order with compensation."""
        if not self.per_slot or len(sections) == 1:
            keys = [k for _, names, _ in sections for k in names]
            params = {**base, **{name: part for name, _, part in sections}}
            return await self._call("reserve", lambda: self.scripts.admit(keys, params))
        (_, kkeys, kpart), (_, dkeys, dpart) = sections
        kparams, dparams = {**base, "k": kpart}, {**base, "d": dpart}
        result = await self._call("reserve", lambda: self.scripts.admit(kkeys, kparams))
        if not result["ok"]:
            return result
        dres = await self._call("reserve", lambda: self.scripts.admit(dkeys, dparams))
        if dres["ok"]:
            return result
        await self._release_parts(res, key_side=True, dep_side=False, drop=True)
        return {**dres, "k": result.get("k")}

    def _store_down_admission(self, res: Reservation) -> Reservation:
        if self.policy.on_store_error == "fail_open":
            self.stats.fail_open_admissions += 1
            return replace(res, degraded=True)
        self.stats.fail_closed_rejections += 1
        raise StoreUnavailable("Limits store unavailable: requests cannot be admitted right now. Retry shortly.")

    def _context(
        self, key: KeyRecord, res: Reservation, dep: Deployment | None, task_id: str | None,
        task_cost: float | None, task_tokens: int | None, now: datetime,
    ) -> RejectionContext:  # fmt: skip
        return RejectionContext(
            key_id=key.id, key_name=key.name, deployment_id=dep.id if dep else None, tokens=res.tokens,
            cost_usd=res.estimated_cost_usd, task_id=task_id,
            budgets_usd={"day": key.budget_usd_day, "month": key.budget_usd_month,
                         "total": key.budget_usd_total, "task_cost": task_cost},
            task_tokens=task_tokens, now=now, task_idle_s=self.policy.task.ttl_s,
        )  # fmt: skip

    # ------------------------------------------------------------------ settlement
    async def settle(self, res: Reservation, *, input_tokens: int, output_tokens: int, cost_usd: float, model: str | None = None) -> None:
        """Replace the estimate by the real usage; record usage per key/model/day/month/agent.

        Never raises for a store failure (the response is already out): counted in
        `stats.lost_settlements` and logged.
        """
        inp, out = amount(int(input_tokens)), amount(int(output_tokens))
        day, month, now = self.usage.periods()
        use = {
            "model": model or res.model, "inp": inp, "out": out, "nusd": amount(usd_to_nusd(cost_usd)),
            "exp_d": int((next_period_start(now, "day") + DAY_RETENTION).timestamp()),
            "exp_m": int((next_period_start(now, "month") + MONTH_RETENTION).timestamp()),
            "tot_ttl": TOTAL_TTL_S,
        }  # fmt: skip
        if res.task:
            use["task_ttl"] = res.task_ttl_s
        kkeys = self.layout.key_keys(res.key_id, res.task, day, month)
        sections: list[tuple[list[str], dict[str, Any]]] = [(kkeys, {"k": self._key_part(res, inp + out, False, use)})]
        if res.deployment_id:
            sections.append((self.layout.dep_keys(res.deployment_id), {"d": self._dep_part(res, inp + out, False)}))
        if res.agent:
            akeys = self.layout.agent_keys(res.agent, day, month)
            sections.append((akeys, {"a": {"use": use, "name": res.agent[:256]}}))
        await self._run_settle("settle", sections)

    async def release(self, res: Reservation, *, refund_request: bool = False) -> None:
        """Give the reservation back: tokens, cost, in-flight slot (and the request slot too with
        `refund_request`, e.g. when nothing was sent upstream). Records no usage."""
        await self._release_parts(res, key_side=True, dep_side=True, drop=refund_request)

    async def _release_parts(self, res: Reservation, *, key_side: bool, dep_side: bool, drop: bool) -> None:
        day, month, _ = self.usage.periods()
        sections: list[tuple[list[str], dict[str, Any]]] = []
        if key_side:
            kkeys = self.layout.key_keys(res.key_id, res.task, day, month)
            sections.append((kkeys, {"k": self._key_part(res, 0, drop, None)}))
        if dep_side and res.deployment_id:
            sections.append((self.layout.dep_keys(res.deployment_id), {"d": self._dep_part(res, 0, drop)}))
        await self._run_settle("release", sections)

    def _key_part(self, res: Reservation, tok: int, drop: bool, use: dict[str, Any] | None) -> dict[str, Any]:
        part: dict[str, Any] = {"w": res.window_member, "nw": f"{res.rid}|{tok}", "p": res.pending_member, "tok": tok}
        if res.task:
            part["t"] = res.task_member
        if drop:
            part["drop"] = True
        if use is not None:
            part["use"] = use
        return part

    def _dep_part(self, res: Reservation, tok: int, drop: bool) -> dict[str, Any]:
        part: dict[str, Any] = {"w": res.window_member, "nw": f"{res.rid}|{tok}", "tok": tok, "rid": res.rid}
        if drop:
            part["drop"] = True
        return part

    async def _run_settle(self, op: str, sections: list[tuple[list[str], dict[str, Any]]]) -> None:
        if not sections:
            return
        if self.per_slot:
            calls = [(keys, params) for keys, params in sections]
        else:
            merged: dict[str, Any] = {}
            for _, params in sections:
                merged.update(params)
            calls = [([k for keys, _ in sections for k in keys], merged)]
        try:
            for keys, params in calls:
                await self._call(op, functools.partial(self.scripts.settle, keys, params))
        except StoreFailure:
            self.stats.lost_settlements += 1

    # ------------------------------------------------------------------ reads
    async def budget_remaining_usd(self, key: KeyRecord, task_id: str | None = None) -> float | None:
        """The least USD left over the key's budgets and its task's cost cap (None: no cap applies).

        Live reservations count as spent. Store down: None under fail_open, 503 under fail_closed.
        """
        task = task_name(task_id) if task_id else None
        task_cost = self._task_limits(key)[0] if task else None
        if not key.has_budgets and task_cost is None:
            return None
        day, month, _ = self.usage.periods()
        params = {"now": int(self.clock() * 1000)} if self.clock else {}
        keys = self.layout.key_keys(key.id, task, day, month)
        try:
            spent = await self._call("read", lambda: self.scripts.spent(keys, params))
        except StoreFailure:
            if self.policy.on_store_error == "fail_open":
                return None
            raise StoreUnavailable("Limits store unavailable: cannot read the key's budget. Retry shortly.") from None
        caps = (("day", key.budget_usd_day), ("month", key.budget_usd_month), ("total", key.budget_usd_total))
        lefts = [cap - (spent[name] + spent["pending"]) / NUSD_PER_USD for name, cap in caps if cap is not None]
        if task_cost is not None:
            lefts.append(task_cost - spent["task_nusd"] / NUSD_PER_USD)
        return max(min(lefts), 0.0)


def _compact(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}
