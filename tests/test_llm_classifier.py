"""proxy/routing/llm_classifier.py with fake completion callables: good, slow, failing, malformed."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from proxy.policy.routing import LLMClassifierSettings
from proxy.routing.classify import classify
from proxy.routing.llm_classifier import LLMClassifier, parse_verdict

ON = LLMClassifierSettings(enabled=True, min_confidence=0.99, timeout_s=0.2, cache_size=8, cache_ttl_s=60)
BODY = {"model": "auto", "messages": [{"role": "user", "content": "thoughts on this?"}]}


def response(content: Any) -> dict[str, Any]:
    return {"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}


class Fake:
    """A completion callable that records its calls and answers from a script."""

    def __init__(self, answer: Any = None, delay: float = 0.0, error: Exception | None = None) -> None:
        self.answer, self.delay, self.error = answer, delay, error
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, model_id: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((model_id, body))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.error:
            raise self.error
        return response(self.answer)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_good_verdict_replaces_category_and_complexity() -> None:
    fake = Fake(json.dumps({"category": "deep_reasoning", "complexity": 4}))
    llm = LLMClassifier(ON, fake)
    heuristic = classify(BODY)
    refined = await llm.refine(BODY, heuristic)
    assert (refined.category, refined.complexity, refined.level) == ("deep_reasoning", 4, "complex")
    assert refined.estimated_output_tokens != heuristic.estimated_output_tokens
    assert refined.signals["llm"]["heuristic"]["category"] == heuristic.category
    assert refined.confidence >= 0.8
    model_id, sent = fake.calls[0]
    assert model_id == ON.model == sent["model"]
    assert sent["response_format"] == {"type": "json_object"} and sent["messages"][0]["role"] == "system"


@pytest.mark.parametrize(
    ("fake", "reason"),
    [
        (Fake(json.dumps({"category": "qa_retrieval", "complexity": 1}), delay=1.0), "timeout"),
        (Fake(error=ConnectionError("upstream down")), "error"),
        (Fake(error=ValueError("bad response")), "error"),
        (Fake("I think it is coding"), "invalid"),
        (Fake(json.dumps({"category": "poetry", "complexity": 2})), "invalid"),
        (Fake(json.dumps({"category": "qa_retrieval", "complexity": 9})), "invalid"),
        (Fake(json.dumps({"category": "qa_retrieval", "complexity": True})), "invalid"),
        (Fake(None), "invalid"),
    ],
    ids=["slow", "connection", "exception", "prose", "unknown-category", "complexity-range", "bool-complexity", "no-content"],
)
async def test_any_failure_keeps_the_heuristic_verdict(fake: Fake, reason: str) -> None:
    llm = LLMClassifier(ON, fake)
    heuristic = classify(BODY)
    result = await llm.refine(BODY, heuristic)
    assert (result.category, result.complexity) == (heuristic.category, heuristic.complexity)
    assert result.signals["llm"]["error"] == reason
    assert len(llm) == 0  # failures are not cached


async def test_timeout_is_enforced_quickly() -> None:
    llm = LLMClassifier(ON, Fake("{}", delay=5.0))
    loop = asyncio.get_running_loop()
    start = loop.time()
    await llm.refine(BODY, classify(BODY))
    assert loop.time() - start < 1.0


async def test_off_or_confident_requests_are_not_sent() -> None:
    fake = Fake(json.dumps({"category": "qa_retrieval", "complexity": 1}))
    heuristic = classify(BODY)
    assert await LLMClassifier(LLMClassifierSettings(), fake).refine(BODY, heuristic) is heuristic
    confident = LLMClassifier(LLMClassifierSettings(enabled=True, min_confidence=0.0), fake)
    assert not confident.wants(heuristic)
    assert await confident.refine(BODY, heuristic) is heuristic
    assert fake.calls == []


async def test_cache_hits_skip_the_model_and_expire() -> None:
    clock = Clock()
    fake = Fake(json.dumps({"category": "text_generation", "complexity": 2}))
    llm = LLMClassifier(ON, fake, clock=clock)
    heuristic = classify(BODY)
    first = await llm.refine(BODY, heuristic)
    second = await llm.refine(BODY, heuristic)
    assert len(fake.calls) == 1 and second.signals["llm"]["cached"] is True and first.category == second.category
    clock.now += ON.cache_ttl_s + 1
    await llm.refine(BODY, heuristic)
    assert len(fake.calls) == 2


async def test_cache_is_bounded_lru() -> None:
    settings = LLMClassifierSettings(enabled=True, min_confidence=0.99, cache_size=2)
    fake = Fake(json.dumps({"category": "qa_retrieval", "complexity": 1}))
    llm = LLMClassifier(settings, fake)
    bodies = [{"messages": [{"role": "user", "content": f"question {i}?"}]} for i in range(3)]
    for body in bodies:
        await llm.refine(body, classify(body))
    assert len(llm) == 2
    await llm.refine(bodies[2], classify(bodies[2]))  # newest: cached
    assert len(fake.calls) == 3
    await llm.refine(bodies[0], classify(bodies[0]))  # evicted: asked again
    assert len(fake.calls) == 4


async def test_max_tokens_and_critical_level_survive_refinement() -> None:
    body = {
        "messages": [{"role": "user", "content": "do the thing"}],
        "max_tokens": 123,
        "tools": [{"type": "function", "function": {"name": "delete_records", "description": "Delete records.", "parameters": {}}}],
    }
    heuristic = classify(body)
    assert heuristic.level == "critical"
    llm = LLMClassifier(ON, Fake(json.dumps({"category": "agentic_tool_use", "complexity": 1})))
    refined = await llm.refine(body, heuristic)
    assert refined.estimated_output_tokens == 123 and refined.level == "critical"


def test_excerpt_is_bounded_and_omits_tool_schemas() -> None:
    settings = LLMClassifierSettings(enabled=True, max_prompt_chars=400)
    llm = LLMClassifier(settings, Fake())
    body = {
        "messages": [{"role": "system", "content": "S" * 5000}, {"role": "user", "content": "x" * 50_000}],
        "tools": [
            {"type": "function", "function": {"name": "search", "description": "secret schema text", "parameters": {"type": "object"}}}
        ],
    }
    excerpt = llm.excerpt(body, classify(body))
    assert len(excerpt) < 400 + 300 + 400  # turn budget + system head + fixed lines
    assert "search" in excerpt and "secret schema text" not in excerpt


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"category": "embedding", "complexity": 2}', ("embedding", 2)),
        ('```json\n{"category": "classification", "complexity": "3"}\n```', ("classification", 3)),
        ('Sure! {"category": "long_document", "complexity": 5} hope that helps', ("long_document", 5)),
        ("[1, 2]", None),
        ('{"category": "qa_retrieval"}', None),
        ("", None),
    ],
)
def test_parse_verdict(content: str, expected: tuple[str, int] | None) -> None:
    assert parse_verdict(response(content)) == expected


def test_parse_verdict_rejects_odd_shapes() -> None:
    assert parse_verdict({}) is None
    assert parse_verdict({"choices": []}) is None
    assert parse_verdict({"choices": [{"message": None}]}) is None
