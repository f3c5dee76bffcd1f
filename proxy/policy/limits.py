"""Limits-store behaviour (`policies/limits.yaml`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from proxy.policy.registry import Strict


class TaskBudget(Strict):
    max_cost_usd: float | None = Field(0.10, gt=0)
    max_tokens: int | None = Field(10000, gt=0)
    ttl_s: int = Field(86400, gt=0, description="a task's counters expire this long after its last use")


class LimitsPolicy(Strict):
    on_store_error: Literal["fail_closed", "fail_open"] = "fail_closed"
    store_timeout_s: float = Field(0.25, gt=0)
    reservation_ttl_s: int = Field(900, gt=0, description="an unsettled reservation expires after this")
    task: TaskBudget = TaskBudget()
    stored_responses_ttl_s: int = Field(
        30 * 86400, gt=0, description="/v1/responses objects (store: true) expire this long after creation; previous_response_id needs them"
    )
