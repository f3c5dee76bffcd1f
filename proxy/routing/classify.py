"""Request -> Classification (owns: what kind of task a chat request is, and how hard).

Pure and deterministic: `classify(body)` reads the raw OpenAI chat-completions body and
returns the tutorial's category, a complexity 1-5, the routing module's level, token
estimates, capability needs, a confidence and the signals that decided it (never prompt text).

How: weighted feature scoring, not first-match keywords. The last user turn is scored from
multilingual cue lexicons (`proxy/routing/cues.py`) and structure (code blocks and code-like lines,
math, lists, question form, definitional questions, requested length); the system prompt,
the previous turn and the tool/agent state add evidence with smaller weights; document size
(the largest message) pushes towards `long_document`, or `complex_coding` when the bulk is
code. Each category's score is the sum of its three strongest cues plus structure, so
stacking synonyms does not win, and a keyword inside a definitional question ("what does
*deploy* mean?") is damped.

Speed: text is scanned in bounded windows (the head and tail of the last user turn, the head
of the system prompt and of the previous turn) with precompiled patterns and set lookups;
document-wide figures come from C-speed `str` methods and the sampled token estimate.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Protocol

from proxy.policy.routing import CATEGORIES
from proxy.routing import cues
from proxy.routing import textscan as scan
from proxy.routing.textscan import Conversation, read_conversation
from proxy.routing.tokens import estimate_input_tokens

LEVELS = {1: "simple", 2: "simple", 3: "moderate", 4: "complex", 5: "critical"}
LONG_CONTEXT_TOKENS = 50_000  # the tutorial's threshold for requires_long_context

BASE_COMPLEXITY = {
    "deep_reasoning": 3.0,
    "complex_coding": 2.5,
    "long_document": 2.2,
    "agentic_tool_use": 2.0,
    "qa_retrieval": 1.6,
    "text_generation": 1.9,
    "classification": 1.5,
    "embedding": 1.6,
}
# Output tokens by category and complexity 1-5 (the tutorial's "typical tokens", scaled).
OUTPUT_TOKENS = {
    "deep_reasoning": (300, 600, 1200, 2500, 4000),
    "complex_coding": (150, 500, 1200, 2500, 4000),
    "long_document": (300, 500, 800, 1500, 2500),
    "agentic_tool_use": (150, 300, 500, 800, 1200),
    "qa_retrieval": (60, 200, 400, 700, 1000),
    "text_generation": (120, 300, 600, 1000, 1800),
    "classification": (10, 40, 100, 200, 400),
    "embedding": (30, 80, 150, 250, 400),
}
# How much the system prompt's cues count: it often defines the task for labelling,
# similarity and rewriting pipelines (the user turn is then data), and is mostly persona otherwise.
SYSTEM_WEIGHT = {"classification": 1.0, "embedding": 1.0, "text_generation": 0.7, "qa_retrieval": 0.5}
SYSTEM_TASKS = ("classification", "embedding", "text_generation")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_SEQUENCE = frozenset("then afterwards after finally next each every dann danach ensuite puis luego después".split())


@dataclass(frozen=True)
class Classification:
    category: str
    complexity: int
    level: str
    estimated_input_tokens: int
    estimated_output_tokens: int
    needs_tools: bool
    needs_vision: bool
    needs_long_context: bool
    confidence: float
    signals: Mapping[str, Any] = field(default_factory=dict, hash=False)
    output_from_max_tokens: bool = False
    # P(a model of tier t is adequate) for t = 1..4 (the trained router's; None for the heuristic alone)
    adequacy: tuple[float, float, float, float] | None = None
    # the category's share of the dial's allowed inadequacy (1 - quality_target): a tier meets the
    # target when P >= 1 - (1 - target) * slack (the trained router's per-category offsets; 1.0: none)
    slack: float = 1.0


def level_for(complexity: int) -> str:
    return LEVELS[max(1, min(5, complexity))]


def output_tokens_for(category: str, complexity: int, body: Mapping[str, Any] | None = None) -> tuple[int, bool]:
    """(estimated output tokens, whether they come from the request's max_tokens)."""
    if body is not None:
        cap = body.get("max_completion_tokens") or body.get("max_tokens")
        if isinstance(cap, int) and not isinstance(cap, bool) and cap > 0:
            return cap, True
    return OUTPUT_TOKENS[category][max(1, min(5, complexity)) - 1], False


class Refiner(Protocol):
    """The trained router (proxy/routing/learned.py): refines the heuristic verdict."""

    def refine(self, conv: Conversation, tools: list[Any], body: Mapping[str, Any], c: Classification) -> Classification: ...


def classify(body: Mapping[str, Any], router: Refiner | None = None, input_tokens: int | None = None) -> Classification:
    """Classify a chat-completions request body (pure; same body and router, same answer).

    `input_tokens`: the request's estimate when the caller has it (the pipeline estimates once,
    see planning). Without `router` this is the heuristic alone; with it, the heuristic's verdict
    and signals become features of the trained model, which sets the category and the tier adequacies.
    """
    raw_messages = body.get("messages")
    conv = read_conversation(raw_messages if isinstance(raw_messages, list) else [])
    raw_tools = body.get("tools")
    tools = raw_tools if isinstance(raw_tools, list) else []
    if input_tokens is None:
        input_tokens = estimate_input_tokens(body)
    tokens_per_char = input_tokens / conv.total_chars if conv.total_chars else 0.25
    doc_tokens = int(conv.largest_chars * min(tokens_per_char, 1.5))
    f = _features(body, conv, tools, doc_tokens)
    scores = f.scores
    # scores are in category order (dict.fromkeys(CATEGORIES)) and the sort is stable, so ties keep
    # the tutorial's category order without a Python key function
    ranked = sorted(scores.items(), key=itemgetter(1), reverse=True)
    (category, top), (_, second) = ranked[0], ranked[1]
    if top <= 0.5:
        category = "qa_retrieval"
    confidence = round(min(1.0, 0.5 * (top - second) / (top + 1.0) + 0.5 * top / (top + 3.0)), 3)

    complexity = _complexity(category, f, tools, doc_tokens)
    output, from_max = output_tokens_for(category, complexity, body)
    if f.asked_words and not from_max:
        output = max(output, f.asked_words)
    level = "critical" if f.risky and category == "agentic_tool_use" else level_for(complexity)
    signals: dict[str, Any] = {
        "scores": {c: round(s, 2) for c, s in ranked[:3] if s > 0},
        "code_blocks": f.fences // 2,
        "code_density": round(f.density, 1),
        "math": f.math,
        "question": f.question,
        "definitional": f.definitional,
        "doc_tokens": doc_tokens,
        "tools": len(tools),
        "tool_overlap": f.overlap,
        "in_tool_loop": conv.in_tool_loop,
        "follow_up": f.follow_up,
        "structured_output": f.structured,
        "images": conv.images,
        "turns": conv.user_turns,
    }
    c = Classification(
        category=category,
        complexity=complexity,
        level=level,
        estimated_input_tokens=input_tokens,
        estimated_output_tokens=output,
        needs_tools=bool(tools) or conv.tool_history,
        needs_vision=conv.images > 0,
        needs_long_context=input_tokens > LONG_CONTEXT_TOKENS,
        confidence=confidence,
        signals=signals,
        output_from_max_tokens=from_max,
    )
    if router is None:
        return c
    refined = router.refine(conv, tools, body, c)
    if refined.category != category and not from_max:
        output = max(output_tokens_for(refined.category, complexity)[0], f.asked_words)
        refined = refined_as(refined, refined.category, refined.confidence, refined.signals, refined.adequacy, output, refined.slack)
    return refined


def refined_as(
    c: Classification,
    category: str,
    confidence: float,
    signals: Mapping[str, Any],
    adequacy: tuple[float, float, float, float] | None,
    output_tokens: int,
    slack: float = 1.0,
) -> Classification:
    """`c` with a refiner's verdict: `dataclasses.replace` without its per-call field introspection (the hot path)."""
    return Classification(
        category,
        c.complexity,
        c.level,
        c.estimated_input_tokens,
        output_tokens,
        c.needs_tools,
        c.needs_vision,
        c.needs_long_context,
        confidence,
        signals,
        c.output_from_max_tokens,
        adequacy,
        slack,
    )


@dataclass(slots=True)
class _Features:
    scores: dict[str, float]
    words: set[str]
    low: str  # the instruction, lower-case, quotes kept
    prose: str  # the instruction without fenced code
    fences: int = 0
    fenced: int = 0
    density: float = 0.0
    math: int = 0
    question: bool = False
    definitional: bool = False
    structured: bool = False
    overlap: bool = False
    risky: bool = False
    follow_up: bool = False
    asked_words: int = 0
    lead_cues: bool = False


def _features(body: Mapping[str, Any], conv: Conversation, tools: list[Any], doc_tokens: int) -> _Features:
    ask = conv.ask
    instruction = scan.instruction_of(ask)
    unquoted = scan.strip_quotes(instruction)
    found, words, unquoted_low = scan.cue_scores(unquoted)
    low = unquoted_low if unquoted is instruction else instruction.lower()
    scores = dict.fromkeys(CATEGORIES, 0.0)
    for c, ws in found.items():
        scores[c] = scan.top3(ws)
    lead = scan.first_sentence(unquoted)
    # a one-sentence turn is its own first sentence: the same (pure) scan, not done twice
    lead_found = found if lead == unquoted else scan.cue_scores(lead)[0]
    for c, ws in lead_found.items():
        scores[c] += 0.5 * scan.top3(ws)
    if not tools:
        scores["agentic_tool_use"] *= 0.5
    f = _Features(scores=scores, words=words, low=low, prose=low, lead_cues=bool(lead_found))

    # "```" in ask is a substring search (~1 ns a character: ~0.5 ms on a 100k-token document);
    # "`" in ask is one memchr pass (~50x faster), and most documents have no backtick at all
    tick = "`" in ask
    fence = tick and "```" in ask
    head = low[:200]
    f.definitional = (
        len(ask) < 160
        and "```" not in ask
        and (cues.DEFINITIONAL.search(head) is not None or any(c in head for c in cues.DEFINITIONAL_CJK))
    )
    stripped = low.strip()
    first = stripped.split(maxsplit=1)[0] if stripped else ""
    f.question = "?" in stripped[:300] or "？" in stripped[:300] or first in scan.QUESTION_START or (stripped.endswith(("か", "吗", "呢")))
    if f.question:
        scores["qa_retrieval"] += 1.0
    if f.question and not fence and len(_NUMBER.findall(f.prose)) >= 3:
        scores["deep_reasoning"] += 1.0
    if f.definitional:
        for c in CATEGORIES:
            scores[c] *= 0.3
        scores["qa_retrieval"] += 4.0

    # structure: code, math, structured output, requested length
    if fence:
        f.fences, f.fenced = scan.fenced_chars(ask)
        f.prose = cues.FENCED.sub(" ", low)
    f.density = scan.code_density(ask, low if instruction is ask else None) if len(ask) > 40 else 0.0
    code_like = f.fences >= 2 or f.density >= 8
    if f.fences >= 2:
        scores["complex_coding"] += 3.0
    elif f.density >= 8:  # unfenced code: as strong as a fenced block, stronger when it is most of the turn
        scores["complex_coding"] += 4.5 if f.density >= 20 else 3.0
    elif f.density >= 4:
        scores["complex_coding"] += 1.0
    if not f.fences and tick and ask.count("`") >= 2 and any(ch in ask for ch in "=([{."):
        scores["complex_coding"] += 1.5  # inline `code`
    f.math = 0 if code_like else len(cues.MATH.findall(low))
    if f.math >= 8:
        scores["deep_reasoning"] += 3.0
    elif f.math >= 3:
        scores["deep_reasoning"] += 1.5
    fmt = body.get("response_format")
    f.structured = isinstance(fmt, Mapping) and fmt.get("type") in ("json_object", "json_schema")
    if f.structured:
        scores["classification"] += 1.5
    length = cues.LENGTH_ASK.search(f.prose) if any(u in f.prose for u in cues.LENGTH_UNITS) else None
    if length:
        n = int(length.group(1).replace(",", "").replace(".", ""))
        unit = length.group(2).lower()
        f.asked_words = int(n * (600 if unit.startswith(("page", "seite")) else 1.4 if unit[0].isascii() else 1.0))

    _document(f, conv, ask, doc_tokens)
    _context(f, conv, tools, body.get("tool_choice"))
    return f


def _document(f: _Features, conv: Conversation, ask: str, doc_tokens: int) -> None:
    """A large message makes the request a long-document task (or long-context coding)."""
    boost = 7.0 if doc_tokens >= 20_000 else 4.5 if doc_tokens >= 6_000 else 1.5 if doc_tokens >= 2_500 else 0.0
    if not boost or conv.in_tool_loop:
        return
    text = conv.largest_text
    is_code = (f.density if text is ask else scan.code_density(text)) >= 8 or (text is ask and f.fenced > len(ask) // 2)
    scores = f.scores
    if is_code:
        scores["complex_coding"] += boost
        return
    refs = len(f.words & cues.DOC_WORDS) + sum(c in f.low for c in cues.DOC_CJK)
    scores["long_document"] += boost + min(refs, 2) * 0.75
    if boost >= 4.5:  # a question about, or a summary of, a long document is a long-document task
        scores["long_document"] += 0.6 * max(scores["qa_retrieval"], scores["text_generation"])


def _context(f: _Features, conv: Conversation, tools: list[Any], tool_choice: Any) -> None:
    """Evidence from the system prompt, the previous turn and the tool/agent state."""
    scores = f.scores
    evidence = max(scores.values())
    if conv.system:
        sys_found, _, _ = scan.cue_scores(conv.system)
        weak_ask = evidence < 2.0 and not f.question  # a bare question is a task of its own
        task = max((scan.top3(sys_found.get(c, [])) for c in SYSTEM_TASKS), default=0.0)
        if task >= 3.0 and not f.question and not f.lead_cues:
            for c in CATEGORIES:  # the system prompt sets the task; the user turn is its data
                scores[c] *= 0.5
        for c, ws in sys_found.items():
            weight = SYSTEM_WEIGHT.get(c, 0.35)
            scores[c] += (max(weight, 0.9) if weak_ask else weight) * scan.top3(ws)
    f.follow_up = conv.user_turns > 1 and len(conv.ask) < 120 and not f.definitional
    if conv.previous_user:
        prev_found, _, _ = scan.cue_scores(scan.strip_quotes(scan.instruction_of(conv.previous_user)))
        weight = 0.6 if f.follow_up else 0.2
        for c, ws in prev_found.items():
            scores[c] += weight * scan.top3(ws)
        if f.follow_up and "```" in conv.previous_assistant[:4000]:
            scores["complex_coding"] += 2.0
    tool_words, f.risky = scan.tool_words(tools)
    f.overlap = bool(tool_words & f.words)
    if tools and tool_choice != "none":
        fresh = bool(f.words & cues.FRESH_WORDS) or any(c in f.low for c in cues.FRESH_CJK)
        scores["agentic_tool_use"] += 3.0 + (4.0 if f.overlap else 0.0) + (2.0 if fresh else 0.0)
        if tool_choice == "required" or isinstance(tool_choice, Mapping):
            scores["agentic_tool_use"] += 4.0
    if conv.in_tool_loop:
        scores["agentic_tool_use"] += 8.0
    elif conv.tool_history:
        scores["agentic_tool_use"] += 2.0


def _complexity(category: str, f: _Features, tools: list[Any], doc_tokens: int) -> int:
    words, low, prose = f.words, f.low, f.prose
    c = BASE_COMPLEXITY[category]
    hard = len(words & cues.HARD_WORDS)
    easy = len(words & cues.EASY_WORDS)
    medium = len(words & cues.MEDIUM_WORDS)
    if scan.has_cjk(low):
        hard += sum(w in low for w in cues.HARD_CJK)
        easy += sum(w in low for w in cues.EASY_CJK)
    c += 0.8 * min(hard, 3) + 0.4 * min(medium, 2) - 0.8 * min(easy, 2)
    size = len(prose)
    c += 1.0 if size > 1500 else 0.5 if size > 500 else 0.0
    clauses = prose.count(",") + prose.count(";") + prose.count(" and ") + prose.count("，") + prose.count("、")
    c += 1.0 if clauses >= 9 else 0.5 if clauses >= 5 else 0.0
    items = len(cues.LIST_ITEM.findall(prose)) if "\n" in prose else 0
    c += 1.0 if items >= 6 else 0.5 if items >= 3 else 0.0
    if f.asked_words:
        c += 1.0 if f.asked_words >= 2000 else 0.5 if f.asked_words >= 800 else 0.0
    if category == "complex_coding":
        code_chars = f.fenced or (doc_tokens * 4 if doc_tokens > 1000 else 0)
        c += 1.0 if code_chars > 30_000 else 0.5 if code_chars > 3_000 else 0.0
    elif category == "deep_reasoning" and f.math >= 6:
        c += 0.5
    elif category == "long_document":
        c += 1.0 if doc_tokens >= 100_000 else 0.5 if doc_tokens >= 30_000 else 0.0
    elif category == "agentic_tool_use":
        c += 0.5 if len(tools) >= 4 else 0.0
        c += 0.5 if len(words & _SEQUENCE) >= 2 else 0.0
    if f.definitional:
        c = min(c, 2.0) - 0.5
    return max(1, min(5, int(c + 0.5)))
