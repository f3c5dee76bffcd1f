"""The errors a client sees when dispatch gives up: each attempt's cause, never a key or a body.

rejected   a non-retryable upstream 4xx, passed back with its meaning
exhausted  the plan ran out: 502 (failures), 504 (timeouts / the request's deadline),
           503 (everything cooling down or at capacity, with Retry-After)
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

from proxy.dispatch.attempts import Outcome
from proxy.errors import ProxyError, UpstreamFailed, UpstreamRejected, UpstreamTimeout
from proxy.policy.registry import ModelSpec
from proxy.providers.base import UpstreamError

if TYPE_CHECKING:
    from proxy.dispatch.health import DeploymentHealth

TIMEOUT_KINDS = ("timeout", "first_token_timeout")


# A 400/422 whose message says the provider cannot do what was asked (a parameter or model it
# does not support), as opposed to content the caller must change.
_UNSUPPORTED = re.compile(
    r"(?i)\b(unsupported|not supported|does not support|unknown (parameter|field|model)|unrecognized|"
    r"invalid model|model[^.]{0,40}(not found|does not exist|deprecated|retired|decommissioned))"
)


def provider_fault(exc: UpstreamError) -> bool:
    """A non-retryable upstream 4xx that says more about the provider than about the request:
    the model is gone (404), the proxy's own key is refused (401/403), or a parameter or model
    is not supported there (400/422 saying so). Content the caller must fix is not."""
    status = exc.status or 0
    if status in (401, 403, 404):
        return True
    return status in (400, 422) and bool(_UNSUPPORTED.search(exc.message))


def rejected(exc: UpstreamError, outcome: Outcome) -> ProxyError:
    """A non-retryable upstream 4xx, passed back with its status and meaning."""
    status = exc.status or 400
    if status in (401, 403):
        # The proxy's own provider credentials were refused: the operator's problem, not the
        # client's, so not a 401/403 that an SDK would read as "your key is wrong".
        code, status = "upstream_authentication_failed", 502
    elif 400 <= status < 500:
        code = {404: "upstream_not_found", 413: "upstream_request_too_large"}.get(status, "upstream_bad_request")
    else:
        code, status = "upstream_bad_request", 400
    return UpstreamRejected(
        f"The upstream rejected the request: {exc.message}",
        status=status,
        code=code,
        headers=attempts_header(outcome),
    )


def exhausted(outcome: Outcome, models: list[ModelSpec], health: DeploymentHealth | None = None) -> UpstreamFailed:
    names = ", ".join(m.id for m in models)
    headers = attempts_header(outcome)
    skipped = f" Cooling down after repeated failures: {', '.join(outcome.skipped)}." if outcome.skipped else ""
    if not outcome.attempts:
        if outcome.skipped:
            wait = health.retry_in_s([s.split("@", 1)[0] for s in outcome.skipped]) if health else None
            retry = max(1, math.ceil(wait)) if wait is not None else 1
            return UpstreamFailed(
                f"Every deployment of {names} is cooling down after repeated failures; retry in {retry}s.{skipped}",
                code="deployments_cooling_down",
                status=503,
                headers={"retry-after": str(retry)},
            )
        return UpstreamFailed(
            f"No usable deployment for {names}: set the provider's API key (see policies/models.yaml `api_key_env`) or add a deployment.",
            code="no_usable_deployment",
            status=503,
        )
    summaries = [a.summary() for a in outcome.attempts]
    causes = "; ".join(f"{a.deployment}: {a.error.message}" for a in outcome.attempts if a.error)
    sent = [a for a in outcome.attempts if a.error is None or a.error.kind != "capacity"]
    if not sent:
        return UpstreamFailed(
            f"Every deployment of {names} is at capacity ({causes}). Retry shortly.{skipped}",
            code="deployments_at_capacity",
            status=503,
            attempts=summaries,
            headers={**headers, "retry-after": "1"},
        )
    if outcome.deadline_hit:
        return UpstreamTimeout(
            f"No upstream answered within the request's deadline ({causes}). Retry later, or raise routing.max_latency_s.{skipped}",
            attempts=summaries,
            headers=headers,
        )
    all_timeouts = all(a.error is not None and a.error.kind in TIMEOUT_KINDS for a in sent)
    cls = UpstreamTimeout if all_timeouts else UpstreamFailed
    asked = [a.error.retry_after for a in sent if a.error is not None and a.error.retry_after is not None]
    if asked:  # the upstreams said when to come back: pass the soonest on
        headers["retry-after"] = str(max(1, math.ceil(min(asked))))
    return cls(f"Every upstream attempt failed ({causes}). Retry later.{skipped}", attempts=summaries, headers=headers)


def attempts_header(outcome: Outcome) -> dict[str, str]:
    return {"x-autoroute-attempts": ",".join(f"{a.model}@{a.deployment}" for a in outcome.attempts)}
