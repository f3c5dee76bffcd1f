"""POST /v1/chat/completions end to end: the real openai SDK -> proxy -> fake upstream."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.support.fake_upstream import FakeUpstream

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_plain_call_openai(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    resp = client.chat.completions.with_raw_response.create(
        model="openai/gpt-4.1",
        messages=[{"role": "user", "content": "Say hello"}],
        temperature=0.3,
        seed=7,
        user="u1",
        extra_body={"some_future_field": {"x": 1}},
    )
    completion = resp.parse()
    assert completion.choices[0].message.content == "Hello from the fake upstream."
    assert completion.model == "openai/gpt-4.1"
    sent = upstream.received[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.body["model"] == "gpt-4.1"  # the provider-side id
    assert sent.body["some_future_field"] == {"x": 1}  # unknown fields pass through
    assert sent.body["temperature"] == 0.3 and sent.body["seed"] == 7 and sent.body["user"] == "u1"
    assert sent.headers["authorization"] == "Bearer sk-test-openai-0123456789abcdef"
    assert completion.usage.prompt_tokens == upstream_usage(sent)[0]
    assert resp.headers["x-autoroute-model"] == "openai/gpt-4.1"
    assert resp.headers["x-autoroute-decision-id"].startswith("dec_")


def upstream_usage(sent) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    body = json.dumps(sent.body, separators=(",", ":")).encode()
    return max(1, len(body) // 4), 0


def test_provider_side_model_id_resolves(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    completion = client.chat.completions.create(model="gpt-4.1-nano", messages=[{"role": "user", "content": "hi"}])
    assert completion.model == "openai/gpt-4.1-nano"
    assert upstream.received[-1].body["model"] == "gpt-4.1-nano"


def test_streamed_call_with_usage(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    stream = client.chat.completions.create(
        model="openai/gpt-4.1",
        messages=[{"role": "user", "content": "Say hello"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from the fake upstream."
    assert len([c for c in chunks if c.choices]) >= 4  # really chunked
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5
    assert all(c.model == "openai/gpt-4.1" for c in chunks)
    assert upstream.received[-1].body["stream_options"] == {"include_usage": True}


def test_stream_without_usage_option_hides_usage_chunk(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    chunks = list(client.chat.completions.create(model="openai/gpt-4.1", messages=[{"role": "user", "content": "x"}], stream=True))
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)
    # the proxy still asked the upstream for usage, to account the call
    assert upstream.received[-1].body["stream_options"] == {"include_usage": True}


def test_sse_wire_format_ends_with_done(proxy_server, upstream: FakeUpstream) -> None:  # type: ignore[no-untyped-def]
    with httpx.stream(
        "POST",
        proxy_server.url + "/v1/chat/completions",
        json={"model": "openai/gpt-4.1", "stream": True, "messages": [{"role": "user", "content": "x"}]},
    ) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        body = resp.read().decode()
    events = [e for e in body.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"


@pytest.mark.parametrize("model", ["anthropic/claude-sonnet-4", "google/gemini-2.5-flash", "openai/gpt-4.1", "meta-llama/llama-4-scout"])
def test_tool_call_round_trip(client: openai.OpenAI, upstream: FakeUpstream, model: str) -> None:
    messages = [{"role": "user", "content": "What's the weather in Paris?"}]
    first = client.chat.completions.create(model=model, messages=messages, tools=[WEATHER_TOOL])
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "18°C and sunny"},
    ]
    second = client.chat.completions.create(model=model, messages=messages, tools=[WEATHER_TOOL])
    assert second.choices[0].message.content == "Hello from the fake upstream."
    assert second.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("model", ["anthropic/claude-sonnet-4", "google/gemini-2.5-flash"])
def test_streamed_tool_call_translated(client: openai.OpenAI, upstream: FakeUpstream, model: str) -> None:
    chunks = list(
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Weather in Paris?"}], tools=[WEATHER_TOOL], stream=True
        )
    )
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls and calls[0].function.name == "get_weather"
    args = "".join(tc.function.arguments or "" for tc in calls)
    assert json.loads(args) == {"city": "Paris"}


def test_anthropic_translation(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    completion = client.chat.completions.create(
        model="anthropic/claude-sonnet-4",
        messages=[{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Weather?"}],
        tools=[WEATHER_TOOL],
    )
    assert completion.model == "anthropic/claude-sonnet-4"
    sent = upstream.received[-1]
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == "sk-ant-test-0123456789abcdef"
    assert "anthropic-version" in sent.headers
    assert sent.body["model"] == "claude-sonnet-4-20250514"
    assert sent.body["system"][0]["text"] == "You are terse."  # system prompt moved out of messages
    assert all(m["role"] != "system" for m in sent.body["messages"])
    assert sent.body["max_tokens"] > 0  # Anthropic requires it; the client sent none
    assert sent.body["tools"][0]["name"] == "get_weather"
    assert sent.body["tools"][0]["input_schema"]["required"] == ["city"]
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens == 5


def test_anthropic_stream_usage(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    chunks = list(
        client.chat.completions.create(
            model="anthropic/claude-sonnet-4",
            messages=[{"role": "user", "content": "Say hello"}],
            max_tokens=64,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from the fake upstream."
    assert chunks[-1].usage.completion_tokens == 5
    assert upstream.received[-1].body["max_tokens"] == 64 and upstream.received[-1].body["stream"] is True


def test_gemini_translation(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    completion = client.chat.completions.create(
        model="google/gemini-2.5-flash",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}],
        max_tokens=50,
    )
    assert completion.choices[0].message.content == "Hello from the fake upstream."
    sent = upstream.received[-1]
    assert sent.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert sent.headers["x-goog-api-key"] == "gm-test-0123456789abcdef"
    assert sent.body["system_instruction"]["parts"][0]["text"] == "Be brief."
    assert sent.body["generationConfig"]["max_output_tokens"] == 50


def test_gemini_stream(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    chunks = list(
        client.chat.completions.create(
            model="google/gemini-2.5-flash",
            messages=[{"role": "user", "content": "Say hello"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from the fake upstream."
    assert upstream.received[-1].path.endswith(":streamGenerateContent")
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and all(f is None for f in finishes[:-1])
    assert chunks[-1].usage.completion_tokens == 5


@pytest.mark.parametrize("model", ["openai/o3", "o4-mini"])
def test_reasoning_model_params(client: openai.OpenAI, upstream: FakeUpstream, model: str) -> None:
    client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Prove it"}], max_tokens=500, temperature=0.7, top_p=0.9
    )
    sent = upstream.received[-1].body
    assert sent["max_completion_tokens"] == 500
    assert "max_tokens" not in sent and "temperature" not in sent and "top_p" not in sent


def test_ollama_and_together_paths(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    client.chat.completions.create(model="ollama/qwen3:1.7b", messages=[{"role": "user", "content": "hi"}], max_completion_tokens=20)
    sent = upstream.received[-1]
    assert sent.path == "/v1/chat/completions" and sent.body["model"] == "qwen3:1.7b"
    assert sent.body["max_tokens"] == 20 and "max_completion_tokens" not in sent.body
    assert "authorization" not in sent.headers  # Ollama needs no key
    client.chat.completions.create(model="deepseek/deepseek-r1", messages=[{"role": "user", "content": "hi"}])
    sent = upstream.received[-1]
    assert sent.body["model"] == "deepseek-ai/DeepSeek-R1"
    assert sent.headers["authorization"] == "Bearer tg-test-0123456789abcdef"


def test_content_parts_and_response_format_pass(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    client.chat.completions.create(
        model="openai/gpt-4.1",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Describe"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                ],
            }
        ],
        response_format={"type": "json_object"},
        stop=["\n\n"],
        n=1,
    )
    sent = upstream.received[-1].body
    assert sent["messages"][0]["content"][1]["type"] == "image_url"
    assert sent["response_format"] == {"type": "json_object"} and sent["stop"] == ["\n\n"]


def test_models_endpoint(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert "auto" in ids and "anthropic/claude-sonnet-4" in ids and "ollama/qwen3:1.7b" in ids
    assert len([i for i in ids if not i.startswith("auto")]) == 13 + 4  # 13 chat models, 4 embedding models
