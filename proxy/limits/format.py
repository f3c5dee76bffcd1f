"""Pure formatting for the limiter: rate-limit headers, reset durations, rejection errors.

Owns what a client reads when a limit is involved: OpenAI's `x-ratelimit-*` headers (with
reset durations in OpenAI's Go-style format: "20ms", "1s", "8.64s", "6m0s", "1h0m0s"), and the
429 for a rejection, whose message names the limit and when it resets, with `Retry-After`
(whole seconds, rounded up) and `retry-after-ms` (which the OpenAI SDKs read first). A
rejection that waiting cannot cure soon (a budget, a request larger than the whole TPM limit)
carries `x-should-retry: false`, which the OpenAI SDKs honour instead of retrying.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from proxy.errors import BudgetExceeded, RateLimited
from proxy.vocab import LIMIT_OF_LUA, LimitName, LuaLimit

NUSD_PER_USD = 1_000_000_000  # money in the store is integer nano-USD


class KeyRateLimited(RateLimited):
    """The key's requests-per-minute or tokens-per-minute limit (`limit` says which)."""

    def __init__(self, message: str, *, limit: str, retry_after_s: float | None, headers: dict[str, str]) -> None:
        super().__init__(message, headers=headers)
        self.limit = limit
        self.retry_after_s = retry_after_s


class DeploymentBusy(RateLimited):
    """The chosen deployment is at its own RPM/TPM/max_concurrent: another deployment may serve."""

    def __init__(self, message: str, *, deployment_id: str, retry_after_s: float | None, headers: dict[str, str]) -> None:
        super().__init__(message, headers=headers)
        self.limit = "deployment_capacity"
        self.deployment_id = deployment_id
        self.retry_after_s = retry_after_s


class KeyBudgetExceeded(BudgetExceeded):
    """A USD budget (daily, monthly, total) or the task budget would be exceeded.

    `remaining_usd` is what is left (None for the task's token cap): the router can re-select a
    model whose estimated cost fits (budget homeostasis) before giving up.
    """

    def __init__(
        self,
        message: str,
        *,
        limit: str,
        retry_after_s: float | None,
        remaining_usd: float | None,
        headers: dict[str, str],
    ) -> None:
        super().__init__(message, headers=headers)
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.remaining_usd = remaining_usd


