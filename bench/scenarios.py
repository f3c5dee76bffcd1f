"""The benchmark's scenarios: what is sent, to which proxy configuration, and the equivalent
request sent straight to the fake upstream (the 'direct' run that added latency is measured
against)."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

QUESTION = "What is the capital of France, and what is it famous for?"


def _chat(model: str, content: str, **extra: object) -> bytes:
    return orjson.dumps(
        {
            "model": model,
            "messages": [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": content}],
            **extra,
        }
    )


def long_prompt(tokens: int = 50_000) -> str:
    """Deterministic prose of roughly `tokens` tokens (about 1.3 tokens a word here)."""
    words = (
        "the contract states that each party shall deliver the goods on time and in full, "
        "subject to clause seven, unless otherwise agreed in writing by both parties"
    ).split()
    count = int(tokens / 1.3)
    body = " ".join(words[i % len(words)] for i in range(count))
    return "Summarize the key obligations in this agreement:\n\n" + body


@dataclass(frozen=True)
class Scenario:
    name: str
    config: str  # which proxy process serves it (see CONFIGS in bench/__main__.py)
    body: bytes
    direct_path: str
    direct_body: bytes
    note: str
    path: str = "/v1/chat/completions"  # the proxy endpoint the scenario calls


def scenarios() -> list[Scenario]:
    openai_direct = _chat("gpt-4.1", QUESTION)
    long = long_prompt()
    return [
        Scenario(
            "baseline-forwarder",
            "baseline",
            _chat("gpt-4.1", QUESTION),
            "/v1/chat/completions",
            openai_direct,
            "uvicorn + one pooled httpx client, no logic: the floor for Python",
        ),
        Scenario(
            "named-openai",
            "redis",
            _chat("openai/gpt-4.1", QUESTION),
            "/v1/chat/completions",
            openai_direct,
            "a named OpenAI-compatible model",
        ),
        Scenario(
            "auto-embedded",
            "embedded",
            _chat("auto", QUESTION),
            "/v1/chat/completions",
            openai_direct,
            "model=auto: auth, classify, select, admission + settle, metrics, decision log; embedded store",
        ),
        Scenario("auto-redis", "redis", _chat("auto", QUESTION), "/v1/chat/completions", openai_direct, "the same on real Redis"),
        Scenario(
            "anthropic",
            "translate",
            _chat("anthropic/claude-sonnet-4", QUESTION, max_tokens=256),
            "/v1/messages",
            orjson.dumps(
                {
                    "model": "claude-sonnet-4-20250514",
                    "max_tokens": 256,
                    "system": "You are a helpful assistant.",
                    "messages": [{"role": "user", "content": QUESTION}],
                }
            ),
            "Anthropic via litellm translation",
        ),
        Scenario(
            "responses-openai",
            "redis",
            orjson.dumps({"model": "openai/gpt-4.1", "instructions": "You are a helpful assistant.", "input": QUESTION}),
            "/v1/chat/completions",
            openai_direct,
            "POST /v1/responses, same model and upstream as named-openai (store: true)",
            path="/v1/responses",
        ),
        Scenario(
            "responses-nostore",
            "redis",
            orjson.dumps({"model": "openai/gpt-4.1", "instructions": "You are a helpful assistant.", "input": QUESTION, "store": False}),
            "/v1/chat/completions",
            openai_direct,
            "the same with store: false (no write to the response store)",
            path="/v1/responses",
        ),
        Scenario(
            "messages-openai",
            "redis",
            orjson.dumps(
                {
                    "model": "openai/gpt-4.1",
                    "max_tokens": 256,
                    "system": "You are a helpful assistant.",
                    "messages": [{"role": "user", "content": QUESTION}],
                }
            ),
            "/v1/chat/completions",
            openai_direct,
            "POST /v1/messages (Anthropic in), same model and upstream as named-openai",
            path="/v1/messages",
        ),
        Scenario(
            "stream-usage",
            "redis",
            _chat("openai/gpt-4.1", QUESTION, stream=True, stream_options={"include_usage": True}),
            "/v1/chat/completions",
            _chat("gpt-4.1", QUESTION, stream=True, stream_options={"include_usage": True}),
            "streamed: 8 content chunks + usage",
        ),
        Scenario(
            "auto-50k-prompt",
            "redis-long",
            _chat("auto", long),
            "/v1/chat/completions",
            _chat("gpt-4.1", long),
            "model=auto with a 50k-token document",
        ),
    ]
