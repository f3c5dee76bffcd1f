"""Everything one request learns on its way through the pipeline: the decision record."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from proxy.dispatch import Outcome
from proxy.errors import ProxyError
from proxy.policy.registry import ModelSpec
from proxy.providers.base import Usage


def new_decision_id() -> str:
    return "dec_" + os.urandom(10).hex()


@dataclass
class Exchange:
    decision_id: str = field(default_factory=new_decision_id)
    started: float = field(default_factory=time.perf_counter)
    started_wall: float = field(default_factory=time.time)
    requested_model: str = ""
    stream: bool = False
    routed: bool = False  # model="auto..." (classified and selected) vs a named model
    models: list[ModelSpec] = field(default_factory=list)  # the plan: primary, then fallbacks
    decision: dict[str, Any] = field(default_factory=dict)  # classification + plan, for headers and logs
    outcome: Outcome = field(default_factory=Outcome)
    usage: Usage | None = None
    cost_usd: float = 0.0
    status: int = 0
    error_type: str | None = None
    error_code: str | None = None
    ttft_s: float | None = None
    finished: float | None = None

    @property
    def primary(self) -> ModelSpec | None:
        return self.models[0] if self.models else None

    @property
    def total_seconds(self) -> float:
        return (self.finished or time.perf_counter()) - self.started

    @property
    def overhead_seconds(self) -> float:
        return max(0.0, self.total_seconds - self.outcome.upstream_seconds)

    def fail(self, exc: ProxyError) -> None:
        self.status = exc.status
        self.error_type = exc.type
        self.error_code = exc.code

    def response_headers(self) -> dict[str, str]:
        headers = {"x-autoroute-decision-id": self.decision_id}
        used = self.outcome.model
        if used is not None:
            headers["x-autoroute-model"] = used.id
        elif self.primary is not None:
            headers["x-autoroute-model"] = self.primary.id
        if self.outcome.attempts:
            headers["x-autoroute-attempts"] = ",".join(f"{a.model}@{a.deployment}" for a in self.outcome.attempts)
        if self.routed and self.decision:
            d = self.decision
            headers["x-autoroute-category"] = str(d.get("category", ""))
            headers["x-autoroute-complexity"] = str(d.get("complexity", ""))
            headers["x-autoroute-reason"] = _header_safe(str(d.get("reason", "")))
            headers["x-autoroute-estimated-cost-usd"] = f"{float(d.get('estimated_cost_usd', 0.0)):.8f}"
        return headers


def _header_safe(text: str, limit: int = 300) -> str:
    """HTTP header values are latin-1 without control characters."""
    text = " ".join(text.split())[:limit]
    return text.encode("latin-1", "replace").decode("latin-1")
