"""The canonical request: what the client asked for, read ONCE at the edge.

An inbound adapter (proxy/api/chat.py today; Responses, Anthropic Messages and embeddings
next) checks its wire body and builds one `CanonicalRequest`. Everything downstream reads this
object and nothing else: estimation (proxy/routing/tokens.py via `conversation`), classification
(`view`), access control, admission (`output_cap`, `n`), dispatch, accounting; and the upstream
body is rendered from it (`render()`, then proxy/dispatch/upstream_body.py per model), so what is
estimated, checked and admitted is exactly what is sent.

Immutable: a frozen dataclass whose containers are tuples or read-only mappings. The
message dicts themselves are the parsed JSON and are shared, not copied (copying a 400k-token
conversation per request would cost more than everything else); nothing downstream writes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from types import MappingProxyType
from typing import Any

from proxy.vocab import Endpoint

EMPTY: Mapping[str, Any] = MappingProxyType({})

#: Parameters whose support differs between models: asked for only when set to a non-default.
CAPABILITY_PARAMS = ("n", "logprobs", "top_logprobs")


@dataclass(frozen=True)
class CanonicalRequest:
    model: str
    messages: tuple[Mapping[str, Any], ...]
    #: The ONE effective output cap per choice (max_tokens or max_completion_tokens; a body
    #: that sets both to different values is refused at parse). None: the client set none.
    output_cap: int | None = None
    #: Which name the client used for the cap (rendered back under the same name).
    cap_param: str = "max_tokens"
    n: int = 1
    stream: bool = False
    include_usage: bool = False
    tools: tuple[Mapping[str, Any], ...] | None = None
    tool_choice: Any = None
    response_format: Mapping[str, Any] | None = None
    #: The `route` object (extra_body={"route": {...}}); ours, never sent upstream.
    route: Mapping[str, Any] | None = None
    task_id: str | None = None
    agent: str | None = None
    #: Every other field (stream_options, temperature, logprobs, ...), passed through to
    #: OpenAI-compatible upstreams as the client sent it.
    extra: Mapping[str, Any] = field(default_factory=lambda: EMPTY)
    endpoint: Endpoint = Endpoint.CHAT  # the wire format it came in
    #: Parameters removed because the chosen model cannot honour them (policy: drop).
    dropped: tuple[str, ...] = field(default=())

    # ── what the request asks of a model ───────────────────────────────────
    @property
    def asks(self) -> frozenset[str]:
        """Capability parameters set to something a model must support (n > 1, logprobs)."""
        out = set()
        if self.n > 1:
            out.add("n")
        if self.extra.get("logprobs"):
            out.add("logprobs")
        if self.extra.get("top_logprobs") is not None:
            out.add("top_logprobs")
        return frozenset(out)

    def without(self, params: frozenset[str]) -> CanonicalRequest:
        """The same request with capability parameters removed (policy `unsupported_params: drop`)."""
        extra = {k: v for k, v in self.extra.items() if k not in params}
        n = 1 if "n" in params else self.n
        dropped = tuple(sorted(set(self.dropped) | (params & self.asks)))
        return replace(self, extra=MappingProxyType(extra), n=n, dropped=dropped)

    # ── views ──────────────────────────────────────────────────────────────
    @cached_property
    def view(self) -> Mapping[str, Any]:
        """The conversation and its shape as a chat-completions mapping, for the classifiers
        (proxy/routing/classify.py, llm_classifier.py), with the one effective output cap."""
        out: dict[str, Any] = {"model": self.model, "messages": list(self.messages)}
        if self.output_cap is not None:
            out["max_tokens"] = self.output_cap
        if self.tools is not None:
            out["tools"] = list(self.tools)
        if self.tool_choice is not None:
            out["tool_choice"] = self.tool_choice
        if self.response_format is not None:
            out["response_format"] = self.response_format
        return MappingProxyType(out)

    def render(self) -> dict[str, Any]:
        """The chat-completions body this request sends (before per-model fixes): a new dict."""
        out: dict[str, Any] = dict(self.extra)
        out["model"] = self.model
        out["messages"] = list(self.messages)
        if self.output_cap is not None:
            out[self.cap_param] = self.output_cap
        if self.n != 1:
            out["n"] = self.n
        if self.tools is not None:
            out["tools"] = list(self.tools)
        if self.tool_choice is not None:
            out["tool_choice"] = self.tool_choice
        if self.response_format is not None:
            out["response_format"] = dict(self.response_format)
        if self.stream:
            out["stream"] = True
        return out
