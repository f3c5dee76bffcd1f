"""Text scanning for the classifier (owns: reading a request's text cheaply and boundedly).

One pass over the messages (`read_conversation`), the instruction part of a long turn,
multilingual cue lookup (`cue_scores`), quote stripping, first sentence, fenced code and
code density, tool-name words. Every function is pure and scans bounded windows or uses
C-speed `str` methods, so cost does not grow with a pasted document.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from proxy.routing import cues

HEAD, TAIL = 1500, 500  # characters of the last user turn scanned for cues
SIDE_HEAD = 800  # characters of the system prompt / previous turn scanned
INSTRUCTION = 500  # characters taken from each end of a document-bearing turn
PUNCT = cues.PUNCT
QUESTION_START = frozenset(
    "what who when where why how which is are can could should does do did was were will would "
    "was wer wann wo warum wie welche welcher ist sind kann qu'est-ce quel quelle quand où pourquoi "
    "comment est-ce qué quién cuándo dónde cómo cuál es puede".split()
)


def content_text(content: Any) -> tuple[str, int]:
    """(text, images) of a message's content."""
    if isinstance(content, str):
        return content, 0
    if not isinstance(content, list):
        return "", 0
    texts, images = [], 0
    for part in content:
        if isinstance(part, Mapping):
            kind = part.get("type")
            if kind in ("text", "input_text") and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif kind == "image_url":
                images += 1
    return "\n".join(texts), images


def instruction_of(ask: str) -> str:
    """The part of the last user turn that says what to do.

    A short turn is all instruction. A long one carries a document or code, and its
    instruction is the first or the last paragraph (each at most INSTRUCTION characters):
    whichever looks like one (a question, a task word in its first sentence, or a pointer
    such as "above"/"attached"); the first when neither does.
    """
    if len(ask) <= HEAD + TAIL:
        return ask
    cut = ask.find("\n\n", 0, INSTRUCTION)
    if cut < 0:
        cut = ask.find("\n", 0, INSTRUCTION)
    head = ask[: cut if cut > 0 else INSTRUCTION]
    back = ask.rfind("\n\n", len(ask) - INSTRUCTION)
    if back < 0:
        back = ask.rfind("\n", len(ask) - INSTRUCTION)
    tail = ask[back:] if back >= 0 else ask[-INSTRUCTION:]
    head_ok, tail_ok = looks_like_instruction(head), looks_like_instruction(tail)
    if tail_ok and not head_ok:
        return tail
    if head_ok and tail_ok:
        return head + "\n" + tail
    return head


def looks_like_instruction(paragraph: str) -> bool:
    text = paragraph.strip()
    if "?" in text or "？" in text:
        return True
    start = first_sentence(text).lower()
    split = start.translate(PUNCT).split()
    words = set(split)
    if words & cues.DOC_DEICTIC or words & cues.WORD_SET or (split and split[0] in QUESTION_START):
        return True
    return has_cjk(start) and any(cue in start for cue, _, _ in cues.CJK_CUES)


def cue_scores(text: str) -> tuple[dict[str, list[float]], set[str], str]:
    """Per-category cue weights found in `text`, its word set and its lower-case form."""
    low = text.lower()
    tokens = low.translate(PUNCT).split()
    words = set(tokens)
    if "-" in low:
        words.update(w for t in tokens if "-" in t for w in t.split("-"))
    found: dict[str, list[float]] = {}
    for word in words & cues.WORD_SET:
        for category, weight in cues.WORD_CUES[word]:
            found.setdefault(category, []).append(weight)
    firsts = words & cues.PHRASE_FIRST
    if firsts:
        padded = " " + " ".join(tokens) + " "
        for first in firsts:
            for phrase, category, weight in cues.PHRASES_BY_FIRST[first]:
                if phrase in padded:
                    found.setdefault(category, []).append(weight)
    if has_cjk(text):
        for cue, category, weight in cues.CJK_CUES:
            if cue in text:
                found.setdefault(category, []).append(weight)
    if words & cues.CONSTRAINED_WORDS and any(v in low for v in cues.CONSTRAINED_VERBS):
        found.setdefault("classification", []).append(2.0)
    nouns = found.pop("text_noun", None)
    if nouns:
        factor = 1.0 if "text_generation" in found else 0.5
        found.setdefault("text_generation", []).extend(w * factor for w in nouns)
    return found, words, low


def has_cjk(text: str) -> bool:
    return not text.isascii() and cues.CJK.search(text) is not None


