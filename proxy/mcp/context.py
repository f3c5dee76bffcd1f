"""The context assembler: per task category, a system prompt and a tool subset (policies/prompts.yaml).

Opt-in: the request's `route.context`, else the key's `context_assembler`, else the policy's
`enabled_by_default`. The category's system prompt goes in as the first message; a client's own
system (or developer) messages stay where they are, after it, never replaced. The tool subset
narrows the MCP tools the loop offers (it never widens what the key may use).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from typing import Any

from proxy.policy.prompts import PromptsPolicy


def wanted(asked: bool | None, key_default: bool, policy: PromptsPolicy) -> bool:
    if asked is not None:
        return asked
    return key_default or policy.enabled_by_default


def system_prompt(category: str | None, policy: PromptsPolicy) -> tuple[str, str] | None:
    """The category's system prompt and the category it came from ("default" when the category
    has none of its own); None when the policy has no prompt for it."""
    ctx = policy.for_category(category)
    if not ctx.system:
        return None
    return ctx.system, (category if category in policy.categories else "default")


def with_system_prompt(messages: Sequence[Mapping[str, Any]], text: str) -> tuple[Mapping[str, Any], ...]:
    """Our system prompt first; every message of the client's (its own system prompt too) kept."""
    return ({"role": "system", "content": text}, *messages)


def tool_subset(category: str | None, policy: PromptsPolicy) -> tuple[str, ...] | None:
    """Glob patterns of the tools this category offers; None = no narrowing."""
    return policy.for_category(category).tools


def matches(name: str, patterns: tuple[str, ...] | None) -> bool:
    return patterns is None or any(fnmatch.fnmatchcase(name, p) for p in patterns)
