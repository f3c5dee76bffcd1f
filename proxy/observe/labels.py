"""The bounded label sets, buckets and label helpers of autoroute's metrics (proxy/observe/metrics.py).

A label value outside its set becomes `other`; a missing one is `none`. The sets come from the
vocabulary (proxy/vocab.py) wherever one exists.
"""

from __future__ import annotations

import asyncio
from typing import get_args

from proxy import errors
from proxy.policy.registry import Provider
from proxy.vocab import LOCAL, BudgetPeriod, Category, Endpoint, ErrorKind, LimitName, Outcome, Preference

NONE = "none"
OTHER = "other"

CATEGORIES = frozenset({*Category, NONE})
PREFERENCES = frozenset({*Preference, LOCAL, NONE})
PROVIDERS = frozenset(get_args(Provider))
STREAM = {True: "true", False: "false"}
#: Request outcomes (`observe_request(outcome=...)`); `outcome_of(exc)` maps an exception here.
OUTCOMES = frozenset(Outcome)
#: Upstream failure kinds (`observe_upstream_attempt(error=...)`); `error_kind_for_status(s)` helps.
ERROR_KINDS = frozenset(ErrorKind)
#: The limit a 429 names -> rejection kind (`rejected(limit)`).
LIMITS: dict[str, str] = {
    LimitName.REQUESTS_PER_MINUTE: "rate_limit",
    LimitName.TOKENS_PER_MINUTE: "rate_limit",
    LimitName.DEPLOYMENT_CAPACITY: "rate_limit",
    LimitName.DAILY_BUDGET: "budget",
    LimitName.MONTHLY_BUDGET: "budget",
    LimitName.TOTAL_BUDGET: "budget",
    LimitName.TASK_BUDGET: "budget",
}
BUDGET_PERIODS = frozenset(BudgetPeriod)
ENDPOINTS = frozenset(Endpoint)
#: Why the router left the matrix's first choice (`observe_route(overrides=...)`).
OVERRIDES = frozenset(
    {
        "context_window",
        "tools",
        "vision",
        "unavailable",
        "cooling_down",
        "allowed_models",
        "cost_cap",
        "budget",
        "latency",
        "self_hosted_only",
        "prefer_local",
    }
)
STORE_OPERATIONS = frozenset({"reserve", "settle", "release", "read", "admin", "health"})
STORE_FAILURE_ACTIONS = frozenset({"fail_open", "fail_closed"})
LLM_CLASSIFIER_OUTCOMES = frozenset({"ok", "cache_hit", "timeout", "error", "invalid"})
DECISION_LOG_ERRORS = frozenset({"write_error", "dropped"})
#: Circuit-breaker state -> gauge value (max across workers shows the worst).
COOLDOWN_STATES = {"closed": 0.0, "half_open": 1.0, "open": 2.0}

LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0)
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0, 60.0)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
STORE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
COST_RATIO_BUCKETS = (0.1, 0.25, 0.5, 0.75, 0.9, 1.1, 1.25, 1.5, 2.0, 4.0, 10.0)
CLASSIFIER_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)

_OUTCOME_BY_ERROR: dict[type[BaseException], str] = {
    errors.RateLimited: Outcome.RATE_LIMITED,
    errors.BudgetExceeded: Outcome.BUDGET_EXCEEDED,
    errors.AuthenticationFailed: Outcome.UNAUTHORIZED,
    errors.PermissionDenied: Outcome.FORBIDDEN,
    errors.NoCapableModel: Outcome.NO_CAPABLE_MODEL,
    errors.NotFound: Outcome.NOT_FOUND,
    errors.ModelNotFound: Outcome.NOT_FOUND,
    errors.PayloadTooLarge: Outcome.TOO_LARGE,
    errors.InvalidRequest: Outcome.INVALID_REQUEST,
    errors.StoreUnavailable: Outcome.STORE_UNAVAILABLE,
    errors.ServiceUnavailable: Outcome.UNAVAILABLE,
    errors.UpstreamTimeout: Outcome.UPSTREAM_TIMEOUT,
    errors.UpstreamFailed: Outcome.UPSTREAM_ERROR,
    errors.UpstreamRejected: Outcome.UPSTREAM_REJECTED,
    asyncio.CancelledError: Outcome.CANCELLED,
}
_STATUS_CLASS = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}


def outcome_of(exc: BaseException | None) -> str:
    """The `outcome` label for a request that ended with `exc` (None = success)."""
    if exc is None:
        return Outcome.OK
    for cls in type(exc).__mro__:
        outcome = _OUTCOME_BY_ERROR.get(cls)
        if outcome is not None:
            return outcome
    return Outcome.INTERNAL_ERROR


def status_class(status: int) -> str:
    """`2xx`, `4xx`, ... for an HTTP status; 499 (client went away) counts as `4xx`."""
    return _STATUS_CLASS.get(status // 100, OTHER)


def error_kind_for_status(status: int) -> str:
    """The upstream error kind for an HTTP status the upstream answered with."""
    if status == 429:
        return "rate_limited"
    if status in (401, 403):
        return "auth"
    return "server_error" if status >= 500 else "rejected"
