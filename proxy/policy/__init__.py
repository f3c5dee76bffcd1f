"""The policy: every YAML file in the policy directory, validated into one frozen object.

| file                 | section        | schema                  |
|----------------------|----------------|-------------------------|
| models.yaml          | registry       | registry.RegistryFile   |
| routing.yaml         | routing        | routing.RoutingPolicy   |
| dispatch.yaml        | dispatch       | dispatch.DispatchPolicy |
| limits.yaml          | limits         | limits.LimitsPolicy     |
| observability.yaml   | observability  | observability.ObservabilityPolicy |
| mcp.yaml             | mcp            | mcp.McpPolicy           |
| prompts.yaml         | prompts        | prompts.PromptsPolicy   |

models.yaml is required; the others fall back to their defaults. An unknown file is an
error (a typo must not silently drop a policy). Beside them: the trained router's artifact
(routing.yaml `router`: `builtin` = proxy/routing/model/router.json.gz, or a path) and an optional
`calibration.json` (per-category, per-tier adequacy factors written by `autoroute calibrate
--feedback`). The policy hash is the SHA-256 of the files' bytes and the artifact's, so a
decision can name exactly which policy, weights and calibration made it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from proxy.errors import PolicyError
from proxy.policy import passthrough
from proxy.policy.artifact import DEFAULT_ARTIFACT, RouterArtifact, load_artifact
from proxy.policy.dispatch import DispatchPolicy
from proxy.policy.limits import LimitsPolicy
from proxy.policy.loader import read_yaml, validate
from proxy.policy.mcp import McpPolicy
from proxy.policy.observability import ObservabilityPolicy
from proxy.policy.prompts import PromptsPolicy
from proxy.policy.registry import Deployment, ModelSpec, RegistryFile
from proxy.policy.routing import RoutingPolicy

CALIBRATION_FILE = "calibration.json"

FILES: dict[str, tuple[str, type[BaseModel]]] = {
    "models.yaml": ("registry", RegistryFile),
    "routing.yaml": ("routing", RoutingPolicy),
    "dispatch.yaml": ("dispatch", DispatchPolicy),
    "limits.yaml": ("limits", LimitsPolicy),
    "observability.yaml": ("observability", ObservabilityPolicy),
    "mcp.yaml": ("mcp", McpPolicy),
    "prompts.yaml": ("prompts", PromptsPolicy),
}


@dataclass(frozen=True)
class Policy:
    registry: RegistryFile
    routing: RoutingPolicy = RoutingPolicy()
    dispatch: DispatchPolicy = DispatchPolicy()
    limits: LimitsPolicy = LimitsPolicy()
    observability: ObservabilityPolicy = ObservabilityPolicy()
    mcp: McpPolicy = McpPolicy()
    prompts: PromptsPolicy = PromptsPolicy()
    hash: str = ""
    source: Path | None = None
    router_artifact: RouterArtifact | None = field(default=None, repr=False)
    # category -> tier -> factor on the router's P(adequate) (feedback; absent = 1.0)
    calibration: Mapping[str, Mapping[int, float]] = field(default_factory=dict, repr=False)
    models: dict[str, ModelSpec] = field(default_factory=dict, repr=False)
    _aliases: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        models = {m.id: m for m in self.registry.models}
        aliases: dict[str, str] = {}
        for m in self.registry.models:  # provider-side ids, then registry ids (which win)
            aliases.setdefault(m.api_model_id.lower(), m.id)
        for m in self.registry.models:
            aliases[m.id.lower()] = m.id
        object.__setattr__(self, "models", models)
        object.__setattr__(self, "_aliases", aliases)

    @property
    def deployments(self) -> tuple[Deployment, ...]:
        return self.registry.deployments

    def resolve_model(self, name: str) -> ModelSpec | None:
        """A registry id (`anthropic/claude-sonnet-4`) or provider-side id (`claude-sonnet-4-20250514`)."""
        model_id = self._aliases.get(name.lower())
        return self.models[model_id] if model_id else None

    def passthrough_model(self, name: str) -> tuple[ModelSpec, str] | None:
        """A model outside the registry that a deployment's patterns forward, and where its
        price came from (`cost_map`, `policy_rate`, `unpriced`); None if no pattern admits it."""
        costs = passthrough.cost_map()
        found = passthrough.match(self.registry.deployments, name, costs)
        if found is None:
            return None
        dep, model_id, api_name = found
        return passthrough.passthrough_spec(dep, model_id, api_name, costs, self.registry.unknown_model_price)

    def deployments_for(self, model: ModelSpec) -> list[Deployment]:
        return [d for d in self.registry.deployments if d.serves(model)]


def load_policy(directory: Path | str, environ: Mapping[str, str]) -> Policy:
    directory = Path(directory)
    if not directory.is_dir():
        raise PolicyError(f"{directory}: policy directory not found (set AUTOROUTE_POLICY_DIR or --policy)")
    files = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml"))
    unknown = [p.name for p in files if p.name not in FILES]
    if unknown:
        raise PolicyError(f"{directory}: unknown policy file(s) {', '.join(unknown)}; expected {', '.join(FILES)}")
    if not (directory / "models.yaml").is_file():
        raise PolicyError(f"{directory}/models.yaml: missing (the model registry is required)")
    sections: dict[str, BaseModel] = {}
    digest = hashlib.sha256()
    for path in files:
        name, schema = FILES[path.name]
        data, lines = read_yaml(path, environ)
        sections[name] = validate(schema, data, path, lines)
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    routing = sections.get("routing")
    router = _load_router(directory, routing.router if isinstance(routing, RoutingPolicy) else "builtin")
    if router is not None:
        digest.update(b"router\0" + router.digest.encode() + b"\0")
    calibration = _load_calibration(directory / CALIBRATION_FILE, digest)
    policy = Policy(**sections, hash=digest.hexdigest()[:16], source=directory, router_artifact=router, calibration=calibration)  # type: ignore[arg-type]
    _check_cross_references(policy, directory)
    return policy


def _load_router(directory: Path, setting: str | None) -> RouterArtifact | None:
    if setting is None:
        return None
    path = DEFAULT_ARTIFACT if setting == "builtin" else directory / setting
    try:
        return load_artifact(path)
    except (OSError, ValueError) as exc:
        if setting == "builtin" and not path.exists():
            return None  # a checkout without the trained weights routes with the heuristic and the matrix
        raise PolicyError(f"{directory}/routing.yaml router: cannot load {path}: {exc}") from exc


def _load_calibration(path: Path, digest: Any) -> dict[str, dict[int, float]]:
    if not path.is_file():
        return {}
    raw = path.read_bytes()
    try:
        data = json.loads(raw)
        factors = {str(cat): {int(t): float(v) for t, v in tiers.items()} for cat, tiers in data["factors"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PolicyError(f"{path}: not a calibration file ({exc}); rewrite it with autoroute calibrate --feedback") from exc
    bad = [f"{c}.{t}" for c, tiers in factors.items() for t, v in tiers.items() if t not in (1, 2, 3, 4) or not 0 <= v <= 10]
    if bad:
        raise PolicyError(f"{path}: factors must be tiers 1-4 with values 0-10 (bad: {', '.join(bad)})")
    digest.update(CALIBRATION_FILE.encode() + b"\0" + raw + b"\0")
    return factors


def _check_cross_references(policy: Policy, directory: Path) -> None:
    problems = []
    local = policy.routing.local_model
    if local and policy.resolve_model(local) is None:
        problems.append(f"{directory}/routing.yaml local_model: unknown model {local!r}")
    for where, model_id in policy.routing.model_references():
        if model_id not in policy.models:
            problems.append(f"{directory}/routing.yaml {where}: unknown model {model_id!r}")
    for model_id in policy.dispatch.strategies:
        if model_id not in policy.models:
            problems.append(f"{directory}/dispatch.yaml strategies.{model_id}: unknown model")
    last = policy.dispatch.last_resort
    if last and policy.resolve_model(last) is None:
        problems.append(f"{directory}/dispatch.yaml last_resort: unknown model {last!r}")
    if problems:
        raise PolicyError("invalid policy:\n  " + "\n  ".join(problems))
