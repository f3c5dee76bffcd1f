"""What dispatch records about one request (its attempts and their outcome) and the hooks
it calls as it goes (`DispatchObserver`, implemented by the metrics module).

Time is split so that `total - upstream_seconds` is the proxy's own overhead:
`upstream_seconds` is time spent waiting on upstreams (every attempt, and for a stream the
time spent waiting for its chunks); `backoff_seconds` is time slept between retries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from proxy.policy.registry import Deployment, ModelSpec
from proxy.providers.base import UpstreamError, Usage


@dataclass
class Attempt:
    model: str
    deployment: str
    provider: str
    started: float
    seconds: float = 0.0  # waiting on the upstream (0 for a capacity skip)
    error: UpstreamError | None = None
    retry: int = 0  # 0: first try on this deployment, n: its n-th retry
    backoff_s: float = 0.0  # slept before this attempt
    usage: Usage | None = None  # what the upstream reported, if it answered
    ttft_s: float | None = None  # streams: to the first chunk

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model, "deployment": self.deployment, "provider": self.provider}
        if self.error is not None:
            out.update(status=self.error.status, kind=self.error.kind, reason=self.error.message)
        return out


@dataclass
class Outcome:
    """What dispatch did: every attempt in order, and the model/deployment that answered."""

    attempts: list[Attempt] = field(default_factory=list)
    model: ModelSpec | None = None
    deployment: Deployment | None = None
    upstream_seconds: float = 0.0
    backoff_seconds: float = 0.0
    retries: int = 0  # attempts that repeated one on the same deployment
    fallbacks: int = 0  # moves to another model of the plan (or the last resort)
    skipped: list[str] = field(default_factory=list)  # "model@deployment" with an open breaker
    deadline_hit: bool = False

    @property
    def tried_models(self) -> list[str]:
        seen: list[str] = []
        for a in self.attempts:
            if a.model not in seen:
                seen.append(a.model)
        return seen


class DispatchObserver(Protocol):
    """Hooks for metrics; the signatures match proxy/observe/metrics.py so its object can be passed."""

    def observe_upstream_attempt(
        self,
        *,
        deployment: str,
        provider: str,
        model: str,
        seconds: float,
        error: str | None = None,
        ttft_s: float | None = None,
    ) -> None: ...

    def retried(self, provider: str) -> None: ...

    def fell_back(self, from_model: str, to_model: str) -> None: ...

    def set_cooldown(self, deployment: str, state: str) -> None: ...


class NullObserver:
    def observe_upstream_attempt(self, **_: Any) -> None:
        return None

    def retried(self, provider: str) -> None:
        return None

    def fell_back(self, from_model: str, to_model: str) -> None:
        return None

    def set_cooldown(self, deployment: str, state: str) -> None:
        return None
