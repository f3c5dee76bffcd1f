"""Token counts for chat-completions requests (owns: how many tokens a request is).

Uses tiktoken's `o200k_base` (the encoding of GPT-4o/4.1 and the o-series), loaded from the
copy litellm ships (`proxy.offline` points TIKTOKEN_CACHE_DIR at it), so nothing downloads.
Other providers' tokenizers differ by a few per cent; for routing that is noise.

Text is counted EXACTLY, never sampled: an estimate extrapolated from windows of the prompt
can be fooled by text crafted against the windows (easy prose where it looks, dense CJK,
digits or random unicode elsewhere), and the estimate is what budgets, TPM and the context
check hold against. Exact counting costs ~25-100 ns per character, so `TokenCounter.estimate`
keeps the event loop cheap: each message (and tool definition) is counted on its own and
remembered by its text's hash (agents resend the same conversation every turn; only the new
turns cost), up to `ON_LOOP_CHARS` new characters are counted on the loop, and the rest in one
worker thread (tiktoken releases the GIL). A 100k-token prompt costs the loop ~0.3 ms (hashing
and the hand-off); its first count costs ~10-30 ms of CPU in the thread.

Message framing follows OpenAI's published accounting: 3 tokens per message, 1 more when it
has a `name`, 3 to prime the reply. Images count 85 tokens at `detail: low` and otherwise the
most an image can cost (1445: 8 tiles of 512 px at 170 tokens, plus 85), an upper bound. Tool definitions and a response schema count
their name, description and JSON schema exactly, plus fixed per-function and per-property
overheads.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

import orjson

import proxy  # noqa: F401  (offline guard: TIKTOKEN_CACHE_DIR before tiktoken loads)

ENCODING = "o200k_base"
ON_LOOP_CHARS = 16_000  # new (uncached) characters counted on the event loop per request
CACHE_SIZE = 8192  # texts whose count is remembered (by hash and length)

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMER = 3
IMAGE_TOKENS_LOW = 85
IMAGE_TOKENS_HIGH = 1445  # the most a high/auto-detail image costs (8 tiles x 170 + 85)
AUDIO_OR_FILE_TOKENS = 500  # input_audio / file parts: a fixed guess, they are rare in routing
TOOL_FUNCTION_OVERHEAD = 8
TOOL_PROPERTY_OVERHEAD = 3
TOOLS_OVERHEAD = 12


@lru_cache(maxsize=1)
def _encoder() -> Any:
    import tiktoken

    enc = tiktoken.get_encoding(ENCODING)
    # The Encoding keeps the Python dict of 200k byte-string ranks it built its (Rust) encoder
    # from, read only to pickle an unregistered encoding: ~26 MB of the process's RSS, unused.
    enc._mergeable_ranks = {}
    return enc


def warm_up() -> None:
    """Load the encoding now (~0.3 s), not on the first request: call once at start-up."""
    _encoder().encode_ordinary("warm up")


def count_text_tokens(text: str) -> int:
    """Tokens in `text`, exactly (synchronous: for short text or off the event loop)."""
    return len(_encoder().encode_ordinary(text)) if text else 0


def _count_all(texts: list[str]) -> list[int]:
    encode = _encoder().encode_ordinary
    return [len(encode(t)) for t in texts]


class TokenCounter:
    """Exact input-token estimates with a per-text cache; long new text is counted in a thread."""

    def __init__(self, cache_size: int = CACHE_SIZE, on_loop_chars: int = ON_LOOP_CHARS) -> None:
        self._cache: OrderedDict[tuple[int, int], int] = OrderedDict()
        self._size = cache_size
        self._on_loop = on_loop_chars

    async def estimate(self, body: Mapping[str, Any]) -> int:
        """Prompt tokens of a chat-completions body (messages, images, tools, schema)."""
        fixed, texts = request_parts(body)
        total, pending, budget = fixed, [], self._on_loop
        cache = self._cache
        for text in texts:
            key = (hash(text), len(text))
            hit = cache.get(key)
            if hit is not None:
                total += hit
                continue
            if len(text) <= budget:
                budget -= len(text)
                n = count_text_tokens(text)
                self._remember(key, n)
                total += n
            else:
                pending.append(text)
        if pending:
            counts = await asyncio.to_thread(_count_all, pending)
            for text, n in zip(pending, counts, strict=True):
                self._remember((hash(text), len(text)), n)
                total += n
        return total

    def _remember(self, key: tuple[int, int], n: int) -> None:
        self._cache[key] = n
        if len(self._cache) > self._size:
            self._cache.popitem(last=False)


def content_text(content: Any) -> tuple[str, int]:
    """(text, extra tokens for non-text parts) of a message's `content` (string or parts)."""
    if content is None:
        return "", 0
    if isinstance(content, str):
        return content, 0
    if not isinstance(content, list):
        return str(content), 0
    texts: list[str] = []
    extra = 0
    for part in content:
        if not isinstance(part, Mapping):
            continue
        kind = part.get("type")
        if kind == "text" or kind == "input_text":
            value = part.get("text")
            if isinstance(value, str):
                texts.append(value)
        elif kind == "image_url":
            image = part.get("image_url")
            detail = image.get("detail") if isinstance(image, Mapping) else None
            extra += IMAGE_TOKENS_LOW if detail == "low" else IMAGE_TOKENS_HIGH
        elif kind in ("input_audio", "file"):
            extra += AUDIO_OR_FILE_TOKENS
    return "\n".join(texts), extra


