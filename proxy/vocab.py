"""The fixed vocabularies, defined once.

Every closed set of names that more than one module speaks (policy keys, metric labels, error
mappings, the limiter's Lua codes, API endpoints) is a `StrEnum` here. A `StrEnum` member *is*
its string, so YAML, JSON, Redis and Prometheus see plain strings, while code that spells a
name imports it and a typo is an import error, not a silently new label.
`tests/test_vocab.py` walks every value and checks its metric label, policy key and error
mapping exist.
"""

from __future__ import annotations

from enum import StrEnum


class Category(StrEnum):
    """The tutorial's eight task categories (ROUTING_RUBRIC.md)."""

    DEEP_REASONING = "deep_reasoning"
    COMPLEX_CODING = "complex_coding"
    LONG_DOCUMENT = "long_document"
    AGENTIC_TOOL_USE = "agentic_tool_use"
    QA_RETRIEVAL = "qa_retrieval"
    TEXT_GENERATION = "text_generation"
    CLASSIFICATION = "classification"
    EMBEDDING = "embedding"


class Preference(StrEnum):
    """Named points of the routing policy (`auto:<preference>`, `route.preference`)."""

    CHEAPEST = "cheapest"
    BALANCED = "balanced"
    BEST_QUALITY = "best_quality"


#: `auto:local` is not a preference of the matrix but a constraint (self-hosted only); it is a
#: preference *label* on metrics and decision records.
LOCAL = "local"


class Level(StrEnum):
    """The routing module's complexity levels."""

    SIMPLE = "simple"
    MODERATE = "moderate"
    COMPLEX = "complex"
    CRITICAL = "critical"


class ErrorKind(StrEnum):
    """Why one upstream attempt failed (`UpstreamError.kind`, metric label `kind`)."""

    TIMEOUT = "timeout"
    FIRST_TOKEN_TIMEOUT = "first_token_timeout"
    CONNECT = "connect"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    REJECTED = "rejected"
    AUTH = "auth"
    BAD_RESPONSE = "bad_response"
    STREAM_CUT = "stream_cut"
    CANCELLED = "cancelled"
    CAPACITY = "capacity"  # skipped by dispatch: the deployment was at capacity, never sent


#: Worth another attempt (same or next deployment): 429, 5xx, timeouts, refused connections,
#: garbage; never other 4xx.
RETRYABLE_KINDS = frozenset(
    {
        ErrorKind.TIMEOUT,
        ErrorKind.FIRST_TOKEN_TIMEOUT,
        ErrorKind.CONNECT,
        ErrorKind.RATE_LIMITED,
        ErrorKind.SERVER_ERROR,
        ErrorKind.BAD_RESPONSE,
        ErrorKind.STREAM_CUT,
    }
)


class Outcome(StrEnum):
    """How a request ended (metric label `outcome`, decision record `outcome`)."""

    OK = "ok"
    INVALID_REQUEST = "invalid_request"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    TOO_LARGE = "too_large"
    NO_CAPABLE_MODEL = "no_capable_model"
    RATE_LIMITED = "rate_limited"
    BUDGET_EXCEEDED = "budget_exceeded"
    UPSTREAM_ERROR = "upstream_error"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    UPSTREAM_REJECTED = "upstream_rejected"
    STORE_UNAVAILABLE = "store_unavailable"
    UNAVAILABLE = "unavailable"
    CANCELLED = "cancelled"
    INTERNAL_ERROR = "internal_error"


class LimitName(StrEnum):
    """The limit a 429 names (`error.param`, metric label `limit`)."""

    REQUESTS_PER_MINUTE = "requests_per_minute"
    TOKENS_PER_MINUTE = "tokens_per_minute"
    DEPLOYMENT_CAPACITY = "deployment_capacity"
    DAILY_BUDGET = "daily_budget"
    MONTHLY_BUDGET = "monthly_budget"
    TOTAL_BUDGET = "total_budget"
    TASK_BUDGET = "task_budget"


class LuaLimit(StrEnum):
    """What `admit.lua` returns as the limit that refused a request."""

    RPM = "rpm"
    TPM = "tpm"
    TPM_SIZE = "tpm_size"
    DAY = "day"
    MONTH = "month"
    TOTAL = "total"
    TASK_COST = "task_cost"
    TASK_TOKENS = "task_tokens"
    DEP_RPM = "d_rpm"
    DEP_TPM = "d_tpm"
    DEP_TPM_SIZE = "d_tpm_size"
    DEP_CONCURRENCY = "d_conc"


#: Each Lua refusal code -> the limit the client is told about.
LIMIT_OF_LUA: dict[LuaLimit, LimitName] = {
    LuaLimit.RPM: LimitName.REQUESTS_PER_MINUTE,
    LuaLimit.TPM: LimitName.TOKENS_PER_MINUTE,
    LuaLimit.TPM_SIZE: LimitName.TOKENS_PER_MINUTE,
    LuaLimit.DAY: LimitName.DAILY_BUDGET,
    LuaLimit.MONTH: LimitName.MONTHLY_BUDGET,
    LuaLimit.TOTAL: LimitName.TOTAL_BUDGET,
    LuaLimit.TASK_COST: LimitName.TASK_BUDGET,
    LuaLimit.TASK_TOKENS: LimitName.TASK_BUDGET,
    LuaLimit.DEP_RPM: LimitName.DEPLOYMENT_CAPACITY,
    LuaLimit.DEP_TPM: LimitName.DEPLOYMENT_CAPACITY,
    LuaLimit.DEP_TPM_SIZE: LimitName.DEPLOYMENT_CAPACITY,
    LuaLimit.DEP_CONCURRENCY: LimitName.DEPLOYMENT_CAPACITY,
}


class BudgetPeriod(StrEnum):
    """The budgets whose remaining USD is a gauge (`autoroute_budget_remaining_usd{period}`)."""

    DAY = "day"
    MONTH = "month"
    TOTAL = "total"
    TASK = "task"


class Endpoint(StrEnum):
    """The inbound APIs (metric label `endpoint`, decision record `endpoint`)."""

    CHAT = "chat_completions"
    RESPONSES = "responses"
    MESSAGES = "messages"
    COUNT_TOKENS = "count_tokens"
    EMBEDDINGS = "embeddings"
    ROUTE = "route"
    FEEDBACK = "feedback"
    MCP = "mcp"


class ImplicitSignal(StrEnum):
    """A bad outcome the proxy saw itself, recorded as implicit feedback on the decision (`reason`)."""

    UPSTREAM_ERROR = "upstream_error"  # the routed model and its fallbacks failed
    RETRIED_STRONGER = "retried_stronger"  # the same task (X-Task-Id) routed again to a more capable tier
    TRUNCATED = "truncated"  # the upstream stopped at its token limit (finish_reason "length")
    TOOL_CALL_UNPARSABLE = "tool_call_unparsable"  # a tool call whose arguments are not a JSON object
