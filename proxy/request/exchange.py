"""Everything one request learns on its way through the pipeline, and its state machine.

    started --admitted--> admitted --completed--> done (2xx)
       |                     |------upstream_failed--> done (502: the upstream broke mid-stream)
       |---failed / cancelled (from any state before done) --> done (4xx/5xx, 499)

The transitions are the ONLY writers of how the request ended (`status`, `error`,
`error_type`, `error_code`, `finished`); the first terminal transition wins, so a request is
never counted twice or with a status that contradicts its outcome. `accounting.record` is the
one finalizer, for plain and streamed requests alike.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from proxy.dispatch.dispatcher import Outcome
from proxy.errors import ProxyError, UpstreamFailed
from proxy.policy.registry import ModelSpec
from proxy.providers.base import UpstreamError, Usage
from proxy.vocab import Endpoint

if TYPE_CHECKING:
    from proxy.keys.store import KeyRecord
    from proxy.mcp.loop import LoopTrace
    from proxy.request.admission import Admission
    from proxy.request.canonical import CanonicalRequest
    from proxy.routing.planning import Plan


def new_decision_id() -> str:
    return "dec_" + os.urandom(10).hex()


@dataclass
class Exchange:
    decision_id: str = field(default_factory=new_decision_id)
    started: float = field(default_factory=time.perf_counter)
    endpoint: str = Endpoint.CHAT
    drained: bool = False  # counted by the shutdown drain (AppState.record tells it once accounted)
    request: CanonicalRequest | None = None
    state: str = "started"  # started | admitted | done
    requested_model: str = ""
    stream: bool = False
    key: KeyRecord | None = None
    task_id: str | None = None
    agent: str | None = None
    plan: Plan | None = None
    admission: Admission | None = None
    outcome: Outcome = field(default_factory=Outcome)
    usage: Usage | None = None
    cost_usd: float = 0.0
    status: int = 0
    error: BaseException | None = None
    error_type: str | None = None
    error_code: str | None = None
    ttft_s: float | None = None
    finished: float | None = None
    prompt: str | None = None  # the last user turn, only when the policy logs prompts
    notes: list[str] = field(default_factory=list)  # what an inbound adapter changed (x-autoroute-note)
    tools: LoopTrace | None = None  # the MCP tool loop's model and tool calls (proxy/request/toolloop.py)
    context_category: str | None = None  # whose system prompt the context assembler added
    signals: list[str] = field(default_factory=list)  # implicit feedback seen in the answer (proxy/request/signals.py)

    @property
    def routed(self) -> bool:
        return self.plan is not None and self.plan.routed

    @property
    def decision(self) -> dict[str, Any]:
        return self.plan.decision if self.plan is not None else {}

    @property
    def models(self) -> list[ModelSpec]:
        return self.plan.models if self.plan is not None else []

    @property
    def primary(self) -> ModelSpec | None:
        return self.models[0] if self.models else None

    @property
    def total_seconds(self) -> float:
        return (self.finished or time.perf_counter()) - self.started

    @property
    def waited_seconds(self) -> float:
        """Time spent waiting on upstreams and between retries: not the proxy's own cost."""
        return self.outcome.upstream_seconds + self.outcome.backoff_seconds

    # ── transitions: the only writers of the outcome ───────────────────────
    def admitted(self) -> None:
        """An upstream accepted the request under an admission (its answer or stream is open)."""
        if self.state == "started":
            self.state = "admitted"

    def completed(self, status: int = 200) -> None:
        self._end(status, None, None, None)

    def upstream_failed(self, exc: UpstreamError) -> None:
        """The upstream failed after the response started (a stream cut or error event)."""
        error = UpstreamFailed(f"The upstream failed mid-stream: {exc.message}", code=exc.kind)
        self._end(502, error, "upstream_error", exc.kind)

    def failed(self, exc: BaseException) -> None:
        """An error ended the request: its own status for a ProxyError, else a 500 (a bug)."""
        if isinstance(exc, ProxyError):
            self._end(exc.status, exc, exc.type, exc.code)
        else:
            self._end(500, exc, "api_error", "internal_error")

    def cancelled(self, exc: BaseException) -> None:
        """The client went away (or the server is stopping) before the response was done."""
        self._end(499, exc, "client_closed", "client_disconnected")

    def close(self) -> None:
        """Stamp the end of a request no transition ended (the finalizer's guard)."""
        if self.finished is None:
            self.finished = time.perf_counter()
            self.state = "done"

    def _end(self, status: int, error: BaseException | None, error_type: str | None, code: str | None) -> None:
        if self.state == "done":
            return  # the first ending wins
        self.state = "done"
        self.status, self.error, self.error_type, self.error_code = status, error, error_type, code
        self.finished = time.perf_counter()

    def response_headers(self) -> dict[str, str]:
        headers = {"x-autoroute-decision-id": self.decision_id}
        used = self.outcome.model or self.primary
        if used is not None:
            headers["x-autoroute-model"] = used.id
        if self.outcome.attempts:
            headers["x-autoroute-attempts"] = ",".join(f"{a.model}@{a.deployment}" for a in self.outcome.attempts)
        if self.routed:
            d = self.decision
            headers["x-autoroute-category"] = str(d.get("category", ""))
            headers["x-autoroute-complexity"] = str(d.get("complexity", ""))
            headers["x-autoroute-reason"] = header_safe(str(d.get("reason", "")))
            headers["x-autoroute-estimated-cost-usd"] = f"{float(d.get('estimated_cost_usd', 0.0)):.8f}"
        request = self.plan.request if self.plan is not None else None
        if request is not None and request.dropped:
            headers["x-autoroute-dropped-params"] = ",".join(request.dropped)
        if self.notes:
            headers["x-autoroute-note"] = header_safe("; ".join(self.notes))
        if self.admission is not None:
            headers.update(self.admission.headers)
        return headers


def header_safe(text: str, limit: int = 300) -> str:
    """HTTP header values are latin-1 without control characters."""
    text = " ".join(text.split())[:limit]
    return text.encode("latin-1", "replace").decode("latin-1")
