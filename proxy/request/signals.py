"""Implicit feedback read off an answer (owns: which outcomes count as a bad routing signal; pure).

A completion that stopped at the token limit (finish_reason "length") is `truncated`; a tool
call whose arguments do not parse as a JSON object is `tool_call_unparsable`. The exchange
keeps the signals; accounting records each as implicit "bad" feedback with the decision's
features (proxy/observe/feedback.py), like an upstream error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from proxy.vocab import ImplicitSignal

_MAPS = (dict, Mapping)  # dict first: an exact type check, before the ABC's (a Python call) for other mappings


def _parses(arguments: Any) -> bool:
    if not isinstance(arguments, str):
        return isinstance(arguments, Mapping)
    try:
        return isinstance(orjson.loads(arguments or "{}"), dict)
    except orjson.JSONDecodeError:
        return False


def _add(out: list[str], signal: ImplicitSignal) -> None:
    if signal not in out:
        out.append(signal)


def completion_signals(body: Mapping[str, Any]) -> list[str]:
    """The signals of a whole chat completion."""
    out: list[str] = []
    for choice in body.get("choices") or ():
        if not isinstance(choice, Mapping):
            continue
        if choice.get("finish_reason") == "length":
            _add(out, ImplicitSignal.TRUNCATED)
        message = choice.get("message")
        calls = message.get("tool_calls") if isinstance(message, Mapping) else None
        for call in calls if isinstance(calls, list) else ():
            fn = call.get("function") if isinstance(call, Mapping) else None
            if isinstance(fn, Mapping) and not _parses(fn.get("arguments")):
                _add(out, ImplicitSignal.TOOL_CALL_UNPARSABLE)
    return out


class StreamSignals:
    """The same signals for a stream: fed every chunk, read at the end (tool-call arguments
    arrive in pieces, keyed by choice and call index)."""

    def __init__(self) -> None:
        self.truncated = False
        self._arguments: dict[tuple[int, int], list[str]] = {}

    def feed(self, chunk: Mapping[str, Any]) -> int:
        """Take one chunk; returns the characters its deltas carry (content and tool-call
        arguments: what `accounting.output_chars` counts), for counting usage a provider omits,
        read in the same pass."""
        chars = 0
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, _MAPS):
                continue
            if choice.get("finish_reason") == "length":
                self.truncated = True
            delta = choice.get("delta")
            if not isinstance(delta, _MAPS):
                continue
            content = delta.get("content")
            if isinstance(content, str):
                chars += len(content)
            calls = delta.get("tool_calls")
            for call in calls if isinstance(calls, list) else ():
                if not isinstance(call, _MAPS):
                    continue
                fn = call.get("function")
                piece = fn.get("arguments") if isinstance(fn, _MAPS) else None
                key = (int(choice.get("index") or 0), int(call.get("index") or 0))
                parts = self._arguments.setdefault(key, [])
                if isinstance(piece, str):
                    parts.append(piece)
                    chars += len(piece)
        return chars

    def signals(self) -> list[str]:
        out: list[str] = []
        if self.truncated:
            _add(out, ImplicitSignal.TRUNCATED)
        if any(not _parses("".join(parts)) for parts in self._arguments.values()):
            _add(out, ImplicitSignal.TOOL_CALL_UNPARSABLE)
        return out
