"""Which deployments serve a model, and in which order a request tries them.

`DeploymentTable` is computed once per process from the policy and the environment:
the deployments with credentials for each model, in priority order, and each model's
strategy. `Balancer` turns that into the order for one request:

    failover      priority order (the table's order)
    round_robin   rotated by one per request
    least_loaded  fewest in-flight requests per `max_concurrent` first (ties rotate)
    weighted      smooth weighted round robin on `weight` for the first choice, then
                  priority order for the fallbacks

Health (open breakers, capacity) is not considered here: dispatch skips what it may not
use, so the order stays a cheap, pure-ish function of a few counters.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping, Sequence

from proxy.policy import Policy
from proxy.policy.registry import Deployment


class DeploymentTable:
    """Per model: usable deployments (credentials present) in priority order; per deployment:
    the registry models it serves. Built once; nothing here changes per request."""

    def __init__(self, policy: Policy, environ: Mapping[str, str]) -> None:
        self.deployments: tuple[Deployment, ...] = policy.deployments
        self.has_credentials: dict[str, bool] = {d.id: d.has_credentials(environ) for d in policy.deployments}
        self.usable: dict[str, tuple[Deployment, ...]] = {}
        self.serves: dict[str, tuple[str, ...]] = {d.id: () for d in policy.deployments}
        self.strategy: dict[str, str] = {}
        for model in policy.models.values():
            deps = policy.deployments_for(model)
            for d in deps:
                self.serves[d.id] += (model.id,)
            usable = [d for d in deps if self.has_credentials[d.id]]
            usable.sort(key=lambda d: d.priority)  # stable: declaration order breaks ties
            self.usable[model.id] = tuple(usable)
            self.strategy[model.id] = policy.dispatch.strategy_for(model.id)
        self.usable_models: frozenset[str] = frozenset(m for m, deps in self.usable.items() if deps)

    def for_model(self, model_id: str) -> tuple[Deployment, ...]:
        deps = self.usable.get(model_id)
        if deps is None:  # outside the registry, forwarded by a deployment pattern: not cached (any name)
            matched = [
                d for d in self.deployments if self.has_credentials[d.id] and any(fnmatch.fnmatchcase(model_id, p) for p in d.models)
            ]
            deps = tuple(sorted(matched, key=lambda d: d.priority))
        return deps


class Balancer:
    """The per-request deployment order. Holds the rotation counters (one set per process)."""

    def __init__(self, table: DeploymentTable) -> None:
        self._table = table
        self._turn: dict[str, int] = {}
        self._current: dict[str, list[float]] = {}  # smooth weighted round robin state
        self._weights = {m: [d.weight for d in deps] for m, deps in table.usable.items()}

    def order(self, model_id: str, load: Callable[[str], int] = lambda _: 0) -> Sequence[Deployment]:
        deps = self._table.for_model(model_id)
        strategy = self._table.strategy.get(model_id, "failover")
        if len(deps) < 2 or strategy == "failover":
            return deps
        if strategy == "weighted":
            first = self._weighted_pick(model_id)
            return (deps[first],) + deps[:first] + deps[first + 1 :]
        turn = self._turn.get(model_id, 0)
        self._turn[model_id] = turn + 1
        k = turn % len(deps)
        rotated = deps[k:] + deps[:k]
        if strategy == "least_loaded":
            return sorted(rotated, key=lambda d: load(d.id) / (d.max_concurrent or 1))
        return rotated

    def _weighted_pick(self, model_id: str) -> int:
        """nginx's smooth weighted round robin: exact shares, interleaved, no randomness."""
        weights = self._weights[model_id]
        current = self._current.get(model_id)
        if current is None:
            current = self._current[model_id] = [0.0] * len(weights)
        best = 0
        for i, w in enumerate(weights):
            current[i] += w
            if current[i] > current[best]:
                best = i
        current[best] -= sum(weights)
        return best


def available_models(policy: Policy, environ: Mapping[str, str]) -> frozenset[str]:
    """Registry ids with at least one deployment that has credentials (breakers are the running
    app's: `state.health.available_models()`)."""
    return DeploymentTable(policy, environ).usable_models
