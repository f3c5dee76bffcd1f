"""Unmet hard constraints -> the words of reasons and errors (owns: how selection explains a refusal)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from proxy.errors import BudgetExceeded, NoCapableModel

if TYPE_CHECKING:
    from proxy.routing.selection import _Need


def _describe(code: str, need: _Need) -> str:
    total = need.input_tokens + need.output_tokens
    return {
        "available": "a usable deployment (credentials configured, not cooling down)",
        "allowed": f"a model this key allows ({', '.join(need.patterns)})",
        "local_only": "a local model (auto:local)",
        "self_hosted": "a self-hosted model (self_hosted_only)",
        "context": f"a context window of {total:,} tokens (input {need.input_tokens:,} + output {need.output_tokens:,})",
        "max_output": f"{need.output_tokens:,} output tokens",
        "tools": "tool calling (the request has tools)",
        "vision": "image input (the request has images)",
        "cost_cap": f"an estimated cost within the cap of ${need.cost_cap or 0:.6f}",
        "latency": f"an estimated latency within {need.latency_cap}s",
        "budget": f"an estimated cost within the remaining budget of ${need.budget or 0:.6f}",
    }[code]


_SHORT = {
    "available": "has no usable deployment",
    "allowed": "is not allowed for this key",
    "self_hosted": "is not self-hosted",
    "local_only": "is not local",
    "context": "has too small a context window",
    "max_output": "cannot produce that many output tokens",
    "tools": "has no tool calling",
    "vision": "takes no images",
    "cost_cap": "is over the cost cap",
    "latency": "is too slow for max_latency_s",
    "budget": "is over the remaining budget",
}


def _no_capable(failures: Mapping[str, tuple[str, ...]], need: _Need) -> Exception:
    singles = {f[0] for f in failures.values() if len(f) == 1}
    unmet = singles or {code for f in failures.values() for code in f}
    order = (
        "available",
        "allowed",
        "self_hosted",
        "local_only",
        "context",
        "max_output",
        "tools",
        "vision",
        "cost_cap",
        "latency",
        "budget",
    )
    codes = [code for code in order if code in unmet]
    if any(f == ("budget",) for f in failures.values()):  # capable models exist; none fits the budget
        return BudgetExceeded(
            f"no capable model fits the key's remaining budget (${need.budget or 0:.6f}); "
            "raise the budget or wait for the budget window to reset"
        )
    needs = "; ".join(_describe(code, need) for code in codes) or "a model in the registry"
    return NoCapableModel(
        f"no model can serve this request: it needs {needs}. Relax the constraint or name a model explicitly.",
        param="model",
    )
