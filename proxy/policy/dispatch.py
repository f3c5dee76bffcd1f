"""How requests reach deployments (`policies/dispatch.yaml`): strategies, retries, cooldowns.

The schema only; `proxy/dispatch/dispatcher.py` applies it and `policies/dispatch.yaml` documents
every field with its default.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from proxy.policy.registry import Strict


def _underscored(value: Any) -> Any:
    """`round-robin` (the router spec's spelling) is accepted for `round_robin`."""
    return value.replace("-", "_") if isinstance(value, str) else value


Strategy = Annotated[Literal["failover", "round_robin", "least_loaded", "weighted"], BeforeValidator(_underscored)]


class Cooldown(Strict):
    failures: int = Field(3, ge=1, description="failures within window_s that open the breaker")
    window_s: float = Field(60.0, gt=0)
    cooldown_s: float = Field(30.0, gt=0, description="skip the deployment this long, then probe once")
    failure_ratio: float = Field(0.5, gt=0, le=1, description="...and at least this share of the window's attempts failed")


class DispatchPolicy(Strict):
    strategy: Strategy = "failover"
    strategies: dict[str, Strategy] = Field({}, description="registry model id -> strategy override")
    retries: int = Field(2, ge=0, description="retries per deployment on 429/5xx/timeouts/refused")
    retry_base_delay: float = Field(0.25, ge=0)
    retry_max_delay: float = Field(8.0, ge=0)
    retry_after_cap_s: float = Field(20.0, ge=0, description="longest Retry-After waited for; a longer one moves on at once")
    request_deadline_s: float | None = Field(
        180.0, gt=0, description="total time for a request's attempts and waits when routing.max_latency_s is unset"
    )
    max_attempts: int = Field(10, ge=1, description="upstream attempts per request, all deployments and models")
    cooldown: Cooldown = Cooldown()
    last_resort: str | None = Field(None, description="model tried after the plan is exhausted")

    @model_validator(mode="after")
    def _delays(self) -> DispatchPolicy:
        if self.retry_max_delay < self.retry_base_delay:
            raise ValueError("retry_max_delay must be >= retry_base_delay")
        return self

    def strategy_for(self, model_id: str) -> str:
        return self.strategies.get(model_id, self.strategy)
