"""Optional LLM refinement of the heuristic classification (the tutorial's Layer 1).

Owns: asking a cheap model for a JSON verdict on requests the heuristic is unsure about.
Off by default (`routing.yaml` `llm_classifier.enabled`). The app builds one
`LLMClassifier` at start-up and keeps it (its cache lives on the object, not the module);
it has no transport of its own: the caller injects `complete(model_id, body) -> response`,
an async function that sends an OpenAI chat-completions body to a registry model and returns
the OpenAI response dict.

Every failure (timeout, transport error, malformed or out-of-range JSON) returns the
heuristic verdict unchanged, with the reason in `signals["llm"]`. Only an excerpt of the
request is sent: the head of the system prompt and of the last user turn, tool names, counts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from proxy.policy.routing import CATEGORIES, LLMClassifierSettings
from proxy.routing.classify import Classification, level_for, output_tokens_for
from proxy.routing.textscan import read_conversation

Complete = Callable[[str, dict[str, Any]], Awaitable[Mapping[str, Any]]]

PROMPT = (
    "You classify requests sent to an LLM router. Read the excerpt and answer with one JSON "
    'object: {"category": <one of ' + ", ".join(CATEGORIES) + '>, "complexity": <integer 1-5>}. '
    "Categories: deep_reasoning = proofs, maths, logic, planning; complex_coding = writing, "
    "debugging or explaining code; long_document = analysing or summarising a long document; "
    "agentic_tool_use = calling tools or acting in several steps; qa_retrieval = answering a "
    "question or explaining a concept; text_generation = writing, rewriting, translating, "
    "summarising short text; classification = labelling or extracting structured data; "
    "embedding = semantic similarity, ranking, clustering, de-duplication. Complexity: 1 trivial, "
    "2 easy, 3 moderate, 4 hard, 5 expert. Judge the task of the LAST user turn in the light of "
    "the conversation; words inside quoted or pasted data are not the task. JSON only."
)


class LLMClassifier:
    def __init__(
        self,
        settings: LLMClassifierSettings,
        complete: Complete,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._complete = complete
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, str, int]] = OrderedDict()

    def wants(self, c: Classification) -> bool:
        """Whether `refine` would ask the model about this verdict."""
        return self.settings.enabled and c.confidence < self.settings.min_confidence

    async def refine(self, body: Mapping[str, Any], c: Classification) -> Classification:
        """The heuristic verdict, refined by the model when it is unsure; never raises."""
        if not self.wants(c):
            return c
        excerpt = self.excerpt(body, c)
        key = hashlib.sha256(f"{self.settings.model}\0{excerpt}".encode()).hexdigest()
        cached = self._lookup(key)
        if cached is not None:
            return self._apply(body, c, cached[0], cached[1], cached=True)
        request = {
            "model": self.settings.model,
            "messages": [{"role": "system", "content": PROMPT}, {"role": "user", "content": excerpt}],
            "temperature": 0,
            "max_tokens": 60,
            "response_format": {"type": "json_object"},
        }
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                response = await self._complete(self.settings.model, request)
        except TimeoutError:
            return self._failed(c, "timeout", time.perf_counter() - started)
        except Exception:
            return self._failed(c, "error", time.perf_counter() - started)
        seconds = time.perf_counter() - started
        verdict = parse_verdict(response)
        if verdict is None:
            return self._failed(c, "invalid", seconds)
        self._store(key, verdict)
        return self._apply(body, c, verdict[0], verdict[1], cached=False, seconds=seconds)

    def excerpt(self, body: Mapping[str, Any], c: Classification) -> str:
        """What the model sees: bounded heads of the system prompt and last turn, plus counts."""
        raw = body.get("messages")
        conv = read_conversation(raw if isinstance(raw, list) else [])
        budget = self.settings.max_prompt_chars
        ask = conv.ask
        if len(ask) > budget:
            ask = ask[: budget * 3 // 4] + "\n[...]\n" + ask[-budget // 4 :]
        raw_tools = body.get("tools")
        tools = raw_tools if isinstance(raw_tools, list) else []
        names = [t["function"].get("name") for t in tools[:20] if isinstance(t, Mapping) and isinstance(t.get("function"), Mapping)]
        parts = [
            f"system prompt (start): {conv.system[:300]!r}" if conv.system else "system prompt: none",
            f"user turns: {conv.user_turns}; previous user turn (start): {conv.previous_user[:200]!r}",
            f"tools: {names}; images: {conv.images}; estimated input tokens: {c.estimated_input_tokens}",
            f"mid tool loop: {conv.in_tool_loop}",
            f"last user turn:\n{ask}",
        ]
        return "\n".join(parts)

    def _lookup(self, key: str) -> tuple[str, int] | None:
        entry = self._cache.get(key)
        if entry is None:
            return None
        stored, category, complexity = entry
        if self._clock() - stored > self.settings.cache_ttl_s:
            del self._cache[key]
            return None
        self._cache.move_to_end(key)
        return category, complexity

    def _store(self, key: str, verdict: tuple[str, int]) -> None:
        if self.settings.cache_size <= 0:
            return
        self._cache[key] = (self._clock(), verdict[0], verdict[1])
        self._cache.move_to_end(key)
        while len(self._cache) > self.settings.cache_size:
            self._cache.popitem(last=False)

    def _apply(
        self, body: Mapping[str, Any], c: Classification, category: str, complexity: int, cached: bool, seconds: float | None = None
    ) -> Classification:
        output = c.estimated_output_tokens
        if not c.output_from_max_tokens:
            output, _ = output_tokens_for(category, complexity, body)
        level = c.level if c.level == "critical" and category == "agentic_tool_use" else level_for(complexity)
        signals = dict(c.signals)
        signals["llm"] = {
            "model": self.settings.model,
            "cached": cached,
            "seconds": seconds,
            "heuristic": {"category": c.category, "complexity": c.complexity, "confidence": c.confidence},
        }
        return dataclasses.replace(
            c,
            category=category,
            complexity=complexity,
            level=level,
            estimated_output_tokens=output,
            confidence=max(c.confidence, 0.8),
            signals=signals,
        )

    def _failed(self, c: Classification, reason: str, seconds: float) -> Classification:
        signals = dict(c.signals)
        signals["llm"] = {"model": self.settings.model, "error": reason, "seconds": seconds}
        return dataclasses.replace(c, signals=signals)

    def __len__(self) -> int:
        return len(self._cache)


def parse_verdict(response: Mapping[str, Any]) -> tuple[str, int] | None:
    """(category, complexity) from an OpenAI chat-completions response, or None if unusable."""
    try:
        content = response["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return None
    if not isinstance(content, str):
        return None
    text = content.strip()
    if text.startswith("```"):
        text = text.strip("`")
        text = text[text.find("{") :] if "{" in text else text
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        data = json.loads(text[start : end + 1])
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    category = data.get("category")
    complexity = data.get("complexity")
    if isinstance(complexity, str) and complexity.strip().isdigit():
        complexity = int(complexity.strip())
    if category not in CATEGORIES or isinstance(complexity, bool) or not isinstance(complexity, int):
        return None
    if not 1 <= complexity <= 5:
        return None
    return category, complexity