def go_duration(ms: float) -> str:
    """OpenAI's reset format (Go's time.Duration): 0s, 20ms, 1s, 8.64s, 6m0s, 1h2m3s."""
    total = int(round(ms))
    if total <= 0:
        return "0s"
    if total < 1000:
        return f"{total}ms"
    hours, rest = divmod(total, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{seconds}s"
    if minutes:
        return f"{minutes}m{seconds}s"
    return f"{seconds}s"


def rate_limit_headers(snap: dict[str, Any] | None) -> dict[str, str]:
    """`x-ratelimit-*` from a window snapshot {rpm?, tpm?, count, used, reset_ms} (key limits).

    reset = time until the oldest request in the window leaves it, i.e. until `remaining` next
    goes up; with remaining 0 that is exactly when the next request fits (for requests).
    """
    if not snap:
        return {}
    headers: dict[str, str] = {}
    reset = go_duration(float(snap.get("reset_ms") or 0))
    if snap.get("rpm"):
        headers["x-ratelimit-limit-requests"] = str(int(snap["rpm"]))
        headers["x-ratelimit-remaining-requests"] = str(max(int(snap["rpm"]) - int(snap.get("count", 0)), 0))
        headers["x-ratelimit-reset-requests"] = reset
    if snap.get("tpm"):
        headers["x-ratelimit-limit-tokens"] = str(int(snap["tpm"]))
        headers["x-ratelimit-remaining-tokens"] = str(max(int(snap["tpm"]) - int(snap.get("used", 0)), 0))
        headers["x-ratelimit-reset-tokens"] = reset
    return headers


@dataclass(frozen=True)
class RejectionContext:
    """What the message needs besides the script's answer."""

    key_id: str
    key_name: str
    deployment_id: str | None
    tokens: int
    cost_usd: float
    task_id: str | None
    budgets_usd: dict[str, float | None]  # day, month, total, task_cost
    task_tokens: int | None
    now: datetime  # for period resets
    task_idle_s: int


def _usd(value: float) -> str:
    return f"${value:,.4f}" if abs(value) < 1 else f"${value:,.2f}"


def _retry_headers(retry_s: float | None, should_retry: bool) -> dict[str, str]:
    headers: dict[str, str] = {}
    if retry_s is not None:
        headers["retry-after"] = str(max(1, math.ceil(retry_s)))
        headers["retry-after-ms"] = str(max(1, math.ceil(retry_s * 1000)))
    if not should_retry:
        headers["x-should-retry"] = "false"
    return headers


def next_period_start(now: datetime, period: str) -> datetime:
    """Start of the next UTC day or month after `now`."""
    now = now.astimezone(UTC)
    if period == "day":
        return datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
    year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    return datetime(year, month, 1, tzinfo=UTC)


def rejection_error(result: dict[str, Any], ctx: RejectionContext) -> RateLimited | BudgetExceeded:
    """The 429 for an admit.lua rejection {limit, retry_ms?, left?, k?}."""
    limit = str(result["limit"])
    snap = result.get("k") or None
    retry_ms = result.get("retry_ms")
    retry_s = float(retry_ms) / 1000 if retry_ms is not None else None
    who = f"API key {ctx.key_name!r} ({ctx.key_id})" if ctx.key_name else f"API key {ctx.key_id}"
    headers = rate_limit_headers(snap)
    if limit in ("rpm", "tpm", "tpm_size"):
        window = snap or {}
        used = int(window.get("count" if limit == "rpm" else "used", 0))
        if limit == "rpm":
            what = f"requests per minute: limit {int(window['rpm'])}, used {used}"
        elif limit == "tpm":
            what = f"tokens per minute: limit {int(window['tpm'])}, used {used}, requested {ctx.tokens}"
        else:
            what = (
                f"tokens per minute: this request needs {ctx.tokens} tokens (input + max output), more than "
                f"the whole limit of {int(window['tpm'])}; lower max_tokens or shorten the input"
            )
        when = f" Resets in {go_duration(retry_ms)}; retry after that." if retry_ms is not None else ""
        return KeyRateLimited(
            f"Rate limit reached for {who}: {what}.{when}",
            limit=LIMIT_OF_LUA[LuaLimit(limit)],
            retry_after_s=retry_s,
            headers={**headers, **_retry_headers(retry_s, limit != "tpm_size")},
        )
    if limit.startswith("d_"):
        dep = ctx.deployment_id or "?"
        what = {
            "d_rpm": "its requests-per-minute limit",
            "d_tpm": "its tokens-per-minute limit",
            "d_tpm_size": "a tokens-per-minute limit smaller than this request",
            "d_conc": "its maximum number of concurrent requests",
        }[limit]
        if retry_s is None and limit == "d_conc":
            retry_s = 1.0
        when = f" Retry in {go_duration(retry_s * 1000)}." if retry_s is not None else ""
        return DeploymentBusy(
            f"Deployment capacity reached: deployment {dep!r} is at {what}.{when}",
            deployment_id=dep,
            retry_after_s=retry_s,
            headers={**headers, **_retry_headers(retry_s, limit != "d_tpm_size")},
        )
    return _budget_error(limit, result, ctx, headers, who)


def _budget_error(limit: str, result: dict[str, Any], ctx: RejectionContext, headers: dict[str, str], who: str) -> KeyBudgetExceeded:
    left_raw = float(result.get("left") or 0)
    remaining_usd: float | None = max(left_raw, 0) / NUSD_PER_USD
    retry_s: float | None = None
    if limit in ("day", "month"):
        reset_at = next_period_start(ctx.now, limit)
        retry_s = max((reset_at - ctx.now).total_seconds(), 1)
        name = "daily budget" if limit == "day" else "monthly budget"
        cap = ctx.budgets_usd[limit] or 0
        when = f"It resets at {reset_at.strftime('%Y-%m-%dT%H:%M:%SZ')} (in {go_duration(retry_s * 1000)})."
    elif limit == "total":
        name, cap = "total budget", ctx.budgets_usd["total"] or 0
        when = "It does not reset: ask your operator to raise budget_usd_total or reset the key's usage."
    elif limit == "task_cost":
        name, cap = f"task budget of task {ctx.task_id!r}", ctx.budgets_usd["task_cost"] or 0
        idle = go_duration(ctx.task_idle_s * 1000)
        when = f"It resets when the task has been idle for {idle}; start a new X-Task-Id."
    else:  # task_tokens
        return KeyBudgetExceeded(
            f"Budget exceeded for {who}: task budget of task {ctx.task_id!r}: token limit {ctx.task_tokens}, "
            f"{max(int(left_raw), 0)} left, this request needs {ctx.tokens} (input + max output). It resets when "
            f"the task has been idle for {go_duration(ctx.task_idle_s * 1000)}; start a new X-Task-Id.",
            limit=LimitName.TASK_BUDGET,
            retry_after_s=None,
            remaining_usd=None,
            headers={**headers, **_retry_headers(None, False)},
        )
    return KeyBudgetExceeded(
        f"Budget exceeded for {who}: {name}: limit {_usd(cap)}, {_usd(remaining_usd or 0)} left, "
        f"this request needs about {_usd(ctx.cost_usd)} (estimated). {when}"
        + (" A cheaper model may still fit." if (remaining_usd or 0) > 0 else ""),
        limit=LIMIT_OF_LUA[LuaLimit(limit)],
        retry_after_s=retry_s,
        remaining_usd=remaining_usd,
        headers={**headers, **_retry_headers(retry_s, False)},
    )