def strip_quotes(text: str) -> str:
    for quote, pattern in cues.QUOTED:
        if quote in text:
            text = pattern.sub(" ", text)
    return text


def first_sentence(text: str) -> str:
    """The first sentence (at most 160 characters): usually the imperative."""
    end = len(text)
    for mark in (". ", "? ", "! ", "\n", "。", "？", "！", ":"):
        i = text.find(mark, 0, 160)
        if 0 < i < end:
            end = i
    return text[: min(end, 160)]


def top3(weights: list[float]) -> float:
    if len(weights) <= 3:
        return sum(weights)
    return sum(sorted(weights, reverse=True)[:3])


def fenced_chars(text: str) -> tuple[int, int]:
    """(number of ``` fences, characters inside fenced blocks); bounded to 40 fences."""
    fences = text.count("```")
    inside, pos = 0, 0
    for _ in range(min(fences // 2, 20)):
        start = text.find("```", pos)
        end = text.find("```", start + 3)
        if start < 0 or end < 0:
            break
        inside += end - start
        pos = end + 3
    return fences, inside


def code_density(text: str, low: str | None = None) -> float:
    """Code markers per 1000 characters, from up to 6 windows of 200 characters (`low`: `text.lower()`, when the caller has it)."""
    n = len(text)
    if n <= 1200:
        sample = text.lower() if low is None else low
    else:
        step = (n - 200) // 5
        sample = "\n".join([text[i * step : i * step + 200] for i in range(6)]).lower()
    if not sample or not any(ch in sample for ch in "({;=<"):  # no code punctuation: prose
        return 0.0
    hits = sum(map(sample.count, cues.CODE_MARKERS_COMMON))
    if not hits:  # none of the commonest markers: not code (saves 15 more scans)
        return 0.0
    if hits * 1000 >= 20 * len(sample):  # clearly code already
        return hits * 1000 / len(sample)
    hits += sum(map(sample.count, cues.CODE_MARKERS))
    return hits * 1000 / len(sample) if hits >= 2 else 0.0  # one marker in a sentence is not code


@dataclass(slots=True)
class Conversation:
    """What the classifier reads from the messages (texts by reference, never copied out)."""

    ask: str = ""
    ask_images: int = 0
    system: str = ""
    previous_user: str = ""
    previous_assistant: str = ""
    images: int = 0
    in_tool_loop: bool = False
    tool_history: bool = False
    largest_chars: int = 0
    largest_text: str = ""
    total_chars: int = 0
    user_turns: int = 0


def read_conversation(messages: list[Any]) -> Conversation:
    """One pass over the messages: the last user turn, system prompt, previous turn, tool state."""
    conv = Conversation()
    last_user = -1
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if isinstance(m, Mapping) and m.get("role") == "user":
            last_user = i
            break
    systems: list[str] = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            continue
        role = m.get("role")
        text, images = content_text(m.get("content"))
        conv.images += images
        size = len(text)
        conv.total_chars += size
        if size > conv.largest_chars:
            conv.largest_chars, conv.largest_text = size, text
        if role in ("system", "developer"):
            if len(systems) < 2:
                systems.append(text[:SIDE_HEAD])
        elif role == "user":
            conv.user_turns += 1
            if i == last_user:
                conv.ask, conv.ask_images = text, images
            elif i < last_user:
                conv.previous_user = text
        elif role in ("tool", "function"):
            conv.tool_history = True
            if i > last_user:
                conv.in_tool_loop = True
        elif role == "assistant":
            if m.get("tool_calls"):
                conv.tool_history = True
            if i < last_user:
                conv.previous_assistant = text
    conv.system = "\n".join(systems)
    return conv


def tool_words(tools: list[Any]) -> tuple[set[str], bool]:
    """Words of the tools' names and descriptions, and whether a name acts irreversibly."""
    words: set[str] = set()
    risky = False
    for tool in tools[:24]:
        fn = tool.get("function") if isinstance(tool, Mapping) else None
        if not isinstance(fn, Mapping):
            continue
        name = fn.get("name")
        if not isinstance(name, str):
            continue
        spaced = "".join(" " + c.lower() if c.isupper() else c for c in name)
        parts = [w for w in spaced.replace("_", " ").replace("-", " ").split() if len(w) >= 4]
        words.update(parts)
        risky = risky or bool(cues.RISKY_TOOL_WORDS.intersection(parts))
        description = fn.get("description")
        if isinstance(description, str):
            words.update(w for w in description[:160].lower().translate(PUNCT).split() if len(w) >= 5)
    return words, risky
