"""proxy/routing/tokens.py: exact counts for short text, bounded error for long text, framing rules."""

from __future__ import annotations

import inspect

import pytest

from proxy.routing import tokens
from tests.eval.docs import make_document


def exact(text: str) -> int:
    return len(tokens._encoder().encode_ordinary(text))


def _prose() -> str:
    import pydoc_data.topics as topics  # real English prose (Python's docs), shipped with CPython

    return "\n\n".join(topics.topics[k] for k in sorted(topics.topics))


def _code() -> str:
    import argparse
    import asyncio.base_events
    import collections
    import email.message
    import http.client
    import typing

    return "\n".join(inspect.getsource(m) for m in (argparse, asyncio.base_events, collections, email.message, http.client, typing))


@pytest.mark.parametrize(
    "text",
    ["", "hello", "What is the capital of France?", "def f(x):\n    return x * 2\n", "日本語のテキストです。", "a" * tokens.EXACT_LIMIT],
)
def test_short_text_is_counted_exactly(text: str) -> None:
    assert tokens.count_text_tokens(text) == exact(text)


# (corpus, worst-case relative error allowed, slices as (offset, length))
SLICES = [(0, 2_000), (37_000, 5_000), (91_000, 20_000), (11_000, 100_000), (0, 400_000), (150_000, 60_000)]
CORPORA = [
    ("prose", _prose, 0.08),
    ("code", _code, 0.10),
    ("chinese", lambda: make_document("report_zh", 260_000, 1), 0.05),
    ("japanese", lambda: make_document("report_ja", 260_000, 2), 0.05),
    ("contract", lambda: make_document("contract_en", 80_000, 3), 0.06),
]


@pytest.mark.parametrize(("name", "corpus", "bound"), CORPORA, ids=[c[0] for c in CORPORA])
def test_long_text_estimate_error_is_bounded(name: str, corpus, bound: float) -> None:  # type: ignore[no-untyped-def]
    text = corpus()
    errors = []
    for offset, length in SLICES:
        piece = text[offset : offset + length]
        if len(piece) < length:
            continue
        truth = exact(piece)
        errors.append((tokens.count_text_tokens(piece) - truth) / truth)
    assert errors, "corpus too short for every slice"
    assert max(abs(e) for e in errors) <= bound, errors
    assert abs(sum(errors) / len(errors)) <= 0.03, errors  # no systematic bias


def test_long_text_estimate_is_deterministic_and_scales() -> None:
    text = make_document("contract_en", 30_000, 9)
    assert tokens.count_text_tokens(text) == tokens.count_text_tokens(text)
    assert tokens.count_text_tokens(text + text) == pytest.approx(2 * tokens.count_text_tokens(text), rel=0.05)


def test_message_framing_follows_openai() -> None:
    one = {"messages": [{"role": "user", "content": "hello"}]}
    assert tokens.estimate_input_tokens(one) == tokens.REPLY_PRIMER + tokens.TOKENS_PER_MESSAGE + exact("hello")
    named = {"messages": [{"role": "user", "name": "ann", "content": "hello"}]}
    assert tokens.estimate_input_tokens(named) == tokens.estimate_input_tokens(one) + tokens.TOKENS_PER_NAME
    two = {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]}
    assert tokens.estimate_input_tokens(two) == tokens.REPLY_PRIMER + 2 * tokens.TOKENS_PER_MESSAGE + exact("be brief\nhello")


@pytest.mark.parametrize(
    ("detail", "expected"), [("low", tokens.IMAGE_TOKENS_LOW), ("high", tokens.IMAGE_TOKENS_HIGH), (None, tokens.IMAGE_TOKENS_HIGH)]
)
def test_images_count_a_fixed_estimate(detail: str | None, expected: int) -> None:
    image: dict = {"url": "https://example.test/cat.png"}
    if detail:
        image["detail"] = detail
    text_only = {"messages": [{"role": "user", "content": [{"type": "text", "text": "what is this?"}]}]}
    with_image = {
        "messages": [{"role": "user", "content": [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": image}]}]
    }
    assert tokens.estimate_input_tokens(with_image) - tokens.estimate_input_tokens(text_only) == expected


def _tool(name: str, n_props: int) -> dict:
    props = {f"arg{i}": {"type": "string", "description": f"argument number {i} of {name}"} for i in range(n_props)}
    return {
        "type": "function",
        "function": {"name": name, "description": f"Does {name} for the user.", "parameters": {"type": "object", "properties": props}},
    }


def test_tool_definitions_add_tokens_close_to_their_text() -> None:
    base = {"messages": [{"role": "user", "content": "hi"}]}
    one = dict(base, tools=[_tool("get_weather", 2)])
    three = dict(base, tools=[_tool("get_weather", 2), _tool("search_web", 3), _tool("send_email", 4)])
    t0, t1, t3 = (tokens.estimate_input_tokens(b) for b in (base, one, three))
    assert t0 < t1 < t3
    import orjson

    fn = one["tools"][0]["function"]
    text_tokens = exact(f"{fn['name']} {fn['description']} " + orjson.dumps(fn["parameters"]).decode())
    added = t1 - t0 - tokens.TOOLS_OVERHEAD - tokens.TOOL_FUNCTION_OVERHEAD - 2 * tokens.TOOL_PROPERTY_OVERHEAD
    assert added == pytest.approx(text_tokens, rel=0.2)


def test_tool_calls_and_odd_content_are_counted_without_errors() -> None:
    body = {
        "messages": [
            {"role": "user", "content": "weather in Oslo?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}],
            },
            {"role": "tool", "tool_call_id": "c1", "content": '{"temp": 4}'},
            "not a message",
            {"role": "user", "content": 42},
        ]
    }
    n = tokens.estimate_input_tokens(body)
    assert n >= tokens.REPLY_PRIMER + 4 * tokens.TOKENS_PER_MESSAGE + exact('get_weather {"city": "Oslo"}')
    assert tokens.estimate_input_tokens({}) == 0
    assert tokens.estimate_input_tokens({"messages": "nope"}) == 0


def test_json_schema_response_format_is_counted() -> None:
    body = {"messages": [{"role": "user", "content": "extract"}]}
    schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "properties": {"name": {"type": "string"}}}}}
    assert tokens.estimate_input_tokens(dict(body, response_format=schema)) > tokens.estimate_input_tokens(body) + 10


def test_unencodable_schemas_fall_back_to_a_rough_size() -> None:
    odd = {"type": "function", "function": {"name": "f", "description": "d", "parameters": {"big": 2**80, "odd": {1, 2}}}}
    base = {"messages": [{"role": "user", "content": "hi"}]}
    assert tokens.estimate_input_tokens(dict(base, tools=[odd])) > tokens.estimate_input_tokens(base)


def test_warm_up_loads_the_encoding() -> None:
    tokens.warm_up()
    assert tokens._encoder.cache_info().currsize == 1
