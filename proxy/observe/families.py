"""Every Prometheus family autoroute exports: names, help texts, label names and buckets.

`Metrics` (proxy/observe/metrics.py) inherits these attributes and adds one small method per
pipeline event; nothing is registered at import, only when a `Metrics` is built on a registry.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from proxy.observe.labels import (
    CLASSIFIER_BUCKETS,
    CONFIDENCE_BUCKETS,
    COST_RATIO_BUCKETS,
    LATENCY_BUCKETS,
    OVERHEAD_BUCKETS,
    STORE_BUCKETS,
    TTFT_BUCKETS,
)


class Families:
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
