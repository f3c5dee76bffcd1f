"""proxy/routing/classify.py: categories, complexity, needs, misleading cues, languages, determinism."""

from __future__ import annotations

import pytest

from proxy.policy.routing import CATEGORIES
from proxy.routing.classify import LEVELS, Classification, classify, level_for
from tests.eval.docs import make_document


def user(text: str, **extra: object) -> dict:
    return {"model": "auto", "messages": [{"role": "user", "content": text}], **extra}


def chat(*turns: tuple[str, str], **extra: object) -> dict:
    return {"model": "auto", "messages": [{"role": r, "content": t} for r, t in turns], **extra}


def tool(name: str, description: str) -> dict:
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}},
    }


CONTRACT = make_document("contract_en", 10_000, 101)
CODE = make_document("code_py", 14_000, 102)

# (id, body, category, lowest complexity, highest complexity)
CASES: list[tuple[str, dict, str, int, int]] = [
    # The misleading cases
    ("deploy-meaning", user("what does *deploy* mean?"), "qa_retrieval", 1, 2),
    (
        "security-system-trivial",
        chat(
            (
                "system",
                "You are a senior penetration tester and security auditor. You assess exploits, audit "
                "production deployments and review cryptographic code for vulnerabilities.",
            ),
            ("user", "What port does HTTPS use by default?"),
        ),
        "qa_retrieval",
        1,
        2,
    ),
    (
        "explain-hard-proof",
        user(
            "Explain why every finite integral domain is a field, with a complete rigorous proof, "
            "and then prove that the characteristic of a field is zero or prime."
        ),
        "deep_reasoning",
        3,
        5,
    ),
    ("summarize-long-contract", user("Summarize this contract:\n\n" + CONTRACT), "long_document", 2, 4),
    # Code, math, structure
    ("code-block-fix", user("Why does this crash?\n```python\nitems = {}\nprint(items['a'])\n```"), "complex_coding", 1, 3),
    (
        "implement-service",
        user(
            "Implement a thread-safe connection pool in Java with timeouts, health checks, "
            "metrics and exhaustive unit tests, production-grade."
        ),
        "complex_coding",
        4,
        5,
    ),
    ("one-line-edit", user("Make this a one-liner: `result = []\nfor x in xs:\n    result.append(x * 2)`"), "complex_coding", 1, 2),
    ("math-symbols", user("Show that ∑_{k=1}^{n} k^3 = (n(n+1)/2)^2 for all n ≥ 1."), "deep_reasoning", 3, 5),
    (
        "json-extraction",
        user(
            "Pull the invoice number, date and total out of: 'Invoice INV-2291 dated 2024-03-02, total due EUR 310.00'",
            response_format={"type": "json_object"},
        ),
        "classification",
        1,
        2,
    ),
    ("unfenced-code-question", user("why does this fail: for (i=0;i<n;i++) { sum += a[i]; } return sum;"), "complex_coding", 1, 3),
    ("math-without-proof-words", user("Let f(x) = x^2 - 4x + 3. Find the roots and the minimum of f."), "deep_reasoning", 2, 4),
    ("long-code-file", user("Find the bug that makes totals off by one.\n\n```python\n" + CODE + "\n```"), "complex_coding", 3, 5),
    # Tools and agents
    (
        "tool-needed",
        user("Is it raining in Oslo right now?", tools=[tool("get_weather", "Current weather for a city.")]),
        "agentic_tool_use",
        1,
        2,
    ),
    (
        "tool-loop",
        {
            "model": "auto",
            "tools": [tool("lookup_order", "Find an order.")],
            "messages": [
                {"role": "user", "content": "Where is my order 7781?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "lookup_order", "arguments": '{"id": "7781"}'}}],
                },
                {"role": "tool", "tool_call_id": "c1", "content": '{"status": "shipped"}'},
            ],
        },
        "agentic_tool_use",
        1,
        3,
    ),
    (
        "tools-present-not-needed",
        user("Translate 'thank you very much' into Italian.", tools=[tool("web_search", "Search the web.")]),
        "text_generation",
        1,
        2,
    ),
    # Other categories
    ("email", user("Write a friendly email inviting the team to a picnic on Friday."), "text_generation", 1, 2),
    (
        "label-system-defined",
        chat(
            ("system", "Classify each message as one of: refund, delivery, account, other. Reply with the label only."),
            ("user", "The parcel tracking page has said 'in transit' for nine days now."),
        ),
        "classification",
        1,
        2,
    ),
    (
        "similarity",
        user("Are these two questions asking the same thing? 'How do I reset my PIN?' and 'I forgot my PIN, what now?'"),
        "embedding",
        1,
        2,
    ),
    (
        "rerank",
        user(
            "Rank these passages by relevance to 'cheap flights to Rome':\n1. Rome hotels\n2. Budget airlines "
            "flying to Italy\n3. History of the Colosseum"
        ),
        "embedding",
        1,
        3,
    ),
    ("plain-question", user("Who painted the ceiling of the Sistine Chapel?"), "qa_retrieval", 1, 2),
    ("greeting", user("hello!"), "qa_retrieval", 1, 1),
    # Languages
    (
        "de-code",
        user("Schreibe eine Funktion in Python, die Primzahlen bis n mit dem Sieb des Eratosthenes berechnet."),
        "complex_coding",
        2,
        3,
    ),
    ("de-definition", user("Was bedeutet 'Refactoring'?"), "qa_retrieval", 1, 2),
    ("fr-proof", user("Démontrez que la racine carrée de 3 est irrationnelle."), "deep_reasoning", 2, 4),
    ("fr-translate", user("Traduis en anglais : « Le rendez-vous est reporté à demain matin. »"), "text_generation", 1, 2),
    ("es-classify", user("Clasifica este comentario como positivo o negativo: 'El hotel estaba sucio y ruidoso.'"), "classification", 1, 2),
    ("es-question", user("¿Por qué se producen las mareas?"), "qa_retrieval", 1, 2),
    ("zh-code", user("请用Python写一个函数，判断一个字符串是否是回文。"), "complex_coding", 2, 3),
    ("zh-summary", user("请帮我总结这段话：今天公司召开了季度会议，讨论了销售目标和新产品发布计划。"), "text_generation", 1, 2),
    ("ja-proof", user("素数が無限に存在することを証明してください。"), "deep_reasoning", 2, 4),
    ("ja-extract", user("次の文から日付と金額を抽出してください：「3月5日に12,000円を支払いました。」"), "classification", 1, 2),
]


