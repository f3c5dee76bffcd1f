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

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry

from proxy.observe.families import Families
from proxy.observe.labels import (
    _STATUS_CLASS,
    BUDGET_PERIODS,
    CATEGORIES,
    COOLDOWN_STATES,
    DECISION_LOG_ERRORS,
    ENDPOINTS,
    ERROR_KINDS,
    LIMITS,
    LLM_CLASSIFIER_OUTCOMES,
    NONE,
    OTHER,
    OUTCOMES,
    OVERRIDES,
    PREFERENCES,
    PROVIDERS,
    STORE_FAILURE_ACTIONS,
    STORE_OPERATIONS,
    STREAM,
    error_kind_for_status,
    outcome_of,
    status_class,
)
from proxy.vocab import Endpoint

if TYPE_CHECKING:
    from proxy.policy import Policy
__all__ = [
    "Metrics",
    "CATEGORIES",
    "ENDPOINTS",
    "ERROR_KINDS",
    "LIMITS",
    "OUTCOMES",
    "PREFERENCES",
    "PROVIDERS",
    "error_kind_for_status",
    "outcome_of",
    "status_class",
    "BUDGET_PERIODS",
]  # the label helpers, re-exported


def _bind(cache: dict[tuple[str, ...], Any], metric: Any, key: tuple[str, ...]) -> Any:
    child = cache.get(key)
    if child is None:
        child = cache[key] = metric.labels(*key)
    return child


class Metrics(Families):
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
