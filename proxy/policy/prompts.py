"""The context assembler's policy (`policies/prompts.yaml`): a system prompt and a tool subset
per task category, as the tutorial's SYSTEM_PROMPTS and CATEGORY_TOOLS."""

from __future__ import annotations

from pydantic import Field

from proxy.policy.registry import Strict


class CategoryContext(Strict):
    system: str | None = Field(None, description="added as a system message before the conversation")
    tools: tuple[str, ...] | None = Field(None, description="glob patterns of <server>__<tool>; None = every allowed tool")


class PromptsPolicy(Strict):
    enabled_by_default: bool = Field(False, description="assemble context for every request (else per key or request)")
    categories: dict[str, CategoryContext] = Field(default_factory=dict)
    default: CategoryContext = CategoryContext()

    def for_category(self, category: str | None) -> CategoryContext:
        return self.categories.get(category or "", self.default)
