"""One module per way of talking to an upstream; `Providers` picks one by wire format."""

from __future__ import annotations

from proxy.policy.registry import WireFormat
from proxy.providers.base import Provider
from proxy.providers.litellm_lib import LazyLitellm
from proxy.providers.openai import OpenAIProvider
from proxy.providers.translated import AnthropicProvider, GeminiProvider


class Providers:
    def __init__(self, litellm: LazyLitellm) -> None:
        self._by_format: dict[str, Provider] = {
            "openai": OpenAIProvider(),
            "anthropic": AnthropicProvider(litellm),
            "gemini": GeminiProvider(litellm),
        }

    def for_format(self, wire_format: WireFormat) -> Provider:
        return self._by_format[wire_format]
