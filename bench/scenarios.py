"""The benchmark's scenarios: which gateway process serves them, what is sent, and the
equivalent request sent straight to the fake upstream (the 'direct' run that added latency is
measured against).

Processes (`config`): `baseline` (bench/baseline.py), `portkey`, `litellm`, and autoroute in
four set-ups, all with a master key and a virtual key on a real Redis unless said otherwise:
`all` (every provider keyed), `openai` (only OpenAI keyed, so `auto` routes to the direct
OpenAI path), `anthropic` (only Anthropic keyed: `auto` is translated to Messages), and
`embedded` (the README's `make run`: open mode, embedded store; only Gemini keyed, like `gemini`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

QUESTION = "What is the capital of France, and what is it famous for?"
UPSTREAM_KEY = "sk-bench-openai"


def _chat(model: str, content: str = QUESTION, **extra: object) -> bytes:
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
    gateway: str  # autoroute | portkey | litellm | baseline
    config: str  # which process serves it
    body: bytes
    direct_path: str
    direct_body: bytes
    note: str
    headers: dict[str, str] = field(default_factory=dict)
    path: str = "/v1/chat/completions"
    routed_to: str | None = None  # autoroute: the provider prefix `x-autoroute-model` must have
    smoke: bool = True  # part of --smoke
    default: bool = True  # part of a plain `make bench` (else only with --only)


def _portkey(provider: str, upstream_path: str = "/v1") -> dict[str, str]:
    return {
        "x-portkey-provider": provider,
        "x-portkey-custom-host": "{upstream}" + upstream_path,
        "Authorization": f"Bearer {UPSTREAM_KEY}",
        "x-api-key": UPSTREAM_KEY,
    }


# Portkey 1.15.2 on Node 20 answers 500 to a streamed OpenAI request here (its log:
# "TypeError: immutable" in updateHeaders), so it has no stream row.
def scenarios() -> list[Scenario]:
    openai_direct = _chat("gpt-4.1")
    stream = {"stream": True, "stream_options": {"include_usage": True}}
    anthropic_direct = orjson.dumps(
        {
            "model": "claude-sonnet-4-20250514",
            "max_tokens": 256,
            "system": "You are a helpful assistant.",
            "messages": [{"role": "user", "content": QUESTION}],
        }
    )
    return [
        Scenario(
            "baseline-forwarder",
            "baseline",
            "baseline",
            openai_direct,
            "/v1/chat/completions",
            openai_direct,
            "uvicorn + one pooled httpx client, no logic: the floor for Python",
        ),
        Scenario(
            "named-openai",
            "portkey",
            "portkey",
            openai_direct,
            "/v1/chat/completions",
            openai_direct,
            "Portkey gateway, OpenAI provider, custom host",
            headers=_portkey("openai"),
            smoke=False,
        ),
        Scenario(
            "named-anthropic",
            "portkey",
            "portkey",
            _chat("claude-sonnet-4-20250514", max_tokens=256),
            "/v1/messages",
            anthropic_direct,
            "Portkey gateway, OpenAI chat translated to Anthropic Messages",
            headers=_portkey("anthropic"),
            smoke=False,
        ),
        Scenario(
            "named-openai",
            "litellm",
            "litellm",
            openai_direct,
            "/v1/chat/completions",
            openai_direct,
            "LiteLLM proxy, master key, no database",
            headers={"Authorization": "Bearer {litellm_master}"},
            smoke=False,
        ),
        Scenario(
            "named-openai",
            "autoroute",
            "all",
            _chat("openai/gpt-4.1"),
            "/v1/chat/completions",
            openai_direct,
            "virtual key on real Redis, every provider keyed",
            routed_to="openai/",
        ),
        Scenario(
            "responses-openai",
            "autoroute",
            "all",
            orjson.dumps({"model": "openai/gpt-4.1", "instructions": "You are a helpful assistant.", "input": QUESTION}),
            "/v1/chat/completions",
            openai_direct,
            "POST /v1/responses, same model and upstream as named-openai (store: true)",
            path="/v1/responses",
            smoke=False,
            default=False,
        ),
        Scenario(
            "responses-nostore",
            "autoroute",
            "all",
            orjson.dumps({"model": "openai/gpt-4.1", "instructions": "You are a helpful assistant.", "input": QUESTION, "store": False}),
            "/v1/chat/completions",
            openai_direct,
            "the same with store: false (no write to the response store)",
            path="/v1/responses",
            smoke=False,
            default=False,
        ),
        Scenario(
            "messages-openai",
            "autoroute",
            "all",
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
            smoke=False,
            default=False,
        ),
        Scenario(
            "auto-gemini",
            "autoroute",
            "gemini",
            _chat("auto"),
            "/v1/chat/completions",
            openai_direct,
            "model=auto, only Gemini keyed: routed to Gemini, translated",
            routed_to="google/",
        ),
        Scenario(
            "auto-anthropic",
            "autoroute",
            "anthropic",
            _chat("auto"),
            "/v1/messages",
            anthropic_direct,
            "model=auto, only Anthropic keyed: translated to Messages",
            routed_to="anthropic/",
        ),
        Scenario(
            "auto-openai",
            "autoroute",
            "openai",
            _chat("auto"),
            "/v1/chat/completions",
            openai_direct,
            "model=auto, only OpenAI keyed: the direct path",
            routed_to="openai/",
        ),
        Scenario(
            "auto-embedded",
            "autoroute",
            "embedded",
            _chat("auto"),
            "/v1/chat/completions",
            openai_direct,
            "the README's default (`make run`): open mode, embedded store; Gemini keyed, as auto-gemini",
            routed_to="google/",
        ),
        Scenario(
            "stream-openai",
            "autoroute",
            "all",
            _chat("openai/gpt-4.1", **stream),
            "/v1/chat/completions",
            _chat("gpt-4.1", **stream),
            "streamed: 8 content chunks + usage",
            routed_to="openai/",
        ),
        Scenario(
            "auto-50k-prompt",
            "autoroute",
            "long",
            _chat("auto", long_prompt()),
            "/v1/chat/completions",
            _chat("gpt-4.1", long_prompt()),
            "model=auto with a 50k-token document",
            default=False,
            smoke=False,
        ),
    ]
