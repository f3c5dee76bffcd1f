"""Chat-completion chunks -> Anthropic's Messages stream. Pure (no I/O).

    message_start, ping,
    per block (thinking, text, tool_use): content_block_start, content_block_delta*, content_block_stop
    message_delta (stop_reason, usage), message_stop      | error (after a mid-stream failure)

One block is open at a time, as Anthropic sends them: a new kind of delta (text after
thinking, a second tool call) closes the open block and starts the next.
"""

from __future__ import annotations

from typing import Any

from proxy.api.messages_wire import STOP_REASONS, error_event, new_id, sse, usage_of


class MessagesEvents:
    def __init__(self, model: str, input_tokens: int) -> None:
        self.message: dict[str, Any] = {
            "id": new_id("msg"),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage_of(input_tokens, 0),
        }
        self.started = False
        self.index = -1
        self.open: str | None = None  # "text" | "thinking" | "tool:<chat index>"
        self.stop_reason = "end_turn"

    def start(self) -> bytes:
        self.started = True
        return sse("message_start", {"type": "message_start", "message": self.message}) + sse("ping", {"type": "ping"})

    def _open(self, kind: str, block: dict[str, Any]) -> bytes:
        out = self._close()
        self.index += 1
        self.open = kind
        return out + sse("content_block_start", {"type": "content_block_start", "index": self.index, "content_block": block})

    def _close(self) -> bytes:
        if self.open is None:
            return b""
        self.open = None
        return sse("content_block_stop", {"type": "content_block_stop", "index": self.index})

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return sse("content_block_delta", {"type": "content_block_delta", "index": self.index, "delta": delta})

    def chunk(self, chunk: dict[str, Any]) -> bytes:
        out = b"" if self.started else self.start()
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            thinking = delta.get("reasoning_content")
            if isinstance(thinking, str) and thinking:
                if self.open != "thinking":
                    out += self._open("thinking", {"type": "thinking", "thinking": "", "signature": ""})
                out += self._delta({"type": "thinking_delta", "thinking": thinking})
            content = delta.get("content")
            if isinstance(content, str) and content:
                if self.open != "text":
                    out += self._open("text", {"type": "text", "text": ""})
                out += self._delta({"type": "text_delta", "text": content})
            for call in delta.get("tool_calls") or ():
                out += self._call(call)
            reason = choice.get("finish_reason")
            if reason:
                self.stop_reason = STOP_REASONS.get(reason, "end_turn")
        return out

    def _call(self, call: dict[str, Any]) -> bytes:
        out = b""
        kind = f"tool:{call.get('index', 0)}"
        fn = call.get("function") or {}
        if self.open != kind:
            block: dict[str, Any] = {"type": "tool_use", "id": call.get("id") or new_id("toolu"), "name": fn.get("name") or "", "input": {}}
            out += self._open(kind, block)
        if fn.get("arguments"):
            out += self._delta({"type": "input_json_delta", "partial_json": fn["arguments"]})
        return out

    def complete(self, input_tokens: int, output_tokens: int) -> bytes:
        out = (b"" if self.started else self.start()) + self._close()
        delta = {"stop_reason": self.stop_reason, "stop_sequence": None}
        usage = {"input_tokens": input_tokens, "output_tokens": output_tokens}
        out += sse("message_delta", {"type": "message_delta", "delta": delta, "usage": usage})
        return out + sse("message_stop", {"type": "message_stop"})

    def failed(self, message: str) -> bytes:
        out = b"" if self.started else self.start()
        return out + error_event("api_error", message)
