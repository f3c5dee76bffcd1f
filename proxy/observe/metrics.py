"""Every Prometheus metric autoroute exports, on an injected CollectorRegistry.

Owns metric names, help texts, buckets and label sets, and one small method per pipeline
event. Nothing is created at import: `Metrics(registry)` registers every family on the
registry it is given (one per app, so tests can build many apps). Serving `/metrics` and
prometheus-client's multiprocess mode live in `proxy.observe.export`.

Labels come only from bounded sets: a value outside its set becomes `other` (model,
deployment and key sets come from the policy; the rest are fixed below), a missing value
is `none`. Key *names* are labels only when `policy.observability.key_name_labels` is on,
and at most `max_key_labels` distinct names are kept. Label children are cached on the
instance, so an event costs a dict lookup and an `inc`/`observe` per series.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from proxy import errors
from proxy.policy.registry import Provider
from proxy.vocab import LOCAL, BudgetPeriod, Category, Endpoint, ErrorKind, LimitName, Outcome, Preference

if TYPE_CHECKING:
    from proxy.policy import Policy

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


def _bind(cache: dict[tuple[str, ...], Any], metric: Any, key: tuple[str, ...]) -> Any:
    child = cache.get(key)
    if child is None:
        child = cache[key] = metric.labels(*key)
    return child


class Metrics:
    """All autoroute metrics on one registry; call one method per pipeline event."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        models: Iterable[str] = (),
        deployments: Iterable[str] = (),
        key_name_labels: bool = False,
        max_key_labels: int = 1000,
    ) -> None:
        self.registry = registry
        self.key_name_labels = key_name_labels
        self.max_key_labels = max_key_labels
        self._models: frozenset[str] = frozenset()
        self._deployments: frozenset[str] = frozenset()
        self._keys: set[str] = set()
        self._children: dict[str, dict[tuple[str, ...], Any]] = {}
        self.update_bounds(models=models, deployments=deployments)
        self._define(registry)
        self._prebind()

    @classmethod
    def from_policy(cls, policy: Policy, registry: CollectorRegistry | None = None) -> Metrics:
        """Bounds from the policy: its model ids, deployment ids and key-label opt-in."""
        return cls(
            registry if registry is not None else CollectorRegistry(),
            models=policy.models,
            deployments=(d.id for d in policy.deployments),
            key_name_labels=policy.observability.key_name_labels,
        )

    def update_bounds(self, *, models: Iterable[str] | None = None, deployments: Iterable[str] | None = None) -> None:
        """Replace the allowed model / deployment label values (after a policy reload)."""
        if models is not None:
            self._models = frozenset(models) | {NONE}
        if deployments is not None:
            self._deployments = frozenset(deployments)

    # ── definitions ──────────────────────────────────────────────────────────────────
    def _define(self, r: CollectorRegistry) -> None:
        c = lambda name, labels, doc: Counter(name, doc, labels, registry=r)  # noqa: E731
        h = lambda name, labels, buckets, doc: Histogram(name, doc, labels, registry=r, buckets=buckets)  # noqa: E731
        g = lambda name, labels, mode, doc: Gauge(name, doc, labels, registry=r, multiprocess_mode=mode)  # noqa: E731
        self.requests = c(
            "autoroute_requests_total",
            ("endpoint", "category", "model", "preference", "outcome", "status"),
            "Requests finished, by inbound API (chat/responses/messages/embeddings), category, chosen model, preference, outcome, status class.",
        )
        self.in_flight = g("autoroute_requests_in_flight", (), "livesum", "Chat requests being handled now.")
        self.routing_decisions = c(
            "autoroute_routing_decisions_total",
            ("category", "model", "preference"),
            "Routing decisions: classified category -> chosen model (auto requests and /v1/route).",
        )
        self.overrides = c(
            "autoroute_routing_overrides_total",
            ("constraint",),
            "Times the router left the matrix's choice, by the constraint that forced it.",
        )
        self.request_seconds = h("autoroute_request_duration_seconds", ("stream",), LATENCY_BUCKETS, "Whole request, arrival to last byte.")
        self.overhead_seconds = h(
            "autoroute_proxy_overhead_seconds", (), OVERHEAD_BUCKETS, "Time the proxy itself added: total minus time waiting on upstreams."
        )
        self.upstream_seconds = h(
            "autoroute_upstream_duration_seconds",
            ("provider", "model"),
            LATENCY_BUCKETS,
            "One upstream attempt, request sent to last byte.",
        )
        self.ttft_seconds = h(
            "autoroute_time_to_first_token_seconds",
            ("provider", "model"),
            TTFT_BUCKETS,
            "Streams: upstream request sent to first content chunk.",
        )
        self.attempts = c(
            "autoroute_upstream_attempts_total",
            ("deployment", "provider", "model", "result"),
            "Upstream attempts, by deployment, model and result (ok/error).",
        )
        self.upstream_errors = c("autoroute_upstream_errors_total", ("provider", "kind"), "Failed upstream attempts, by provider and kind.")
        self.retries = c("autoroute_upstream_retries_total", ("provider",), "Retries of an upstream call on the same deployment.")
        self.fallbacks = c("autoroute_fallbacks_total", ("from_model", "to_model"), "Moves down the route plan to another model.")
        self.cooldown_state = g(
            "autoroute_deployment_cooldown_state",
            ("deployment",),
            "livemax",
            "Circuit breaker per deployment: 0 closed, 1 half-open (probing), 2 open (cooling down).",
        )
        self.cooldowns = c("autoroute_deployment_cooldowns_total", ("deployment",), "Times a deployment's breaker opened.")
        self.tokens = c(
            "autoroute_tokens_total", ("model", "direction"), "Tokens billed by upstreams, by model and direction (input/output)."
        )
        self.cost = c("autoroute_cost_usd_total", ("model",), "Real cost in USD from the registry's prices, by model that answered.")
        self.estimated_cost = c(
            "autoroute_estimated_cost_usd_total", ("model",), "Cost estimated at admission, USD, by model that answered."
        )
        self.cost_ratio = h("autoroute_cost_estimate_ratio", (), COST_RATIO_BUCKETS, "Real cost / estimated cost per request.")
        self.key_tokens = c("autoroute_key_tokens_total", ("key", "direction"), "Tokens by key name (only with key_name_labels).")
        self.key_cost = c("autoroute_key_cost_usd_total", ("key",), "Real cost in USD by key name (only with key_name_labels).")
        self.budget_remaining = g(
            "autoroute_key_budget_remaining_usd",
            ("key", "period"),
            "livemostrecent",
            "USD left in a key's budget period (only with key_name_labels).",
        )
        self.budget_limit = g(
            "autoroute_key_budget_limit_usd",
            ("key", "period"),
            "livemostrecent",
            "A key's budget for the period, USD (only with key_name_labels).",
        )
        self.rejections = c(
            "autoroute_limit_rejections_total", ("limit", "kind"), "Requests refused by a rate limit or budget, by limit type."
        )
        self.store_seconds = h(
            "autoroute_limiter_store_duration_seconds", ("operation",), STORE_BUCKETS, "Limits-store (Redis) call latency, by operation."
        )
        self.store_errors = c(
            "autoroute_limiter_store_errors_total",
            ("operation", "action"),
            "Limits-store failures, by operation and what the proxy did (fail_open/fail_closed).",
        )
        self.store_up = g("autoroute_limiter_store_up", (), "livemin", "1 when the last limits-store call succeeded, 0 when it failed.")
        self.confidence = h(
            "autoroute_classifier_confidence_ratio", ("category",), CONFIDENCE_BUCKETS, "Heuristic classifier confidence, by category."
        )
        self.llm_classifier = c("autoroute_llm_classifier_requests_total", ("outcome",), "LLM-classifier consultations, by outcome.")
        self.llm_classifier_seconds = h(
            "autoroute_llm_classifier_duration_seconds", (), CLASSIFIER_BUCKETS, "LLM-classifier call latency (not cache hits)."
        )
        self.decision_log_errors = c(
            "autoroute_decision_log_errors_total", ("reason",), "Decision records not written to the Redis stream, by reason."
        )
        self.build_info = g(
            "autoroute_build_info", ("version", "policy_hash"), "livemax", "Version and policy hash of the running proxy (value 1)."
        )

    def _prebind(self) -> None:
        """Children used on every request, and series that should read 0 from the first scrape."""
        self.store_up.set(1)
        self._request_seconds = {flag: self.request_seconds.labels(v) for flag, v in STREAM.items()}
        for limit, kind in LIMITS.items():
            self.rejections.labels(limit, kind)
        for reason in DECISION_LOG_ERRORS:
            self.decision_log_errors.labels(reason)
        for outcome in LLM_CLASSIFIER_OUTCOMES:
            self.llm_classifier.labels(outcome)
        for deployment in self._deployments:
            self.cooldown_state.labels(deployment).set(0)
            self.cooldowns.labels(deployment)

    def _cache(self, name: str) -> dict[tuple[str, ...], Any]:
        cache = self._children.get(name)
        if cache is None:
            cache = self._children[name] = {}
        return cache

    # ── bounding ─────────────────────────────────────────────────────────────────────
    def _model(self, model: str | None) -> str:
        if model is None:
            return NONE
        return model if model in self._models else OTHER

    @staticmethod
    def _pick(value: str | None, allowed: frozenset[str]) -> str:
        if value is None:
            return NONE
        return value if value in allowed else OTHER

    def _key(self, key: str | None) -> str | None:
        """The key-name label, or None when key labels are off (or no key)."""
        if not self.key_name_labels or not key:
            return None
        if key in self._keys:
            return key
        if len(self._keys) < self.max_key_labels:
            self._keys.add(key)
            return key
        return OTHER

    # ── events ───────────────────────────────────────────────────────────────────────
    def request_started(self) -> None:
        """A request (chat, responses, messages, embeddings) arrived. Pair with exactly one `observe_request` (in a `finally`)."""
        self.in_flight.inc()

    def observe_request(
        self,
        *,
        outcome: str,
        endpoint: str = Endpoint.CHAT,
        status: int,
        total_s: float,
        upstream_s: float = 0.0,
        category: str | None = None,
        model: str | None = None,
        preference: str | None = None,
        stream: bool = False,
    ) -> None:
        """A request finished (any way). `model` is the chosen (plan primary or named)
        model; `upstream_s` is time spent waiting on upstreams (attempts and retry waits)."""
        self.in_flight.dec()
        key = (
            self._pick(endpoint, ENDPOINTS),
            self._pick(category, CATEGORIES),
            self._model(model),
            self._pick(preference, PREFERENCES),
            outcome if outcome in OUTCOMES else OTHER,
            _STATUS_CLASS.get(status // 100, OTHER),
        )
        _bind(self._cache("requests"), self.requests, key).inc()
        self._request_seconds[bool(stream)].observe(total_s)
        self.overhead_seconds.observe(max(0.0, total_s - upstream_s))

    def observe_route(
        self,
        *,
        category: str,
        model: str,
        preference: str | None,
        confidence: float | None = None,
        overrides: Iterable[str] = (),
    ) -> None:
        """A routing decision was made (auto requests and `POST /v1/route`)."""
        cat = self._pick(category, CATEGORIES)
        key = (cat, self._model(model), self._pick(preference, PREFERENCES))
        _bind(self._cache("decisions"), self.routing_decisions, key).inc()
        if confidence is not None:
            _bind(self._cache("confidence"), self.confidence, (cat,)).observe(confidence)
        for constraint in overrides:
            _bind(self._cache("overrides"), self.overrides, (self._pick(constraint, OVERRIDES),)).inc()

    def observe_llm_classifier(self, outcome: str, seconds: float | None = None) -> None:
        """The LLM classifier was consulted (`ok`, `cache_hit`, `timeout`, `error`, `invalid`)."""
        _bind(self._cache("llm"), self.llm_classifier, (self._pick(outcome, LLM_CLASSIFIER_OUTCOMES),)).inc()
        if seconds is not None:
            self.llm_classifier_seconds.observe(seconds)

    def observe_upstream_attempt(
        self,
        *,
        deployment: str,
        provider: str,
        model: str,
        seconds: float,
        error: str | None = None,
        ttft_s: float | None = None,
    ) -> None:
        """One upstream attempt ended; `error` is an ERROR_KINDS value, None on success."""
        prov = self._pick(provider, PROVIDERS)
        mod = self._model(model)
        dep = deployment if deployment in self._deployments else OTHER
        result = "ok" if error is None else "error"
        _bind(self._cache("attempts"), self.attempts, (dep, prov, mod, result)).inc()
        _bind(self._cache("upstream_s"), self.upstream_seconds, (prov, mod)).observe(seconds)
        if error is not None:
            _bind(self._cache("upstream_err"), self.upstream_errors, (prov, self._pick(error, ERROR_KINDS))).inc()
        if ttft_s is not None:
            _bind(self._cache("ttft"), self.ttft_seconds, (prov, mod)).observe(ttft_s)

    def retried(self, provider: str) -> None:
        """Dispatch is about to retry the same deployment."""
        _bind(self._cache("retries"), self.retries, (self._pick(provider, PROVIDERS),)).inc()

    def fell_back(self, from_model: str, to_model: str) -> None:
        """Dispatch moved on from `from_model` to `to_model` (next in plan or last resort)."""
        _bind(self._cache("fallbacks"), self.fallbacks, (self._model(from_model), self._model(to_model))).inc()

    def set_cooldown(self, deployment: str, state: str) -> None:
        """A deployment's breaker changed state: `closed`, `half_open` or `open` (counted)."""
        dep = deployment if deployment in self._deployments else OTHER
        _bind(self._cache("cooldown"), self.cooldown_state, (dep,)).set(COOLDOWN_STATES[state])
        if state == "open":
            _bind(self._cache("cooldowns"), self.cooldowns, (dep,)).inc()

    def observe_usage(
        self,
        *,
        model: str,
        input_tokens: int,
        output_tokens: int,
        cost_usd: float,
        estimated_cost_usd: float | None = None,
        key: str | None = None,
    ) -> None:
        """Accounting settled one request: real tokens and cost of the model that answered."""
        mod = self._model(model)
        cache = self._cache("usage")
        children = cache.get((mod,))
        if children is None:
            children = cache[(mod,)] = (
                self.tokens.labels(mod, "input"),
                self.tokens.labels(mod, "output"),
                self.cost.labels(mod),
                self.estimated_cost.labels(mod),
            )
        children[0].inc(input_tokens)
        children[1].inc(output_tokens)
        children[2].inc(cost_usd)
        if estimated_cost_usd is not None:
            children[3].inc(estimated_cost_usd)
            if estimated_cost_usd > 0:
                self.cost_ratio.observe(cost_usd / estimated_cost_usd)
        name = self._key(key)
        if name is not None:
            kc = self._cache("key_usage")
            kchildren = kc.get((name,))
            if kchildren is None:
                kchildren = kc[(name,)] = (
                    self.key_tokens.labels(name, "input"),
                    self.key_tokens.labels(name, "output"),
                    self.key_cost.labels(name),
                )
            kchildren[0].inc(input_tokens)
            kchildren[1].inc(output_tokens)
            kchildren[2].inc(cost_usd)

    def rejected(self, limit: str) -> None:
        """Admission refused a request on `limit` (a LIMITS key, e.g. `rpm`, `daily_budget`)."""
        kind = LIMITS.get(limit)
        key = (limit, kind) if kind else (OTHER, OTHER)
        _bind(self._cache("rejections"), self.rejections, key).inc()

    def set_budget_remaining(self, key: str, period: str, remaining_usd: float, limit_usd: float) -> None:
        """A key's budget after admission/settle (no-op unless key_name_labels is on)."""
        name = self._key(key)
        if name is None:
            return
        labels = (name, self._pick(period, BUDGET_PERIODS))
        _bind(self._cache("budget_remaining"), self.budget_remaining, labels).set(remaining_usd)
        _bind(self._cache("budget_limit"), self.budget_limit, labels).set(limit_usd)

    def observe_store(self, operation: str, seconds: float, *, failure: str | None = None) -> None:
        """One limits-store call finished, successfully or not (`seconds` either way). On
        failure, `failure` is what the proxy did about it: `fail_open` or `fail_closed`."""
        op = self._pick(operation, STORE_OPERATIONS)
        _bind(self._cache("store_s"), self.store_seconds, (op,)).observe(seconds)
        if failure is None:
            self.store_up.set(1)
            return
        _bind(self._cache("store_err"), self.store_errors, (op, self._pick(failure, STORE_FAILURE_ACTIONS))).inc()
        self.store_up.set(0)

    def set_store_up(self, up: bool) -> None:
        """Health checks report the limits store's reachability."""
        self.store_up.set(1 if up else 0)

    def decision_log_error(self, reason: str, count: int = 1) -> None:
        """Decision records lost on the way to the Redis stream (`write_error`, `dropped`)."""
        key = (self._pick(reason, DECISION_LOG_ERRORS),)
        _bind(self._cache("decision_err"), self.decision_log_errors, key).inc(count)

    def set_build_info(self, version: str, policy_hash: str) -> None:
        """Once at start-up (and after a policy reload)."""
        self.build_info.clear()
        self.build_info.labels(version, policy_hash).set(1)
