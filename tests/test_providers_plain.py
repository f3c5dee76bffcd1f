"""The plain-answer path (proxy/providers/plain.py) gives what litellm's full transformer gives,
and steps aside for every answer it does not fully understand."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from proxy.providers.litellm_lib import NullLogging, _load
from proxy.providers.plain import FINISH, anthropic_plain, gemini_plain
from proxy.providers.translated import completion_dict

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def lt():  # type: ignore[no-untyped-def]
    return _load()


def _resp(data: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, content=orjson.dumps(data), request=httpx.Request("POST", "http://upstream.test/"))


def _gemini_full(lt: Any, data: dict[str, Any]) -> dict[str, Any]:
    mr = lt.gemini_config.transform_response(
        "gemini-2.5-flash", _resp(data), lt.model_response(), NullLogging(), {}, MESSAGES, {}, {}, None
    )
    return completion_dict(mr, "gemini-2.5-flash")


def _anthropic_full(lt: Any, data: dict[str, Any]) -> dict[str, Any]:
    mr = lt.anthropic_config.transform_response(
        "claude-sonnet-4", _resp(data), lt.model_response(), NullLogging(), {}, MESSAGES, {}, {}, None, api_key=None, json_mode=None
    )
    return completion_dict(mr, "claude-sonnet-4")


def _same(fast: dict[str, Any] | None, full: dict[str, Any]) -> None:
    assert fast is not None
    if full["id"].startswith("chatcmpl-"):  # an id litellm made up: ours is made up the same way
        assert fast["id"].startswith("chatcmpl-") and fast["id"] != full["id"]
        fast, full = {**fast, "id": ""}, {**full, "id": ""}
    assert {k: v for k, v in fast.items() if k != "created"} == {k: v for k, v in full.items() if k != "created"}


GEMINI = {
    "candidates": [
        {"content": {"role": "model", "parts": [{"text": "Paris "}, {"text": "is the capital."}]}, "finishReason": "MAX_TOKENS", "index": 0}
    ],
    "usageMetadata": {"promptTokenCount": 17, "candidatesTokenCount": 6, "totalTokenCount": 23},
    "modelVersion": "gemini-2.5-flash",
    "responseId": "resp-123",
}
ANTHROPIC = {
    "id": "msg_01",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-20250514",
    "content": [{"type": "text", "text": "Paris "}, {"type": "text", "text": "is the capital."}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 21, "output_tokens": 7, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
}


@pytest.mark.parametrize("reason", ["STOP", "MAX_TOKENS"])
def test_gemini_plain_answer_matches_litellm(lt: Any, reason: str) -> None:
    data = orjson.loads(orjson.dumps(GEMINI))
    data["candidates"][0]["finishReason"] = reason
    _same(gemini_plain(data, "gemini-2.5-flash"), _gemini_full(lt, data))


@pytest.mark.parametrize("reason", ["end_turn", "max_tokens", "stop_sequence"])
def test_anthropic_plain_answer_matches_litellm(lt: Any, reason: str) -> None:
    data = {**ANTHROPIC, "stop_reason": reason}
    _same(anthropic_plain(data, "claude-sonnet-4"), _anthropic_full(lt, data))


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["candidates"][0]["content"]["parts"].append({"functionCall": {"name": "f", "args": {}}}),
        lambda d: d["candidates"][0]["content"]["parts"][0].update(thought=True),
        lambda d: d["candidates"][0].update(groundingMetadata={"webSearchQueries": ["x"]}),
        lambda d: d["candidates"][0].update(finishReason="SAFETY"),
        lambda d: d["candidates"][0].update(finishReason="MALFORMED_FUNCTION_CALL"),
        lambda d: d["usageMetadata"].update(thoughtsTokenCount=40),
        lambda d: d["usageMetadata"].update(cachedContentTokenCount=5),
        lambda d: d.update(promptFeedback={"blockReason": "SAFETY"}),
        lambda d: d.update(candidates=[]),
    ],
)
def test_gemini_anything_else_goes_to_litellm(lt: Any, change: Any) -> None:
    data = orjson.loads(orjson.dumps(GEMINI))
    change(data)
    assert gemini_plain(data, "gemini-2.5-flash") is None


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["content"].append({"type": "tool_use", "id": "t1", "name": "f", "input": {}}),
        lambda d: d["content"].insert(0, {"type": "thinking", "thinking": "hmm", "signature": "s"}),
        lambda d: d["content"][0].update(citations=[{"type": "char_location"}]),
        lambda d: d["usage"].update(cache_read_input_tokens=100),
        lambda d: d["usage"].update(server_tool_use={"web_search_requests": 1}),
        lambda d: d.update(container={"id": "c"}),
        lambda d: d.update(content=[]),
        lambda d: d.update(stop_reason="refusal"),
    ],
)
def test_anthropic_anything_else_goes_to_litellm(lt: Any, change: Any) -> None:
    data = orjson.loads(orjson.dumps(ANTHROPIC))
    change(data)
    assert anthropic_plain(data, "claude-sonnet-4") is None


def test_finish_table_is_litellms_mapping() -> None:
    from litellm.litellm_core_utils.core_helpers import map_finish_reason
    from litellm.llms.gemini.chat.transformation import GoogleAIStudioGeminiConfig

    assert {reason: map_finish_reason(reason) for reason in FINISH} == FINISH
    assert not FINISH.keys() & GoogleAIStudioGeminiConfig().get_flagged_finish_reasons().keys()