def tool_calls_text(message: Mapping[str, Any]) -> str:
    """The names and argument strings of an assistant message's tool calls."""
    calls = message.get("tool_calls")
    if not isinstance(calls, list):
        return ""
    out = []
    for call in calls:
        fn = call.get("function") if isinstance(call, Mapping) else None
        if isinstance(fn, Mapping):
            out.append(f"{fn.get('name') or ''} {fn.get('arguments') or ''}")
    return "\n".join(out)


def tools_text(tools: Iterable[Any]) -> tuple[int, list[str]]:
    """(fixed overhead tokens, texts to count) of tool (function) definitions."""
    fixed = 0
    texts: list[str] = []
    for tool in tools:
        fn = tool.get("function") if isinstance(tool, Mapping) else None
        if not isinstance(fn, Mapping):
            continue
        params = fn.get("parameters")
        props = params.get("properties") if isinstance(params, Mapping) else None
        n_props = len(props) if isinstance(props, Mapping) else 0
        fixed += TOOL_FUNCTION_OVERHEAD + n_props * TOOL_PROPERTY_OVERHEAD
        text = f"{fn.get('name') or ''}\n{fn.get('description') or ''}"
        if isinstance(params, Mapping):
            text += "\n" + _json(params)
        texts.append(text)
    return (fixed + TOOLS_OVERHEAD if texts else 0), texts


def request_parts(body: Mapping[str, Any]) -> tuple[int, list[str]]:
    """(tokens known without counting: framing, images, overheads; the texts to count)."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return 0, []
    texts: list[str] = []
    total = REPLY_PRIMER
    for message in messages:
        if not isinstance(message, Mapping):
            continue
        total += TOKENS_PER_MESSAGE
        if message.get("name"):
            total += TOKENS_PER_NAME
        text, extra = content_text(message.get("content"))
        total += extra
        if text:
            texts.append(text)
        calls = tool_calls_text(message)
        if calls:
            texts.append(calls)
    tools = body.get("tools")
    if isinstance(tools, list):
        fixed, tool_texts = tools_text(tools)
        total += fixed
        texts.extend(tool_texts)
    fmt = body.get("response_format")
    if isinstance(fmt, Mapping) and isinstance(fmt.get("json_schema"), Mapping):
        texts.append(_json(fmt["json_schema"]))
    return total, texts


def estimate_input_tokens(body: Mapping[str, Any]) -> int:
    """Prompt tokens of a chat-completions body, counted synchronously (tests, tools, the CLI;
    the request path uses `TokenCounter.estimate`, which keeps long counts off the loop)."""
    fixed, texts = request_parts(body)
    return fixed + sum(_count_all(texts))


def _json(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # not JSON-encodable (orjson.JSONEncodeError)
        return str(value)
