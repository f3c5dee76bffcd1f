"""Any provider model by name: models outside the registry that a deployment's patterns admit.

A deployment that lists glob patterns (`models: ["openai/*", "anthropic/claude-*"]`) forwards
any model they match, not only the registry's. A name is tried as given (`openai/gpt-4o`),
and without a provider prefix (`claude-3-5-haiku-latest`, `gpt-4o`) as `<provider>/<name>`
when a specific pattern (`anthropic/claude-*`, not a bare `openai/*`) matches it or litellm's
bundled cost map knows the name. The model's price comes from that cost map (offline: the
JSON file litellm ships, read without importing litellm) or from the policy's
`unknown_model_price` rule; where the price came from goes into the decision's reason.
"""

from __future__ import annotations

import fnmatch
import functools
import importlib.util
from pathlib import Path
from typing import Any, Literal

import orjson

from proxy.policy.registry import Deployment, ModelSpec, UnknownModelPrice

PriceSource = Literal["cost_map", "policy_rate", "unpriced"]

# litellm's provider names -> ours.
_PROVIDERS = {"openai": "openai", "anthropic": "anthropic", "gemini": "google", "together_ai": "together", "ollama": "ollama"}


@functools.cache
def cost_map() -> dict[str, Any]:
    """litellm's bundled cost map (read once; immutable after). Empty if litellm is absent."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return {}
    path = Path(next(iter(spec.submodule_search_locations))) / "model_prices_and_context_window_backup.json"
    return orjson.loads(path.read_bytes()) if path.is_file() else {}


def _specific(pattern: str) -> bool:
    return "/" in pattern and pattern.split("/", 1)[1] not in ("*", "")


def match(deployments: tuple[Deployment, ...], name: str, costs: dict[str, Any]) -> tuple[Deployment, str, str] | None:
    """(deployment, registry-style id, provider-side name) for `name`, or None."""
    for dep in deployments:
        patterns = [p for p in dep.models if any(c in p for c in "*?[")]
        if not patterns:
            continue
        if "/" in name:
            if any(fnmatch.fnmatchcase(name, p) for p in patterns):
                return dep, name, name.split("/", 1)[1]
            continue
        candidate = f"{dep.provider}/{name}"
        known = _PROVIDERS.get(str((costs.get(name) or {}).get("litellm_provider"))) == dep.provider
        if any(fnmatch.fnmatchcase(candidate, p) and (known or _specific(p)) for p in patterns):
            return dep, candidate, name
    return None


def passthrough_spec(
    dep: Deployment, model_id: str, api_name: str, costs: dict[str, Any], rule: UnknownModelPrice
) -> tuple[ModelSpec, PriceSource]:
    entry = costs.get(api_name) or costs.get(f"{dep.provider}/{api_name}") or costs.get(model_id)
    if entry and entry.get("input_cost_per_token") is not None:
        source: PriceSource = "cost_map"
        price_in = float(entry.get("input_cost_per_token") or 0) * 1e6
        price_out = float(entry.get("output_cost_per_token") or 0) * 1e6
    elif rule.action == "charge":
        source, price_in, price_out = "policy_rate", rule.input_usd_per_mtok, rule.output_usd_per_mtok
    else:
        source, price_in, price_out = "unpriced", 0.0, 0.0
    entry = entry or {}
    spec = ModelSpec(
        id=model_id,
        provider=dep.provider,
        api_model_id=api_name,
        display_name=model_id,
        tier=3,
        quality_index=50,
        reasoning_score=50,
        coding_score=50,
        instruction_following=50,
        speed_tokens_per_sec=100,
        context_window=int(entry.get("max_input_tokens") or 128_000),
        max_output_tokens=int(entry["max_output_tokens"]) if entry.get("max_output_tokens") else None,
        input_usd_per_mtok=price_in,
        output_usd_per_mtok=price_out,
        supports_tools=bool(entry.get("supports_function_calling", True)),
        supports_vision=bool(entry.get("supports_vision", False)),
        self_hosted=False,
        reasoning_model=bool(entry.get("supports_reasoning")) and dep.provider == "openai" and api_name.startswith(("o1", "o3", "o4")),
    )
    return spec, source


REASONS: dict[str, str] = {
    "cost_map": "priced from litellm's bundled cost map",
    "policy_rate": "not in litellm's cost map: priced at the policy's unknown_model_price rate",
    "unpriced": "not in litellm's cost map: forwarded unpriced (the key has no budget)",
}
