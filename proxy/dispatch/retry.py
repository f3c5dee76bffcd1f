"""How long to wait before retrying an upstream attempt. Pure functions.

Exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff And
Jitter"): before retry n (n = 0 for the first retry) wait uniform(0, min(cap, base * 2^n)).
An upstream's Retry-After replaces the backoff; one longer than `retry_after_cap_s` is not
waited for at all (`retry_after_too_long`): dispatch moves on to the next deployment or model,
so one upstream cannot park a request for minutes.
"""

from __future__ import annotations

import random

from proxy.policy.dispatch import DispatchPolicy
from proxy.providers.base import UpstreamError


def backoff_s(retry: int, base: float, cap: float, rng: random.Random) -> float:
    """Full jitter: uniform(0, min(cap, base * 2**retry)) seconds; `retry` counts from 0."""
    ceiling = min(cap, base * (2.0 ** min(retry, 62)))
    return rng.uniform(0.0, ceiling) if ceiling > 0 else 0.0


def retry_after_too_long(error: UpstreamError, policy: DispatchPolicy) -> bool:
    """The upstream asked to wait longer than the policy waits for one deployment."""
    return error.retry_after is not None and error.retry_after > policy.retry_after_cap_s


def retry_wait_s(error: UpstreamError, retry: int, policy: DispatchPolicy, rng: random.Random) -> float:
    """The wait before retrying after `error`: its Retry-After (capped), else the backoff."""
    if error.retry_after is not None:
        return min(max(0.0, error.retry_after), policy.retry_after_cap_s)
    return backoff_s(retry, policy.retry_base_delay, policy.retry_max_delay, rng)
