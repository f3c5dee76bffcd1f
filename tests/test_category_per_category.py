"""One unmistakable request per category, through the running proxy's classifier.

Not an accuracy measure (tests/eval has those): each of these requests is a textbook case of
its category, so a classifier that cannot place it is broken. The mutation check
(scripts/mutate.py) uses each case as the guard of a mutation that demotes that category.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

REPORT = " ".join(
    f"Section {i}. The committee reviewed the quarterly figures for region {i % 7}, noting that revenue, "
    f"headcount and capital expenditure moved in line with the plan, with minor deviations explained in annex {i}."
    for i in range(1, 400)
)
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def ask(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "auto", "messages": [{"role": "user", "content": text}], **extra}


CLEAR: dict[str, dict[str, Any]] = {
    "deep_reasoning": ask("Prove that the square root of 2 is irrational, step by step."),
    "complex_coding": ask(
        "Refactor this Python class into smaller functions and add type hints:\n\n```python\nclass Repo:\n"
        "    def load(self, path):\n        data = open(path).read()\n        rows = [r.split(',') for r in data.splitlines()]\n"
        "        return {r[0]: r[1:] for r in rows}\n```"
    ),
    "long_document": ask(f"Summarize the following report in five bullet points.\n\n{REPORT}"),
    "agentic_tool_use": ask("Is it raining in Oslo?", tools=[WEATHER]),
    "qa_retrieval": ask("What is the capital of France?"),
    "text_generation": ask("Write a short poem about the sea."),
    "classification": ask(
        "Classify the sentiment of this review as positive, negative or neutral: 'The food was cold and the waiter was rude.'"
    ),
    "embedding": ask(
        "Which of these two sentences are semantically similar? Rate their similarity from 0 to 1: "
        "'A cat sits on the mat.' and 'A kitten is lying on the rug.'"
    ),
}


@pytest.mark.parametrize("category", list(CLEAR))
def test_a_clear_request_is_classified_as_its_category(proxy_server, category: str) -> None:  # type: ignore[no-untyped-def]
    decision = httpx.post(proxy_server.url + "/v1/route", json=CLEAR[category], timeout=10).json()
    assert decision["category"] == category, decision
