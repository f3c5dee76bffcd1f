"""Request -> the trained router's features (owns: what the learned model reads; pure, bounded).

Two blocks, both sets of strings (binary features), shared by training (`proxy/training`)
and inference (`proxy/routing/learned.py`) so the two can never drift apart:

* text: word unigrams and bigrams of the last user turn (its head and tail), char 4-grams of
  its first words (multilingual: they catch inflections, typos and scripts without spaces),
  words of the system prompt and of the previous user turn, and the tools' names. The model
  scales this block by 1/sqrt(size), so a long prompt does not shout louder than a short one.
* structure: the heuristic classifier's verdict (category, runner-up, complexity, confidence)
  and signals, bucketed: tools present / tool results after the last user turn, images,
  turns, sizes of the turn / largest message / whole request, code density and fences, maths,
  question form, structured output, the script of the turn, and its shape (words, lines, list
  items, question marks, sentences of its first SHAPE_CHARS characters: how much it asks).

Every window is bounded (TEXT_HEAD + TEXT_TAIL characters of the turn, GRAM_CHARS for
n-grams), so the cost does not grow with a pasted 100k-token document.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Mapping
from typing import Any

from proxy.routing.textscan import Conversation

TEXT_HEAD, TEXT_TAIL = 300, 150  # characters of the last user turn read for words
MAX_WORDS = 100
GRAM_CHARS = 80  # characters (of the normalised first words) cut into char 4-grams
SIDE_CHARS = 300  # system prompt / previous turn
_WORD = re.compile(r"\w+")
SHAPE_CHARS = 2000  # characters of the turn read for its shape (words, lines, list items, sentences)
_ITEM = re.compile(r"\s*(?:[-*\u2022]|\d+[.)])\s")  # a list item at the start of a line
_SENTENCE_END = re.compile(r"[.!?\u3002\uff1f\uff01](?:\s|$)")


def _bucket(value: float, edges: tuple[float, ...]) -> int:
    """The number of edges <= value (edges ascending): the index of the first edge above it.
    The feature builders below call `bisect_right(edges, value)` inline (a Python call less per bucket)."""
    return bisect_right(edges, value)


_SCRIPTS = (
    ("cjk", 0x4E00, 0x9FFF),
    ("kana", 0x3040, 0x30FF),
    ("hangul", 0xAC00, 0xD7AF),
    ("cyrillic", 0x0400, 0x04FF),
    ("arabic", 0x0600, 0x06FF),
    ("devanagari", 0x0900, 0x097F),
    ("greek", 0x0370, 0x03FF),
    ("hebrew", 0x0590, 0x05FF),
    ("thai", 0x0E00, 0x0E7F),
)


_SCRIPT_CODES = tuple(zip((name for name, _, _ in _SCRIPTS), "abcdefghi", strict=True))
_ACCENTED = "z"  # U+0080..U+024F: Latin with diacritics


def _script_table() -> str:
    """A str.translate table (indexed by code point): a script's letter, "z" for accented, " " for the rest.
    Code points past its end (above Hangul) stay as they are, which is none of the letters."""
    table = [" "] * (max(hi for _, _, hi in _SCRIPTS) + 1)
    table[0x80:0x250] = [_ACCENTED] * (0x250 - 0x80)
    for (_, lo, hi), (_, code) in zip(_SCRIPTS, _SCRIPT_CODES, strict=True):
        table[lo : hi + 1] = [code] * (hi + 1 - lo)
    return "".join(table)


_SCRIPT_TABLE = _script_table()


def script_of(text: str) -> str:
    """The dominant non-Latin script of a short sample, `latin` when none, `accented` for Latin with diacritics.

    Ties go to the script seen first in the sample. Each character is classified by one C-level
    `str.translate`, then counted per script with `str.count`."""
    sample = text[:200]
    if sample.isascii():
        return "latin"
    coded = sample.translate(_SCRIPT_TABLE)
    best, most, first = "", 0, 0
    for name, code in _SCRIPT_CODES:
        n = coded.count(code)
        if n and (n > most or (n == most and coded.find(code) < first)):
            best, most, first = name, n, coded.find(code)
    if best:
        return best
    return "accented" if coded.count(_ACCENTED) >= 2 else "latin"


def text_features(conv: Conversation, tools: list[Any]) -> set[str]:
    ask = conv.ask
    window = ask if len(ask) <= TEXT_HEAD + TEXT_TAIL else ask[:TEXT_HEAD] + "\n" + ask[-TEXT_TAIL:]
    words = _WORD.findall(window.lower())[:MAX_WORDS]
    out = {"w " + w for w in words}
    out.update([f"b {a} {b}" for a, b in zip(words, words[1:], strict=False)])
    if words:
        out.add("first " + words[0])
        out.add("last " + words[-1])
    joined = " " + " ".join(words)[:GRAM_CHARS] + " "
    out.update([joined[i : i + 4] for i in range(len(joined) - 3)])
    if conv.system:
        out.update(["s " + w for w in _WORD.findall(conv.system[:SIDE_CHARS].lower())])
    if conv.previous_user:
        out.update(["p " + w for w in _WORD.findall(conv.previous_user[:SIDE_CHARS].lower())])
    for tool in tools[:16]:
        fn = tool.get("function") if isinstance(tool, Mapping) else None
        name = fn.get("name") if isinstance(fn, Mapping) else None
        if isinstance(name, str):
            out.update(["t " + p for p in name.lower().replace("-", "_").split("_") if p])
    return out


def shape_features(head: str) -> list[str]:
    """How much the ask asks: words, lines, list items, question marks, sentences (a bounded head)."""
    return [
        f"words {bisect_right((5, 10, 20, 40, 80, 160, 320), len(head.split()))}",
        f"lines {bisect_right((1, 3, 8, 20), head.count(chr(10)))}",
        f"items {bisect_right((1, 3, 6), sum(map(bool, map(_ITEM.match, head.split(chr(10))))))}",
        f"qmarks {bisect_right((1, 2, 4), head.count('?') + head.count(chr(0xFF1F)))}",
        f"sentences {bisect_right((1, 2, 4, 8), len(_SENTENCE_END.findall(head)))}",
    ]


def structure_features(conv: Conversation, tools: list[Any], body: Mapping[str, Any], c: Any) -> list[str]:
    """`c` is the heuristic Classification (category, complexity, confidence, signals)."""
    category, complexity, signals = c.category, c.complexity, c.signals
    scores = signals.get("scores") or {}
    ranked = list(scores)
    ask = conv.ask
    doc_tokens = int(signals.get("doc_tokens") or 0)
    out = [
        "bias",
        "h " + category,
        "h2 " + (ranked[1] if len(ranked) > 1 else "none"),
        f"hx {complexity}",
        f"hcx {category} {complexity}",
        f"hconf {bisect_right((0.3, 0.5, 0.7), c.confidence)}",
        f"tools {bisect_right((1, 2, 4, 8), len(tools))}",
        f"turns {min(conv.user_turns, 4)}",
        f"ask {bisect_right((20, 60, 150, 400, 1000, 3000, 10000, 40000), len(ask))}",
        f"doc {bisect_right((500, 2500, 6000, 20000, 60000), doc_tokens)}",
        f"total {bisect_right((200, 1000, 5000, 20000, 80000), conv.total_chars)}",
        f"code {bisect_right((2, 4, 8, 20), float(signals.get('code_density') or 0.0))}",
        f"fences {min(int(signals.get('code_blocks') or 0), 3)}",
        f"math {bisect_right((1, 3, 8), int(signals.get('math') or 0))}",
        "script " + script_of(ask),
        *shape_features(ask[:SHAPE_CHARS]),
    ]
    if conv.in_tool_loop:
        out.append("loop")
    elif conv.tool_history:
        out.append("tool history")
    if tools:
        out.append("tools " + category)
        choice = body.get("tool_choice")
        if choice == "none":
            out.append("tool_choice none")
        elif choice == "required" or isinstance(choice, Mapping):
            out.append("tool_choice forced")
    if conv.images:
        out.append("images")
    if conv.system:
        out.append(f"system {bisect_right((100, 400), len(conv.system))}")
    if conv.largest_chars > 4 * max(len(ask), 1) and conv.largest_chars > 8000:
        out.append("document elsewhere")  # a long document in the history, a short last turn
    for name in ("question", "definitional", "follow_up", "structured_output", "tool_overlap"):
        if signals.get(name):
            out.append(name)
    return out
