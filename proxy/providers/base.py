"""What every provider adapter takes and returns.

A provider turns one OpenAI-format request for one deployment into one upstream HTTP call
and gives back OpenAI-format results: a completion dict, or a stream of chunk dicts. It
never retries or falls back (dispatch does) and never raises anything but UpstreamError.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from proxy.policy.registry import Deployment, ModelSpec
from proxy.vocab import RETRYABLE_KINDS


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    counted: bool = False  # True when counted from text because the provider reported none

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_openai(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }

    @classmethod
    def from_openai(cls, usage: Any) -> Usage | None:
        if not isinstance(usage, dict):
            return None
        return cls(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))


@dataclass(slots=True)
class UpstreamCall:
    """One attempt: this OpenAI-format body, for this model, on this deployment."""

    deployment: Deployment
    model: ModelSpec
    body: dict[str, Any]  # OpenAI chat body; `model` is already the upstream's name
    api_key: str | None
    pool: Any  # proxy.providers.http.Pool: the deployment's keep-alive transport, URLs, headers


@dataclass(slots=True)
class Completion:
    body: dict[str, Any]  # OpenAI chat.completion
    usage: Usage


class ChunkStream(Protocol):
    """OpenAI chat.completion.chunk dicts; `usage` is set once the provider reported it."""

    usage: Usage | None

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]: ...

    async def aclose(self) -> None: ...


class Provider(Protocol):
    async def complete(self, call: UpstreamCall) -> Completion: ...

    async def stream(self, call: UpstreamCall) -> ChunkStream:
        """Open the stream; raise UpstreamError if the upstream refused it (status != 200)."""
        ...


# Anything that looks like a credential in upstream text: OpenAI/Anthropic/autoroute keys
# (sk-..., sk-ant-..., sk-ar-...), Google API keys (AIza...), bearer tokens, `key=` query values.
_SECRET_PATTERNS = re.compile(
    r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"
    r"|\bsk-[A-Za-z0-9_-]{6,}"
    r"|\bAIza[0-9A-Za-z_-]{20,}"
    r"|([?&](?:api_)?key=)[^&\s\"']+"
)


def redact_secrets(text: str, *secrets: str | None) -> str:
    """`text` with the given secrets and anything key-shaped replaced by `***`."""
    for secret in secrets:
        if secret and len(secret) >= 4 and secret in text:
            text = text.replace(secret, "***")
    if "sk-" in text or "AIza" in text or "earer" in text or "EARER" in text or "key=" in text:
        text = _SECRET_PATTERNS.sub(lambda m: (m.group(1) or m.group(2) or "") + "***", text)
    return text


@dataclass
class UpstreamError(Exception):
    """An attempt failed. `message` is short and safe to show: no keys, no bodies."""

    provider: str
    deployment: str
    # timeout | first_token_timeout | connect | rate_limited | server_error | rejected |
    # bad_response | stream_cut; dispatch adds capacity (skipped, never sent)
    kind: str
    message: str
    status: int | None = None
    retry_after: float | None = None
    model: str = ""

    def __post_init__(self) -> None:
        self.message = redact_secrets(self.message)  # the last line of defence: every path shows this text
        super().__init__(self.message)

    @property
    def retryable(self) -> bool:
        """429, 5xx, timeouts, refused connections, garbage from the upstream; never other 4xx."""
        return self.kind in RETRYABLE_KINDS

    def summary(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "deployment": self.deployment,
            "provider": self.provider,
            "status": self.status,
            "kind": self.kind,
            "reason": self.message,
        }

    def with_model(self, model: str) -> UpstreamError:
        return dataclasses.replace(self, model=model)
