"""RoutePlan -> a completion or an open stream: walk the plan's models and their deployments.

For each model of the plan (planning appends `dispatch.last_resort` when the key may use it), its
usable deployments in the order of the model's strategy (proxy/dispatch/deployments.py); for each deployment up to
1 + `retries` attempts with backoff (proxy/dispatch/retry.py). Before each attempt the deployment's
breaker (proxy/dispatch/health.py) and capacity gate (proxy/dispatch/gate.py) are asked: an open breaker or
a full deployment is skipped, not waited for.

Retryable failures (429, 5xx, timeouts, refused connections, garbage) move on; a
Retry-After longer than `retry_after_cap_s` (or than the time left) moves on at once. A
non-retryable 4xx is returned at once, unless the caller did not name the model (`routed`)
and the 4xx is the provider's doing (404 model retired — that model is cooled down —, 400/422
for an unsupported parameter, the proxy's own key refused): then the plan goes on. The
request's deadline (`deadline`, else `routing.max_latency_s`, else
`dispatch.request_deadline_s` from the call) bounds every attempt and every backoff wait. For
streams the attempt lasts until the first substantive chunk (content, tool call, finish),
bounded by the deployment's `first_token_s` (and the deadline); only then is the stream
handed over, so a fallback can still happen before the first byte reaches the client. The
deadline bounds the time to that first chunk, not the length of the stream.

Cancellation (the client went away) propagates into the upstream call at once; every
attempt still releases its lease and in-flight count.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

import anyio

from proxy.dispatch.attempts import Attempt, DispatchObserver, NullObserver, Outcome
from proxy.dispatch.deployments import Balancer, DeploymentTable
from proxy.dispatch.errors import attempts_header, exhausted, provider_fault, rejected
from proxy.dispatch.firstrun import missing_setup
from proxy.dispatch.gate import DeploymentGate, LocalGate
from proxy.dispatch.health import PASS, DeploymentHealth, Ticket
from proxy.dispatch.retry import retry_after_too_long, retry_wait_s
from proxy.dispatch.stream import OpenStream, substantive
from proxy.dispatch.upstream_body import upstream_body
from proxy.dispatch.walk import Lease, Walk, aborted_kind, capacity_attempt, close_stream, metric_kind, rough_tokens
from proxy.errors import UpstreamFailed
from proxy.policy import Policy
from proxy.policy.registry import Deployment, ModelSpec
from proxy.providers import Providers
from proxy.providers.base import ChunkStream, Completion, UpstreamCall, UpstreamError
from proxy.providers.http import Upstreams

__all__ = ["Attempt", "Dispatcher", "OpenStream", "Outcome", "attempts_header", "exhausted", "rejected"]


class Dispatcher:
    def __init__(
        self,
        policy: Policy,
        upstreams: Upstreams,
        providers: Providers,
        environ: Mapping[str, str],
        *,
        gate: DeploymentGate | None = None,
        observer: DispatchObserver | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self.upstreams = upstreams
        self.providers = providers
        self.environ = environ
        self.table = DeploymentTable(policy, environ)
        self.balancer = Balancer(self.table)
        self.health = DeploymentHealth(self.table, policy.dispatch.cooldown, clock=clock, on_change=self._breaker_changed)
        self.gate: DeploymentGate = gate or LocalGate(clock)
        self.observer: DispatchObserver = observer or NullObserver()
        self._rng = rng or random.Random()
        self._clock = clock
        self._estimate_tokens = any(d.tpm for d in policy.deployments)
        self.missing_setup = missing_setup(policy, environ)  # a first run: no provider key set

    async def complete(
        self,
        models: list[ModelSpec],
        body: dict[str, Any],
        outcome: Outcome,
        *,
        deadline: float | None = None,
        est_tokens: int | None = None,
        gate: DeploymentGate | None = None,
        routed: bool = False,
    ) -> Completion:
        """The first successful completion along the plan. `deadline` is a time.monotonic()
        instant; without it, routing.max_latency_s (if set) from now. `gate` replaces the
        dispatcher's own for this request (e.g. the request's admission in the limits store)."""
        result = await self._walk(models, body, outcome, deadline, est_tokens, gate, stream=False, routed=routed)
        assert isinstance(result, Completion)
        return result

    async def open_stream(
        self,
        models: list[ModelSpec],
        body: dict[str, Any],
        outcome: Outcome,
        *,
        deadline: float | None = None,
        est_tokens: int | None = None,
        gate: DeploymentGate | None = None,
        routed: bool = False,
    ) -> OpenStream:
        """A stream whose first substantive chunk has arrived. The caller must `aclose()` it."""
        result = await self._walk(models, body, outcome, deadline, est_tokens, gate, stream=True, routed=routed)
        assert isinstance(result, OpenStream)
        return result

    # ── the walk ────────────────────────────────────────────────────────────
    def _plan(self, models: list[ModelSpec]) -> list[ModelSpec]:
        return list(dict.fromkeys(models))  # keep order, drop repeats

    async def _walk(
        self,
        models: list[ModelSpec],
        body: dict[str, Any],
        outcome: Outcome,
        deadline: float | None,
        est_tokens: int | None,
        gate: DeploymentGate | None,
        *,
        stream: bool,
        routed: bool = False,
    ) -> Completion | OpenStream:
        try:
            return await self._walk_plan(models, body, outcome, deadline, est_tokens, gate, stream, routed)
        except UpstreamFailed as exc:
            if self.missing_setup and outcome.attempts and all(a.error is not None and a.error.kind == "connect" for a in outcome.attempts):
                exc.message = f"{exc.message} {self.missing_setup}"
            raise

    async def _walk_plan(
        self,
        models: list[ModelSpec],
        body: dict[str, Any],
        outcome: Outcome,
        deadline: float | None,
        est_tokens: int | None,
        gate: DeploymentGate | None,
        stream: bool,
        routed: bool,
    ) -> Completion | OpenStream:
        if deadline is None:
            total = self.policy.routing.max_latency_s or self.policy.dispatch.request_deadline_s
            deadline = self._clock() + total if total else None
        est = est_tokens if est_tokens is not None else (rough_tokens(body) if self._estimate_tokens else 0)
        w = Walk(models, body, outcome, deadline, est, stream, gate or self.gate, routed)
        previous: ModelSpec | None = None
        for model in self._plan(models):
            deps = self.balancer.order(model.id, self.health.in_flight)
            if not deps:
                continue
            if previous is not None:
                outcome.fallbacks += 1
                self.observer.fell_back(previous.id, model.id)
            previous = model
            for dep in deps:
                result = await self._on_deployment(w, model, dep)
                if result is not None:
                    outcome.model, outcome.deployment = model, dep
                    return result
        raise exhausted(outcome, models, self.health)

    async def _on_deployment(self, w: Walk, model: ModelSpec, dep: Deployment) -> Completion | OpenStream | None:
        """Up to 1 + retries attempts on one deployment; None: move on to the next one."""
        dp, outcome = self.policy.dispatch, w.outcome
        error: UpstreamError | None = None
        for retry in range(dp.retries + 1):
            if w.sent >= dp.max_attempts or (w.deadline is not None and self._clock() >= w.deadline):
                outcome.deadline_hit = w.sent < dp.max_attempts
                raise exhausted(outcome, w.models, self.health)
            wait = 0.0
            if error is not None:
                if retry_after_too_long(error, dp):
                    return None  # the upstream asks for longer than we wait: another deployment may answer now
                wait = retry_wait_s(error, retry - 1, dp, self._rng)
                if w.deadline is not None and self._clock() + wait >= w.deadline:
                    return None  # no time to retry here; another deployment may answer now
                if self.health.is_open(dep.id, model.id):
                    return None
                await asyncio.sleep(wait)
                outcome.backoff_seconds += wait
            ticket = self.health.allow(dep.id, model.id)
            if ticket is None:  # breaker open (or its one probe is out)
                if retry == 0:
                    outcome.skipped.append(f"{model.id}@{dep.id}")
                return None
            try:
                inner = await w.gate.acquire(dep, model, w.est)
            except BaseException:  # e.g. the key is over a limit: the request ends here
                self.health.neutral(dep.id, model.id, ticket)
                raise
            if inner is None:
                self.health.neutral(dep.id, model.id, ticket)
                outcome.attempts.append(capacity_attempt(model, dep))
                return None
            lease = Lease(w.gate, inner)
            w.sent += 1
            if retry:
                outcome.retries += 1
                self.observer.retried(dep.provider)
            attempt = Attempt(model.id, dep.id, dep.provider, time.perf_counter(), retry=retry, backoff_s=wait)
            outcome.attempts.append(attempt)
            try:
                if w.stream:
                    return await self._try_stream(model, dep, w.body, attempt, outcome, ticket, lease, w.deadline)
                return await self._try_complete(model, dep, w.body, attempt, outcome, ticket, lease, w.deadline)
            except UpstreamError as exc:
                if not exc.retryable:
                    if w.routed and provider_fault(exc):  # not the caller's doing: the plan goes on
                        if exc.status == 404:  # the model is retired or renamed on this deployment
                            self.health.trip(dep.id, model.id, exc.message)
                        return None
                    raise rejected(exc, outcome) from None
                if outcome.deadline_hit:
                    raise exhausted(outcome, w.models, self.health) from None
                error = exc
        return None

    # ── one attempt ─────────────────────────────────────────────────────────
    def _call(self, model: ModelSpec, dep: Deployment, body: dict[str, Any], stream: bool) -> UpstreamCall:
        return UpstreamCall(
            deployment=dep,
            model=model,
            body=upstream_body(body, model, dep, stream=stream),
            api_key=self.upstreams.api_key(dep),
            pool=self.upstreams.pool(dep),
        )

    def _limit(self, deadline: float | None, first_token_s: float | None) -> tuple[float | None, bool]:
        """(seconds this attempt may take, whether that limit is the request's deadline)."""
        remaining = None if deadline is None else max(0.0, deadline - self._clock())
        if first_token_s is not None and (remaining is None or first_token_s < remaining):
            return first_token_s, False
        return remaining, remaining is not None

    def _timed_out(self, model: ModelSpec, dep: Deployment, outcome: Outcome, seconds: float | None, is_deadline: bool) -> UpstreamError:
        if is_deadline:
            outcome.deadline_hit = True
            return UpstreamError(
                dep.provider, dep.id, "timeout", f"{dep.id} had not answered when the request's deadline passed", model=model.id
            )
        return UpstreamError(
            dep.provider, dep.id, "first_token_timeout", f"{dep.id} sent no first token within {seconds:g}s", model=model.id
        )

    async def _try_complete(
        self,
        model: ModelSpec,
        dep: Deployment,
        body: dict[str, Any],
        attempt: Attempt,
        outcome: Outcome,
        ticket: Ticket,
        lease: object,
        deadline: float | None,
    ) -> Completion:
        call = self._call(model, dep, body, False)
        limit, is_deadline = self._limit(deadline, None)
        self.health.begin(dep.id)
        result: Completion | None = None
        error: UpstreamError | None = None
        try:
            try:
                async with asyncio.timeout(limit):
                    result = await self.providers.for_format(dep.wire_format).complete(call)
            except TimeoutError:
                error = self._timed_out(model, dep, outcome, limit, is_deadline)
            except UpstreamError as exc:
                error = exc
        except BaseException as exc:  # cancelled (the client went away, the server stops) or a bug
            await self._settle(
                attempt, outcome, model, dep, ticket, lease, time.perf_counter() - attempt.started, aborted=aborted_kind(exc)
            )
            raise
        usage = result.usage if result is not None else None
        await self._settle(attempt, outcome, model, dep, ticket, lease, time.perf_counter() - attempt.started, error=error, usage=usage)
        if error is not None:
            raise error
        assert result is not None
        return result

    async def _try_stream(
        self,
        model: ModelSpec,
        dep: Deployment,
        body: dict[str, Any],
        attempt: Attempt,
        outcome: Outcome,
        ticket: Ticket,
        lease: object,
        deadline: float | None,
    ) -> OpenStream:
        call = self._call(model, dep, body, True)
        limit, is_deadline = self._limit(deadline, dep.timeouts.first_token_s)
        self.health.begin(dep.id)
        upstream: ChunkStream | None = None
        chunks: Any = None
        buffered: list[dict[str, Any]] = []
        ended = False
        error: UpstreamError | None = None
        try:
            try:
                async with asyncio.timeout(limit):
                    upstream = await self.providers.for_format(dep.wire_format).stream(call)
                    chunks = upstream.__aiter__()
                    while True:  # buffer until something worth sending: no byte has left yet
                        chunk = await chunks.__anext__()
                        buffered.append(chunk)
                        if substantive(chunk):
                            break
            except StopAsyncIteration:
                ended = True
                if not buffered:
                    error = UpstreamError(dep.provider, dep.id, "stream_cut", f"{dep.id} sent an empty stream", model=model.id)
            except TimeoutError:
                error = self._timed_out(model, dep, outcome, limit, is_deadline)
            except UpstreamError as exc:
                error = exc
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                await close_stream(upstream, chunks)
            await self._settle(
                attempt, outcome, model, dep, ticket, lease, time.perf_counter() - attempt.started, aborted=aborted_kind(exc)
            )
            raise
        waited = time.perf_counter() - attempt.started
        if error is not None:
            await close_stream(upstream, chunks)
            await self._settle(attempt, outcome, model, dep, ticket, lease, waited, error=error)
            raise error
        assert upstream is not None
        attempt.ttft_s = waited
        self.health.success(dep.id, model.id, ticket)  # it answered: closes a half-open breaker now
        return OpenStream(self, attempt, outcome, model, dep, lease, upstream, chunks, buffered, ended, waited)

    async def _settle(
        self,
        attempt: Attempt,
        outcome: Outcome,
        model: ModelSpec,
        dep: Deployment,
        ticket: Ticket | None,
        lease: object,
        seconds: float,
        *,
        error: UpstreamError | None = None,
        usage: Any = None,
        aborted: str | None = None,
    ) -> None:
        """An attempt is over: time, health, metrics, and the gate's lease back (even if cancelled).
        `aborted`: "cancelled" or "internal" when it ended without an upstream verdict."""
        attempt.seconds = seconds
        attempt.error = error if error is not None else attempt.error
        attempt.usage = usage
        outcome.upstream_seconds += seconds
        self.health.end(dep.id)
        if ticket is not None:
            if error is not None and error.retryable and not (outcome.deadline_hit and error.kind == "timeout"):
                self.health.failure(dep.id, model.id, ticket, error.message)
            elif error is None and aborted is None:
                self.health.success(dep.id, model.id, ticket)
            else:  # a 4xx, a cancellation, or cut short by the request's own deadline
                self.health.neutral(dep.id, model.id, ticket)
        kind = metric_kind(error) if error is not None else aborted
        self.observer.observe_upstream_attempt(
            deployment=dep.id, provider=dep.provider, model=model.id, seconds=seconds, error=kind, ttft_s=attempt.ttft_s
        )
        tokens = usage.total_tokens if usage is not None and not usage.counted else None
        assert isinstance(lease, Lease)
        with anyio.CancelScope(shield=True):
            await lease.gate.release(lease.inner, tokens)

    async def stream_closed(self, s: OpenStream) -> None:
        """Called once by OpenStream.aclose(): the stream's attempt is over."""
        error = s.error
        if error is not None and error.retryable:
            self.health.failure(s.deployment.id, s.model.id, PASS, error.message)
        await self._settle(
            s.attempt,
            s.outcome,
            s.model,
            s.deployment,
            None,
            s.lease,
            s.upstream_seconds,
            error=error,
            usage=s.usage,
            aborted="cancelled" if not s.finished and error is None else None,
        )

    def _breaker_changed(self, deployment: str, state: str) -> None:
        self.observer.set_cooldown(deployment, state)
