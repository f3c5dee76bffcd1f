"""May this key use this model (and this MCP tool)? ONE rule set, applied on every path a request can take.

The rules, all of which must hold:
  - `self_hosted_only`: the model is self-hosted (open weights on infrastructure you control);
  - `allowed_models` (glob patterns, case-insensitive; empty = every model): a pattern matches
    the registry id (`openai/gpt-4.1`) or the provider's model id (`gpt-4.1`).

Applied by the planning step (proxy/routing/planning.py) to: a named model (and the alias it
came through), the set `auto` selects from (so its fallbacks), `dispatch.last_resort`, and
the LLM classifier's own call (a key that may not use the classifier's model is routed by
the heuristic alone: its prompt is not sent to that model). Dispatch only walks the plan.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from functools import lru_cache
from typing import Protocol

from proxy.errors import PermissionDenied
from proxy.policy.registry import ModelSpec


class Grant(Protocol):
    """What a key carries for access control (proxy/keys/store.py KeyRecord)."""

    @property
    def allowed_models(self) -> tuple[str, ...]: ...

    @property
    def self_hosted_only(self) -> bool: ...


def allows(key: Grant | None, model: ModelSpec) -> bool:
    """The one rule set. `key=None` (open mode, the proxy's own calls) allows every model."""
    if key is None:
        return True
    if key.self_hosted_only and not model.self_hosted:
        return False
    patterns = key.allowed_models
    return not patterns or _matches(tuple(patterns), model.id, model.api_model_id)


@lru_cache(maxsize=4096)
def _matches(patterns: tuple[str, ...], model_id: str, api_model_id: str) -> bool:
    names = (model_id.lower(), api_model_id.lower())
    return any(fnmatch.fnmatchcase(n, p.lower()) for p in patterns for n in names)


def allowed_ids(key: Grant | None, models: Iterable[ModelSpec]) -> frozenset[str] | None:
    """The ids of `models` the key may use; None when it may use every model (no restriction)."""
    if key is None or (not key.allowed_models and not key.self_hosted_only):
        return None
    return frozenset(m.id for m in models if allows(key, m))


def check(key: Grant | None, model: ModelSpec) -> None:
    """Raise 403 naming the restriction when the key may not use `model`."""
    if allows(key, model):
        return
    assert key is not None
    why = (
        "self-hosted models only"
        if key.self_hosted_only and not model.self_hosted
        else ("models matching " + ", ".join(key.allowed_models))
    )
    raise PermissionDenied(
        f'This API key may not use model {model.id!r} (it is limited to {why}). Use one of its allowed models, or model="auto".',
        param="model",
        code="model_not_allowed",
    )


class ToolGrant(Protocol):
    @property
    def allowed_tools(self) -> tuple[str, ...] | None: ...


def allows_tool(key: ToolGrant | None, qualified_name: str) -> bool:
    """May this key see and call the MCP tool `<server>__<tool>` (or the proxy's own `route`,
    `list_models`)? `allowed_tools` unset = every tool; a list = deny by default (glob patterns,
    case-sensitive like tool names); the same rule for the tool loop and the /mcp gateway."""
    if key is None or key.allowed_tools is None:
        return True
    return any(fnmatch.fnmatchcase(qualified_name, p) for p in key.allowed_tools)
