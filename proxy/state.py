"""AppState: everything a request needs, built once per process in the app's lifespan.

No module-level mutable state anywhere else: handlers reach this as
`request.app.state.autoroute`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from proxy.dispatch import Dispatcher
from proxy.exchange import Exchange
from proxy.gate import DeploymentGate
from proxy.health import DeploymentHealth
from proxy.policy import Policy, load_policy
from proxy.providers import Providers
from proxy.providers.http import Upstreams
from proxy.providers.litellm_lib import LazyLitellm
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
    # dispatch (issue 5): breakers + in-flight per deployment (admin, metrics, selector's
    # available_models()) and the per-deployment capacity gate (Dispatcher(gate=...) for a Redis one)
    health: DeploymentHealth
    gate: DeploymentGate

    @property
    def needs_translation(self) -> bool:
        """Some deployment with credentials speaks Anthropic's or Gemini's format."""
        return any(d.wire_format != "openai" and d.has_credentials(self.environ) for d in self.policy.deployments)

    async def startup(self) -> None:
        if self.needs_translation:  # load litellm's translation layer off the event loop
            self.litellm.start()
        log.info(
            "autoroute ready: policy %s (%d models, %d deployments)",
            self.policy.hash, len(self.policy.models), len(self.policy.deployments),
        )

    async def shutdown(self) -> None:
        await self.health.wait_idle(timeout=2.0)  # streams cut at the grace's end settle first
        await self.upstreams.aclose()

    async def ready(self) -> dict[str, bool]:
        checks = {"policy": True}
        if self.needs_translation:  # not ready to take Anthropic/Gemini traffic until it can translate
            checks["translation"] = self.litellm.loaded
        return checks

    async def record(self, ex: Exchange) -> None:
        """Account a finished request (metrics, limits settle, decision log)."""
        return None


def build_state(settings: Settings, environ: Mapping[str, str], policy: Policy | None = None) -> AppState:
    policy = policy or load_policy(settings.policy_dir, environ)
    upstreams = Upstreams(policy, environ)
    litellm = LazyLitellm()
    dispatcher = Dispatcher(policy, upstreams, Providers(litellm), environ)
    return AppState(settings, policy, environ, upstreams, litellm, dispatcher, dispatcher.health, dispatcher.gate)
