"""RoutePlan -> a completion or an open stream: walk the plan's models and their deployments.

Falls back down the plan on retryable failures (429, 5xx, timeouts, refused connections,
garbage); returns a non-retryable 4xx at once. For streams the first chunk is fetched
before the stream is handed over, so a fallback can still happen before the first byte
reaches the client.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from proxy.errors import ProxyError, UpstreamFailed, UpstreamRejected, UpstreamTimeout
from proxy.policy import Policy
from proxy.policy.registry import Deployment, ModelSpec
from proxy.providers import Providers
from proxy.providers.base import ChunkStream, Completion, UpstreamCall, UpstreamError
from proxy.providers.http import Upstreams
from proxy.upstream_body import upstream_body


@dataclass
class Attempt:
    model: str
    deployment: str
    provider: str
    started: float
    seconds: float = 0.0
    error: UpstreamError | None = None

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

    @property
    def tried_models(self) -> list[str]:
        seen: list[str] = []
        for a in self.attempts:
            if a.model not in seen:
                seen.append(a.model)
        return seen


@dataclass
class OpenStream:
    first: dict[str, Any]
    rest: AsyncIterator[dict[str, Any]]
    stream: ChunkStream


class Dispatcher:
    def __init__(self, policy: Policy, upstreams: Upstreams, providers: Providers, environ: Mapping[str, str]) -> None:
        self.policy = policy
        self.upstreams = upstreams
        self.providers = providers
        self.environ = environ

    def usable_deployments(self, model: ModelSpec) -> list[Deployment]:
        deps = [d for d in self.policy.deployments_for(model) if d.has_credentials(self.environ)]
        return sorted(deps, key=lambda d: d.priority)

    def _call(self, model: ModelSpec, dep: Deployment, body: dict[str, Any], stream: bool) -> UpstreamCall:
        return UpstreamCall(
            deployment=dep,
            model=model,
            body=upstream_body(body, model, dep, stream=stream),
            api_key=self.upstreams.api_key(dep),
            client=self.upstreams.client(dep),
            timeout=self.upstreams.timeout(dep),
        )

    async def complete(self, models: list[ModelSpec], body: dict[str, Any], outcome: Outcome) -> Completion:
        for model, dep in self._targets(models, outcome):
            attempt = Attempt(model.id, dep.id, dep.provider, time.perf_counter())
            outcome.attempts.append(attempt)
            try:
                result = await self.providers.for_format(dep.wire_format).complete(self._call(model, dep, body, False))
            except UpstreamError as exc:
                attempt.seconds = time.perf_counter() - attempt.started
                outcome.upstream_seconds += attempt.seconds
                attempt.error = exc
                if not exc.retryable:
                    raise rejected(exc, outcome) from None
                continue
            attempt.seconds = time.perf_counter() - attempt.started
            outcome.upstream_seconds += attempt.seconds
            outcome.model, outcome.deployment = model, dep
            return result
        raise exhausted(outcome, models)

    async def open_stream(self, models: list[ModelSpec], body: dict[str, Any], outcome: Outcome) -> OpenStream:
        for model, dep in self._targets(models, outcome):
            attempt = Attempt(model.id, dep.id, dep.provider, time.perf_counter())
            outcome.attempts.append(attempt)
            stream: ChunkStream | None = None
            try:
                stream = await self.providers.for_format(dep.wire_format).stream(self._call(model, dep, body, True))
                rest = stream.__aiter__()
                first = await rest.__anext__()
            except (UpstreamError, StopAsyncIteration) as exc:
                if stream is not None:
                    await stream.aclose()
                err = exc if isinstance(exc, UpstreamError) else UpstreamError(
                    dep.provider, dep.id, "stream_cut", f"{dep.id} sent an empty stream", model=model.id
                )
                attempt.seconds = time.perf_counter() - attempt.started
                outcome.upstream_seconds += attempt.seconds
                attempt.error = err
                if not err.retryable:
                    raise rejected(err, outcome) from None
                continue
            outcome.model, outcome.deployment = model, dep
            return OpenStream(first, rest, stream)
        raise exhausted(outcome, models)

    def _targets(self, models: list[ModelSpec], outcome: Outcome):  # type: ignore[no-untyped-def]
        for model in models:
            for dep in self.usable_deployments(model):
                yield model, dep


def rejected(exc: UpstreamError, outcome: Outcome) -> ProxyError:
    """A non-retryable upstream 4xx, passed back with its status and meaning."""
    status = exc.status or 400
    if status in (401, 403):
        # The proxy's own provider credentials were refused: the operator's problem, not the
        # client's, so not a 401/403 that an SDK would read as "your key is wrong".
        code, status = "upstream_authentication_failed", 502
    elif 400 <= status < 500:
        code = {404: "upstream_not_found", 413: "upstream_request_too_large"}.get(status, "upstream_bad_request")
    else:
        code, status = "upstream_bad_request", 400
    return UpstreamRejected(
        f"The upstream rejected the request: {exc.message}",
        status=status,
        code=code,
        headers=attempts_header(outcome),
    )


def exhausted(outcome: Outcome, models: list[ModelSpec]) -> UpstreamFailed:
    names = ", ".join(m.id for m in models)
    if not outcome.attempts:
        return UpstreamFailed(
            f"No usable deployment for {names}: set the provider's API key (see policies/models.yaml "
            "`api_key_env`) or add a deployment.",
            code="no_usable_deployment",
            status=503,
        )
    summaries = [a.summary() for a in outcome.attempts]
    all_timeouts = all(a.error is not None and a.error.kind == "timeout" for a in outcome.attempts)
    cls = UpstreamTimeout if all_timeouts else UpstreamFailed
    causes = "; ".join(f"{a.deployment}: {a.error.message}" for a in outcome.attempts if a.error)
    return cls(f"Every upstream attempt failed ({causes}). Retry later.", attempts=summaries, headers=attempts_header(outcome))


def attempts_header(outcome: Outcome) -> dict[str, str]:
    return {"x-autoroute-attempts": ",".join(f"{a.model}@{a.deployment}" for a in outcome.attempts)}
