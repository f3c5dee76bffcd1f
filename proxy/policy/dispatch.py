"""How requests reach deployments (`policies/dispatch.yaml`): strategies, retries, cooldowns."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from proxy.policy.registry import Strict

Strategy = Literal["failover", "round_robin", "least_loaded", "weighted"]


class Cooldown(Strict):
    failures: int = Field(3, ge=1, description="failures within window_s that open the breaker")
    window_s: float = Field(60.0, gt=0)
    cooldown_s: float = Field(30.0, gt=0, description="skip the deployment this long, then probe once")


class DispatchPolicy(Strict):
    strategy: Strategy = "failover"
    strategies: dict[str, Strategy] = Field({}, description="registry model id -> strategy override")
    retries: int = Field(2, ge=0, description="retries per deployment on 429/5xx/timeouts/refused")
    retry_base_delay: float = Field(0.25, ge=0)
    retry_max_delay: float = Field(8.0, ge=0)
    retry_after_cap_s: float = Field(20.0, ge=0, description="longest Retry-After honoured")
    cooldown: Cooldown = Cooldown()
    last_resort: str | None = Field(None, description="model tried after the plan is exhausted")

    def strategy_for(self, model_id: str) -> Strategy:
        return self.strategies.get(model_id, self.strategy)