@pytest.mark.parametrize(("body", "category", "low", "high"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_category_and_complexity(body: dict, category: str, low: int, high: int) -> None:
    c = classify(body)
    assert c.category == category, c.signals
    assert low <= c.complexity <= high, (c.complexity, c.signals)
    assert c.level == level_for(c.complexity) or c.level == "critical"
    assert 0.0 <= c.confidence <= 1.0


def test_follow_up_inherits_the_conversation() -> None:
    coding = chat(
        ("user", "Write a Python function that parses ISO dates."),
        ("assistant", "```python\nfrom datetime import date\ndef parse(s):\n    return date.fromisoformat(s)\n```"),
        ("user", "now handle timezones too"),
    )
    assert classify(coding).category == "complex_coding"
    trivia = chat(("user", "What's the tallest mountain in Africa?"), ("assistant", "Kilimanjaro."), ("user", "and in Europe?"))
    assert classify(trivia).category == "qa_retrieval"


def test_long_document_question_in_an_earlier_turn() -> None:
    body = chat(
        ("user", "Here is our agreement, I will ask about it.\n\n" + CONTRACT),
        ("assistant", "Understood. What would you like to know?"),
        ("user", "Which clause covers audits, and what notice does it require?"),
    )
    assert classify(body).category == "long_document"


def test_summary_of_short_text_is_text_generation_not_long_document() -> None:
    assert classify(user("Summarize: 'Sales rose 4% in May. Costs were flat. Hiring is paused.'")).category == "text_generation"


def test_needs_tools_vision_and_long_context() -> None:
    image = {
        "model": "auto",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What breed is this dog?"},
                    {"type": "image_url", "image_url": {"url": "https://example.test/dog.jpg"}},
                ],
            }
        ],
    }
    c = classify(image)
    assert c.needs_vision and not c.needs_tools and not c.needs_long_context
    t = classify(user("weather in Rome?", tools=[tool("get_weather", "Weather.")]))
    assert t.needs_tools and not t.needs_vision
    big = classify(user("Summarise the agreement below.\n\n" + make_document("contract_en", 50_000, 5)))
    assert big.needs_long_context and big.estimated_input_tokens > 50_000


def test_output_estimate_uses_max_tokens_when_given() -> None:
    body = user("Write a haiku about autumn.")
    free = classify(body)
    assert not free.output_from_max_tokens and 0 < free.estimated_output_tokens < 2000
    capped = classify(dict(body, max_tokens=77))
    assert capped.estimated_output_tokens == 77 and capped.output_from_max_tokens
    assert classify(dict(body, max_completion_tokens=55, max_tokens=77)).estimated_output_tokens == 55


def test_requested_length_raises_the_output_estimate() -> None:
    short = classify(user("Write an essay about rivers."))
    long = classify(user("Write a 3,000-word essay about rivers."))
    assert long.estimated_output_tokens >= 3000 > short.estimated_output_tokens


def test_destructive_tools_make_an_agentic_request_critical() -> None:
    body = user(
        "Remove the inactive accounts from last year.",
        tools=[tool("delete_account", "Permanently delete an account."), tool("list_accounts", "List accounts.")],
    )
    c = classify(body)
    assert c.category == "agentic_tool_use" and c.level == "critical"


def test_levels_follow_complexity() -> None:
    assert [level_for(n) for n in range(1, 6)] == ["simple", "simple", "moderate", "complex", "critical"]
    assert set(LEVELS.values()) == {"simple", "moderate", "complex", "critical"}


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"messages": []},
        {"messages": "x"},
        {"messages": [None, 3, {"role": "user"}]},
        {"messages": [{"role": "user", "content": [{"type": "text"}]}]},
    ],
)
def test_malformed_bodies_do_not_raise(body: dict) -> None:
    c = classify(body)
    assert isinstance(c, Classification) and c.category in CATEGORIES


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_deterministic_and_signals_hold_no_prompt_text(case: tuple) -> None:
    body = case[1]
    first, second = classify(body), classify(body)
    assert first == second
    text = " ".join(m["content"] for m in body["messages"] if isinstance(m.get("content"), str))
    words = {w for w in text.split() if len(w) > 6}

    def strings(value: object) -> list[str]:
        if isinstance(value, str):
            return [value]
        if isinstance(value, dict):
            return [s for k, v in value.items() for s in strings(k) + strings(v)]
        if isinstance(value, (list, tuple)):
            return [s for v in value for s in strings(v)]
        return []

    leaked = [s for s in strings(first.signals) if s in words]
    assert not leaked, leaked


def test_confidence_is_lower_for_ambiguous_requests() -> None:
    clear = classify(user("Prove that the square root of 5 is irrational by contradiction."))
    vague = classify(user("thoughts?"))
    assert clear.confidence > vague.confidence
