"""Account a finished request, exactly once: usage and cost, the reservation settled (or
released), metrics, and the decision record."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from proxy.observe.decisions import DecisionRecord
from proxy.observe.metrics import outcome_of
from proxy.providers.base import Usage
from proxy.request.exchange import Exchange
from proxy.vocab import BudgetPeriod, Endpoint, ImplicitSignal

if TYPE_CHECKING:
    from proxy.keys.store import KeyRecord
    from proxy.observe.metrics import Metrics
    from proxy.request.appstate import AppState


def settle_usage(ex: Exchange, usage: Usage | None, completion_text_chars: int = 0) -> None:
    """Fix the exchange's usage and cost. `usage` is the provider's, or None if it sent none."""
    if usage is None or usage.counted:
        # The provider reported nothing: count the prompt as estimated and the output from
        # its text (~4 characters a token), so budgets still move.
        prompt = ex.plan.input_tokens if ex.plan is not None else 0
        usage = Usage(prompt, max(0, (completion_text_chars + 3) // 4), counted=True)
    ex.usage = usage
    model = ex.outcome.model
    ex.cost_usd = model.cost_usd(usage.prompt_tokens, usage.completion_tokens) if model else 0.0


def output_chars(body: dict[str, Any], part: str) -> int:
    """Characters the model produced in a completion (`part="message"`) or a stream chunk
    (`part="delta"`): content and tool-call arguments, for counting usage a provider omitted."""
    n = 0
    for choice in body.get("choices") or ():
        out = choice.get(part) or {}
        content = out.get("content")
        if isinstance(content, str):
            n += len(content)
        for call in out.get("tool_calls") or ():
            n += len(((call.get("function") or {}).get("arguments")) or "")
    return n


async def record(state: AppState, ex: Exchange) -> None:
    """Called once per request however it ended; never raises into the response path."""
    ex.close()
    used = ex.outcome.model
    metrics = state.metrics
    if ex.admission is not None:
        res = ex.admission.reservation
        await ex.admission.finish(ex.usage if used is not None else None, ex.cost_usd, used)
        if res is not None and res.budget_left_usd and ex.key is not None:
            record_budgets_left(metrics, ex.key, res.budget_left_usd, res.estimated_cost_usd - (ex.cost_usd if used else 0.0))
    limit = getattr(ex.error, "limit", None)
    if isinstance(limit, str):
        metrics.rejected(limit)
    plan = ex.plan
    key_name = ex.key.name if ex.key is not None else None
    if ex.endpoint != Endpoint.ROUTE:
        metrics.observe_request(
            endpoint=ex.endpoint,
            outcome=outcome_of(ex.error),
            status=ex.status,
            total_s=ex.total_seconds,
            upstream_s=ex.waited_seconds,
            category=plan.category if plan else None,
            model=ex.primary.id if ex.primary else None,
            preference=plan.preference if plan else None,
            stream=ex.stream,
        )
    estimated = plan.estimated_cost_usd(used) if plan is not None and used is not None else None
    if used is not None and ex.usage is not None:
        metrics.observe_usage(
            model=used.id,
            input_tokens=ex.usage.prompt_tokens,
            output_tokens=ex.usage.completion_tokens,
            cost_usd=ex.cost_usd,
            estimated_cost_usd=estimated,
            key=key_name,
        )
    if ex.endpoint != Endpoint.ROUTE and plan is not None and plan.routed and ex.status >= 500 and ex.key is not None:
        state.feedback.implicit(ex.decision_id, ex.key.id, ImplicitSignal.UPSTREAM_ERROR)  # the routed model (and its fallbacks) failed
    if ex.endpoint != Endpoint.ROUTE and plan is not None and plan.routed and ex.key is not None:
        for signal in ex.signals:  # truncated, tool_call_unparsable (proxy/request/signals.py)
            state.feedback.implicit(ex.decision_id, ex.key.id, signal)
    state.decisions.record(log_record(ex, key_name, estimated))


def record_budgets_left(metrics: Metrics, key: KeyRecord, left_at_admission: dict[str, float], refund_usd: float) -> None:
    """The key's budget gauges after this request: what admission left, plus the part of the
    estimate that the real cost did not use (or minus what it overran)."""
    limits = {BudgetPeriod.DAY: key.budget_usd_day, BudgetPeriod.MONTH: key.budget_usd_month, BudgetPeriod.TOTAL: key.budget_usd_total}
    for period, left in left_at_admission.items():
        limit = limits.get(BudgetPeriod(period))
        if limit is not None:
            metrics.set_budget_remaining(key.name, period, max(left + refund_usd, 0.0), limit)


def log_record(ex: Exchange, key_name: str | None, estimated_cost: float | None) -> DecisionRecord:
    """The decision log's record of one finished request (proxy/observe/decisions.py)."""
    d, plan = ex.decision, ex.plan
    c = plan.classification if plan is not None else None
    return DecisionRecord(
        decision_id=ex.decision_id,
        status=ex.status,
        outcome=outcome_of(ex.error),
        endpoint=ex.endpoint,
        key_name=key_name,
        key_id=ex.key.id if ex.key is not None else None,
        requested_model=ex.requested_model or None,
        preference=plan.preference if plan else None,
        category=c.category if c else None,
        complexity=c.complexity if c else None,
        level=c.level if c else None,
        confidence=c.confidence if c else None,
        chosen_model=ex.primary.id if ex.primary else None,
        used_model=ex.outcome.model.id if ex.outcome.model else None,
        plan=[m.id for m in ex.models],
        reason=d.get("reason"),
        policy_hash=d.get("policy_hash"),
        attempts=[{**a.summary(), "seconds": round(a.seconds, 6)} for a in ex.outcome.attempts],
        stream=ex.stream,
        input_tokens=ex.usage.prompt_tokens if ex.usage else 0,
        output_tokens=ex.usage.completion_tokens if ex.usage else 0,
        cost_usd=ex.cost_usd,
        estimated_cost_usd=estimated_cost if estimated_cost is not None else d.get("estimated_cost_usd"),
        total_s=ex.total_seconds,
        upstream_s=ex.waited_seconds if ex.endpoint != Endpoint.ROUTE else None,
        ttft_s=ex.ttft_s,
        error_type=ex.error_type,
        task_id=ex.task_id,
        agent=ex.agent,
        prompt=ex.prompt,
        features=d.get("features"),
        tools=ex.tools.record() if ex.tools is not None else None,
        context=ex.context_category,
    )
