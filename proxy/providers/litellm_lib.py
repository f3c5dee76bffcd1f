"""litellm, loaded lazily and off the event loop.

litellm takes ~2 s and ~120 MB to import. The OpenAI-compatible path never needs it, and
plain Anthropic/Gemini requests and answers are translated without it (plain_request.py,
plain.py), so it is loaded, in a worker thread, by the first request that needs it: a stream
to a translated provider, tools, images, JSON mode, a non-text answer. That request waits for
the import; the event loop does not. Only its translation layer is used (request mapping,
response and stream-chunk parsing); the HTTP call is ours, on the pooled clients.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Litellm:
    anthropic_config: Any
    anthropic_stream_parser: Any  # class: ModelResponseIterator(streaming_response, sync_stream, json_mode)
    gemini_config: Any
    gemini_request_body: Any  # function: transform_request_body(...)
    gemini_stream_parser: Any  # class: ModelResponseIterator(streaming_response, sync_stream, logging_obj)
    model_response: Any  # class ModelResponse


def _load() -> Litellm:
    import warnings

    import proxy.offline  # noqa: F401  (environment first)

    # litellm's TypedDicts trip a pydantic UserWarning on first schema build; not ours to fix.
    warnings.filterwarnings("ignore", message=".*ReadOnly.*", category=UserWarning)
    import functools

    import litellm
    import litellm.llms.vertex_ai.gemini.transformation as gemini_transformation
    from litellm.llms.anthropic.chat.handler import ModelResponseIterator as AnthropicIterator
    from litellm.llms.anthropic.chat.transformation import AnthropicConfig
    from litellm.llms.gemini.chat.transformation import GoogleAIStudioGeminiConfig
    from litellm.llms.vertex_ai.gemini.transformation import transform_request_body
    from litellm.llms.vertex_ai.gemini.vertex_and_google_ai_studio_gemini import (
        ModelResponseIterator as GeminiIterator,
    )
    from litellm.types.utils import ModelResponse

    litellm.suppress_debug_info = True
    litellm.telemetry = False
    litellm.drop_params = True
    # transform_request_body asks the model map whether the model takes a system message on
    # every call (~5% of the CPU of a Gemini request in the profile): a pure function of the
    # model name and the static map, so it is remembered per model.
    lookup = gemini_transformation.get_supports_system_message
    if not hasattr(lookup, "cache_info"):
        gemini_transformation.get_supports_system_message = functools.lru_cache(maxsize=256)(lookup)
    gemini_config = GoogleAIStudioGeminiConfig()
    return Litellm(
        anthropic_config=AnthropicConfig(),
        anthropic_stream_parser=AnthropicIterator,
        gemini_config=gemini_config,
        gemini_request_body=transform_request_body,
        gemini_stream_parser=GeminiIterator,
        model_response=ModelResponse,
    )


class LazyLitellm:
    """Owned by the app; `await get()` returns the loaded translation layer."""

    def __init__(self) -> None:
        self._task: asyncio.Future[Litellm] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(asyncio.to_thread(_load))

    @property
    def loaded(self) -> bool:
        return self._task is not None and self._task.done() and not self._task.cancelled()

    async def get(self) -> Litellm:
        self.start()
        assert self._task is not None
        return await asyncio.shield(self._task)


class NullLogging:
    """The logging object litellm's transformers expect; we log elsewhere."""

    def __init__(self) -> None:
        self.model_call_details: dict[str, Any] = {}
        self.optional_params: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        return _noop


def _noop(*args: Any, **kwargs: Any) -> None:
    return None
