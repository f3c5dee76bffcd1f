"""Usage and cost of a finished request: the provider's usage when it reported one, else
counted from the text; cost from the registry's prices."""

from __future__ import annotations

import time

from proxy.exchange import Exchange
from proxy.providers.base import Usage


def settle_usage(ex: Exchange, usage: Usage | None, estimated_prompt_tokens: int, completion_text_chars: int = 0) -> None:
    """Fix the exchange's usage and cost. `usage` is the provider's, or None if it sent none."""
    if usage is None or usage.counted:
        # The provider reported nothing: count the prompt as estimated and the output from
        # its text (~4 characters a token), so budgets still move.
        usage = Usage(estimated_prompt_tokens, max(0, (completion_text_chars + 3) // 4), counted=True)
    ex.usage = usage
    model = ex.outcome.model
    ex.cost_usd = model.cost_usd(usage.prompt_tokens, usage.completion_tokens) if model else 0.0


def finish(ex: Exchange, status: int | None = None) -> None:
    if status is not None:
        ex.status = status
    ex.finished = time.perf_counter()
