"""Plain provider answers (text only) to OpenAI completion dicts without litellm's object layer.

The profile of `auto` routed to Gemini (py-spy under wrk, real Redis, every provider keyed) put
~11% of the proxy's CPU in litellm's `transform_response`: a pydantic `ModelResponse` with its
`Choices`, `Message`, `Usage` and `PromptTokensDetailsWrapper` objects, grounding, safety and
citation bookkeeping, then our `completion_dict` turning it back into a dict. For the common
answer, one or more text parts, a finish reason and token counts, that is all ceremony: these
functions build the same dict from the JSON directly, with litellm's own finish-reason mapping.
Anything else (tool calls, thinking, citations, grounding, safety blocks, cached-token usage, JSON
mode) returns None and goes through litellm's transformer as before, and so does a finish reason
outside `FINISH` (litellm's own mapping for the reasons a plain answer ends with: the table keeps
litellm out of a process whose traffic is plain). A parity test checks both paths give the same
answer, and `FINISH` litellm's mapping (tests/test_providers_plain.py).
"""

from __future__ import annotations

import os
import time
from typing import Any

from proxy.providers.base import Usage

_GEMINI_TOP = frozenset({"candidates", "usageMetadata", "modelVersion", "responseId"})
_GEMINI_CANDIDATE = frozenset({"content", "finishReason", "index", "safetyRatings"})
_GEMINI_USAGE = frozenset({"promptTokenCount", "candidatesTokenCount", "totalTokenCount"})
_ANTHROPIC_TOP = frozenset({"id", "type", "role", "model", "content", "stop_reason", "stop_sequence", "usage"})
_ANTHROPIC_ZERO_USAGE = ("cache_creation_input_tokens", "cache_read_input_tokens")

# Provider finish reason -> OpenAI's, as litellm's map_finish_reason has them. Gemini's flagged
# reasons (SAFETY, RECITATION, ...) are not here: litellm answers them as content-policy refusals.
FINISH = {"STOP": "stop", "MAX_TOKENS": "length", "end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length"}


def _completion_id() -> str:
    """A fresh completion id (as the tool loop makes them; a uuid4 string costs ~6x more)."""
    return f"chatcmpl-{os.urandom(12).hex()}"


def _completion(rid: str, model: str, choices: list[dict[str, Any]], usage: Usage) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": usage.as_openai(),
    }


def _choice(index: int, text: str | None, finish: str) -> dict[str, Any]:
    return {"index": index, "message": {"role": "assistant", "content": text}, "finish_reason": finish, "logprobs": None}


def gemini_plain(data: Any, model: str) -> dict[str, Any] | None:
    """A generateContent answer of text parts -> the OpenAI completion dict, else None."""
    if not isinstance(data, dict) or not data.keys() <= _GEMINI_TOP:
        return None
    candidates, meta = data.get("candidates"), data.get("usageMetadata")
    if not isinstance(candidates, list) or not candidates or not isinstance(meta, dict) or not meta.keys() <= _GEMINI_USAGE:
        return None
    choices = []
    for i, cand in enumerate(candidates):
        if not isinstance(cand, dict) or not cand.keys() <= _GEMINI_CANDIDATE:
            return None
        reason = cand.get("finishReason")
        if reason is not None and (not isinstance(reason, str) or reason not in FINISH):
            return None
        content = cand.get("content")
        parts = content.get("parts") if isinstance(content, dict) else None
        if not isinstance(parts, list) or not parts:
            return None
        texts = []
        for part in parts:
            if not isinstance(part, dict) or part.keys() != {"text"} or not isinstance(part["text"], str):
                return None
            texts.append(part["text"])
        choices.append(_choice(cand.get("index", i), "".join(texts), FINISH[reason] if reason else "stop"))
    prompt, completion = meta.get("promptTokenCount", 0), meta.get("candidatesTokenCount", 0)
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    rid = data.get("responseId") or _completion_id()
    return _completion(rid, model, choices, Usage(prompt, completion))


def anthropic_plain(data: Any, model: str) -> dict[str, Any] | None:
    """A Messages answer of text blocks -> the OpenAI completion dict, else None."""
    if not isinstance(data, dict) or not data.keys() <= _ANTHROPIC_TOP:
        return None
    content, usage = data.get("content"), data.get("usage")
    if not isinstance(content, list) or not content or not isinstance(usage, dict):
        return None
    texts = []
    for block in content:
        if not isinstance(block, dict) or block.keys() != {"type", "text"} or block["type"] != "text" or not isinstance(block["text"], str):
            return None
        texts.append(block["text"])
    if any(usage.get(name) for name in _ANTHROPIC_ZERO_USAGE) or not usage.keys() <= {
        "input_tokens",
        "output_tokens",
        *_ANTHROPIC_ZERO_USAGE,
    }:
        return None
    prompt, completion = usage.get("input_tokens", 0), usage.get("output_tokens", 0)
    reason = data.get("stop_reason")
    if (
        not isinstance(prompt, int)
        or not isinstance(completion, int)
        or not (reason is None or (isinstance(reason, str) and reason in FINISH))
    ):
        return None
    # litellm answers with an id of its own, not the message's: so do we
    return _completion(
        _completion_id(), model, [_choice(0, "".join(texts), FINISH[reason] if reason else "stop")], Usage(prompt, completion)
    )
