"""AppState: everything a request needs, built once per process in the app's lifespan.

No module-level mutable state anywhere else: handlers reach this as
`request.app.state.autoroute`.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from proxy import __version__
from proxy.dispatch import firstrun
from proxy.dispatch.dispatcher import Dispatcher, Outcome
from proxy.dispatch.health import DeploymentHealth
from proxy.keys.store import KeyStore
from proxy.limits import store
from proxy.limits.limiter import Limiter
from proxy.mcp.metrics import McpMetrics
from proxy.mcp.servers import McpServers
from proxy.observe.decisions import Decisions
from proxy.observe.feedback import FeedbackStore
from proxy.observe.metrics import Metrics
from proxy.policy import Policy, load_policy
from proxy.providers import Providers
from proxy.providers.http import Upstreams
from proxy.providers.litellm_lib import LazyLitellm
from proxy.request import accounting
from proxy.request.drain import Drain
from proxy.request.exchange import Exchange
from proxy.request.to_the_end import to_the_end
from proxy.routing import tokens
from proxy.routing.learned import router_for
from proxy.routing.llm_classifier import LLMClassifier
from proxy.routing.tokens import TokenCounter
from proxy.settings import Settings

log = logging.getLogger("autoroute")


@dataclass
class AppState:
    settings: Settings
    policy: Policy
    environ: Mapping[str, str]
    upstreams: Upstreams
    litellm: LazyLitellm
    dispatcher: Dispatcher
    redis: Any  # redis.asyncio.Redis, or the embedded store (fakeredis; admission runs in-process)
    keys: KeyStore
    limiter: Limiter
    metrics: Metrics
    decisions: Decisions
    llm_classifier: LLMClassifier | None
    drain: Drain
    mcp: McpServers
    mcp_metrics: McpMetrics
    tokens: TokenCounter = field(default_factory=TokenCounter)
    feedback: FeedbackStore = field(default_factory=FeedbackStore)
    _ready_task: asyncio.Future[None] | None = None

    @property
    def health(self) -> DeploymentHealth:
        """Breakers and in-flight per deployment (admin, metrics, the selector's availability)."""
        return self.dispatcher.health

    async def startup(self) -> None:
        # litellm (~120 MB) is not loaded here: plain Anthropic/Gemini requests and answers are
        # translated without it (proxy/providers/plain_request.py, plain.py); the first request
        # that needs it loads it off the event loop (proxy/providers/litellm_lib.py).
        tokens.warm_up()
        router_for(self.policy)
        settle_heap()
        self.mcp.start()  # connects in the background: a slow or dead tool server never delays start-up
        log.info(store.describe(self.redis))
        notice = await self.keys.startup_notice()
        (log.warning if await self.keys.open_mode() else log.info)(notice)
        self.metrics.set_build_info(__version__, self.policy.hash)
        await self._first_run_notice()
        self._ready_task = asyncio.ensure_future(self._announce_ready())

    async def _first_run_notice(self) -> None:
        """No provider key set: say what is missing, and whether the keyless deployments answer."""
        missing = self.dispatcher.missing_setup
        if missing:
            down = await firstrun.unreachable(self.policy, self.environ)
            log.warning("%s%s", missing, f" Nothing answers at {', '.join(down)}." if down else "")

    async def _announce_ready(self) -> None:
        """Log "autoroute ready" once /readyz would answer 200 (e.g. once the store answers)."""
        while True:
            checks = await self.ready()
            if all(checks.values()):
                log.info(
                    "autoroute ready: policy %s (%d models, %d deployments, %d available)",
                    self.policy.hash,
                    len(self.policy.models),
                    len(self.policy.deployments),
                    len(self.health.available_models()),
                )
                return
            await asyncio.sleep(0.1)

    async def shutdown(self) -> None:
        if self._ready_task is not None:
            self._ready_task.cancel()
        await self.drain.wait_recorded(timeout=5.0)  # every started request is accounted first
        await self.health.wait_idle(timeout=2.0)
        await self.decisions.aclose()
        await self.mcp.stop()
        await self.upstreams.aclose()
        await self.redis.aclose()

    async def ready(self) -> dict[str, bool]:
        reachable = await store.ping(self.redis)
        self.metrics.set_store_up(reachable)
        return {"policy": True, "store": reachable or self.policy.limits.on_store_error == "fail_open"}

    def reload(self) -> tuple[str, str]:
        """Re-read the policy directory (routing, trained router, calibration) without a restart.

        (old hash, new hash). Later decisions carry the new hash. A broken policy raises
        PolicyError and the running one stays. Registry, deployments and limits are read by
        the dispatcher and the limiter at start-up: changing those still needs a restart.
        """
        fresh = load_policy(self.settings.policy_dir, self.environ)
        router_for(fresh)  # build the trained router before the first request needs it
        old, self.policy = self.policy, fresh
        settle_heap()
        self.metrics.set_build_info(__version__, fresh.hash)
        log.info("policy reloaded: %s -> %s", old.hash, fresh.hash)
        return old.hash, fresh.hash

    def ready_detail(self) -> dict[str, Any]:
        """Shown by /readyz without deciding readiness: a down tool server only hides its tools."""
        return {"mcp_servers": {n: "up" if c.up else f"down: {c.last_error or 'connecting'}" for n, c in self.mcp.connections.items()}}

    async def record(self, ex: Exchange) -> None:
        """Account a finished request, once (settle, metrics, decision record). Never raises: the
        response is already out, and an accounting failure must not cut the client's connection
        (a reservation that could not be settled expires after reservation_ttl_s). Runs to its end
        even if the request's task is cancelled meanwhile (proxy/request/to_the_end.py)."""
        await to_the_end(self._record(ex))

    async def _record(self, ex: Exchange) -> None:
        try:
            await accounting.record(self, ex)
        except Exception:
            log.exception("accounting failed for %s; its reservation expires on its own", ex.decision_id)
        finally:
            if ex.drained:
                self.drain.recorded()

    async def complete_for_classifier(self, model_id: str, body: dict[str, Any]) -> Mapping[str, Any]:
        """The LLM classifier's transport: one call through dispatch (the proxy's own overhead,
        not charged to any key)."""
        model = self.policy.resolve_model(model_id)
        if model is None:
            raise LookupError(f"llm_classifier.model {model_id!r} is not in the registry")
        completion = await self.dispatcher.complete([model], body, Outcome())
        return completion.body


def build_state(settings: Settings, environ: Mapping[str, str], policy: Policy | None = None) -> AppState:
    policy = policy or load_policy(settings.policy_dir, environ)
    metrics = Metrics.from_policy(policy, CollectorRegistry())
    upstreams = Upstreams(policy, environ)
    litellm = LazyLitellm()
    dispatcher = Dispatcher(policy, upstreams, Providers(litellm), environ, observer=metrics)
    redis = store.create_redis(settings, policy.limits)
    master = settings.master_key.get_secret_value() if settings.master_key else None
    keys = KeyStore(redis, master, open_mode=settings.open_mode)
    limiter = Limiter(redis, policy.limits, on_store_call=metrics.observe_store)
    decisions = Decisions.from_policy(redis, policy, environ, metrics)
    feedback_file = environ.get("AUTOROUTE_FEEDBACK_FILE")
    feedback = FeedbackStore(path=Path(feedback_file) if feedback_file else None)
    mcp_metrics = McpMetrics(metrics.registry)
    mcp = McpServers(policy.mcp, environ, on_status=mcp_metrics.server_changed)
    state = AppState(
        settings,
        policy,
        environ,
        upstreams,
        litellm,
        dispatcher,
        redis,
        keys,
        limiter,
        metrics,
        decisions,
        None,
        Drain(settings.shutdown_grace_s),
        mcp,
        mcp_metrics,
        feedback=feedback,
    )
    if policy.routing.llm_classifier.enabled:
        state.llm_classifier = LLMClassifier(policy.routing.llm_classifier, state.complete_for_classifier)
    return state


def settle_heap() -> None:
    """Move what start-up (or a reload) built, policy, trained router and modules, out of the
    garbage collector's reach: later full collections skip it (`gc.freeze`). Without this, a full
    collection walks the router's tables: ~8 ms of one request's time, in the tail of the
    latency and in the CPU per request. On a reload, what was frozen is thawed first, so the
    replaced policy's cycles are collected, not kept. Then the C heap's free pages go back to the
    OS (`trim_c_heap`): parsing the router's artifact leaves ~8 MB of freed buffers that would
    otherwise stay in the process's RSS for its life."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    trim_c_heap()


def trim_c_heap() -> bool:
    """glibc's malloc_trim(0): release free memory in the middle of the C heap, not only at its
    top. False where there is no glibc (musl, macOS): nothing to do there."""
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False
