"""What the fake upstream answers (tests/support/fake_upstream.py serves it): the model's text or
tool call, in OpenAI, Anthropic and Gemini formats, plain and streamed; embeddings; the error
bodies of faults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from tests.support.fake_upstream import Fault, Received


def tool_arguments(tool: dict[str, Any]) -> str:
    """A scripted call's arguments as the wire's JSON text (a string is sent as is: broken JSON too)."""
    args = tool["arguments"]
    return args if isinstance(args, str) else orjson.dumps(args).decode()


def fill_key(template: str | None, rec: Received) -> str:
    """`{key}` -> the API key the request carried (as a provider that echoes it would)."""
    if not template:
        return ""
    h = rec.headers
    key = h.get("x-api-key") or h.get("x-goog-api-key") or h.get("authorization", "").removeprefix("Bearer ").strip()
    if not key and "key=" in rec.query:
        key = rec.query.split("key=", 1)[1].split("&", 1)[0]
    return template.replace("{key}", key)


def error_event(fmt: str, message: str) -> bytes:
    if fmt == "anthropic":
        return sse({"type": "error", "error": {"type": "overloaded_error", "message": message}}, "error")
    return sse({"error": {"message": message, "type": "server_error", "code": 500}})


def sse(obj: Any, event: str | None = None) -> bytes:
    prefix = f"event: {event}\n".encode() if event else b""
    return prefix + b"data: " + orjson.dumps(obj) + b"\n\n"


@dataclass
class Answer:
    """What the fake model says: a tool call when tools are offered and the last turn is the
    user's, otherwise text. Token counts are deterministic functions of the request."""

    text: str
    tool: dict[str, Any] | None
    prompt_tokens: int
    completion_tokens: int
    n: int
    finish: str | None = None  # an OpenAI-format finish_reason instead of stop / tool_calls (Fault("length"))

    @classmethod
    def for_request(cls, fmt: str, body: dict, reply: str, n: int, scripted: dict[str, Any] | None = None) -> Answer:
        tools = body.get("tools") or []
        tool = None
        if fmt == "gemini":
            contents = body.get("contents") or []
            last_is_user = bool(contents) and contents[-1].get("role") == "user" and any("text" in p for p in contents[-1].get("parts", []))
            decls = [d for t in tools for d in t.get("function_declarations", t.get("functionDeclarations", []))]
            names = [d["name"] for d in decls]
        else:
            messages = [m for m in body.get("messages") or [] if m.get("role") != "system"]  # a trailing system turn is context
            last_is_user = bool(messages) and messages[-1].get("role") == "user"
            if fmt == "anthropic":
                last_is_user = last_is_user and not any(
                    isinstance(b, dict) and b.get("type") == "tool_result"
                    for b in (messages[-1].get("content") or [])
                    if isinstance(messages[-1].get("content"), list)
                )
            names = [t.get("function", {}).get("name") if fmt == "openai" else t.get("name") for t in tools]
        if scripted is not None:
            tool = {"name": scripted["name"], "arguments": scripted.get("arguments") or {}}
        elif names and last_is_user:
            tool = {"name": names[0], "arguments": {"city": "Paris"}}
        prompt_tokens = max(1, len(orjson.dumps(body)) // 4)
        words = reply.split()
        return cls(reply, tool, prompt_tokens, 5 if tool else len(words), n)

    def full(self, fmt: str, model: str) -> dict[str, Any]:
        if fmt == "openai":
            message: dict[str, Any] = {"role": "assistant", "content": None if self.tool else self.text}
            if self.tool:
                message["tool_calls"] = [
                    {
                        "id": f"call_{self.n}",
                        "type": "function",
                        "function": {"name": self.tool["name"], "arguments": tool_arguments(self.tool)},
                    }
                ]
            return {
                "id": f"chatcmpl-{self.n}",
                "object": "chat.completion",
                "created": 1700000000,
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": self.finish_reason, "logprobs": None}],
                "usage": {
                    "prompt_tokens": self.prompt_tokens,
                    "completion_tokens": self.completion_tokens,
                    "total_tokens": self.prompt_tokens + self.completion_tokens,
                },
            }
        if fmt == "anthropic":
            content = (
                [{"type": "tool_use", "id": f"toolu_{self.n}", "name": self.tool["name"], "input": self.tool["arguments"]}]
                if self.tool
                else [{"type": "text", "text": self.text}]
            )
            return {
                "id": f"msg_{self.n}",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": content,
                "stop_reason": "tool_use" if self.tool else "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": self.prompt_tokens, "output_tokens": self.completion_tokens},
            }
        part = {"functionCall": {"name": self.tool["name"], "args": self.tool["arguments"]}} if self.tool else {"text": self.text}
        return {
            "candidates": [{"content": {"parts": [part], "role": "model"}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {
                "promptTokenCount": self.prompt_tokens,
                "candidatesTokenCount": self.completion_tokens,
                "totalTokenCount": self.prompt_tokens + self.completion_tokens,
            },
            "modelVersion": model,
        }

    @property
    def finish_reason(self) -> str:
        return self.finish or ("tool_calls" if self.tool else "stop")

    def pieces(self, chunks: int) -> list[str]:
        words = self.text.split(" ")
        size = max(1, -(-len(words) // chunks))
        groups = [" ".join(words[i : i + size]) for i in range(0, len(words), size)]
        return [g if i == 0 else " " + g for i, g in enumerate(groups)]

    def events(self, fmt: str, model: str, chunks: int) -> list[bytes]:
        pieces = self.pieces(chunks)
        usage = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }
        if fmt == "openai":
            base = {"id": f"chatcmpl-{self.n}", "object": "chat.completion.chunk", "created": 1700000000, "model": model}
            out = [sse({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})]
            if self.tool:
                call = {"index": 0, "id": f"call_{self.n}", "type": "function", "function": {"name": self.tool["name"], "arguments": ""}}
                out.append(sse({**base, "choices": [{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": None}]}))
                args = {"index": 0, "function": {"arguments": tool_arguments(self.tool)}}
                out.append(sse({**base, "choices": [{"index": 0, "delta": {"tool_calls": [args]}, "finish_reason": None}]}))
            else:
                out += [sse({**base, "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]}) for p in pieces]
            out.append(sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": self.finish_reason}]}))
            out.append(sse({**base, "choices": [], "usage": usage}))
            out.append(b"data: [DONE]\n\n")
            return out
        if fmt == "anthropic":
            start = {
                "type": "message_start",
                "message": {
                    "id": f"msg_{self.n}",
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "usage": {"input_tokens": self.prompt_tokens, "output_tokens": 1},
                },
            }
            out = [sse(start, "message_start")]
            if self.tool:
                out.append(
                    sse(
                        {
                            "type": "content_block_start",
                            "index": 0,
                            "content_block": {"type": "tool_use", "id": f"toolu_{self.n}", "name": self.tool["name"], "input": {}},
                        },
                        "content_block_start",
                    )
                )
                out.append(
                    sse(
                        {
                            "type": "content_block_delta",
                            "index": 0,
                            "delta": {"type": "input_json_delta", "partial_json": orjson.dumps(self.tool["arguments"]).decode()},
                        },
                        "content_block_delta",
                    )
                )
            else:
                out.append(
                    sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}, "content_block_start")
                )
                out += [
                    sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}, "content_block_delta")
                    for p in pieces
                ]
            out.append(sse({"type": "content_block_stop", "index": 0}, "content_block_stop"))
            out.append(
                sse(
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": "tool_use" if self.tool else "end_turn"},
                        "usage": {"output_tokens": self.completion_tokens},
                    },
                    "message_delta",
                )
            )
            out.append(sse({"type": "message_stop"}, "message_stop"))
            return out
        out = []
        meta = {
            "promptTokenCount": self.prompt_tokens,
            "candidatesTokenCount": self.completion_tokens,
            "totalTokenCount": self.prompt_tokens + self.completion_tokens,
        }
        if self.tool:
            part = {"functionCall": {"name": self.tool["name"], "args": self.tool["arguments"]}}
            out.append(
                sse(
                    {
                        "candidates": [{"content": {"parts": [part], "role": "model"}, "finishReason": "STOP", "index": 0}],
                        "usageMetadata": meta,
                        "modelVersion": model,
                    }
                )
            )
            return out
        for i, p in enumerate(pieces):
            cand: dict[str, Any] = {"content": {"parts": [{"text": p}], "role": "model"}, "index": 0}
            event: dict[str, Any] = {"candidates": [cand], "modelVersion": model}
            if i == len(pieces) - 1:
                cand["finishReason"] = "STOP"
                event["usageMetadata"] = meta
            out.append(sse(event))
        return out


EMBED_DIMS = 8


def fake_vector(text: str, dims: int) -> list[float]:
    """Deterministic: the same text always gets the same vector (so tests can compare)."""
    seed = sum(map(ord, text)) or 1
    return [((seed * (i + 7)) % 97) / 97.0 for i in range(dims)]


def embeddings_answer(path: str, body: dict[str, Any]) -> dict[str, Any]:
    """OpenAI /embeddings (`dimensions` honoured, else EMBED_DIMS floats) or Gemini batchEmbedContents."""
    if ":batchEmbedContents" in path:
        out = []
        for r in body.get("requests") or ():
            text = "".join(p.get("text", "") for p in r["content"]["parts"])
            out.append({"values": fake_vector(text, r.get("outputDimensionality") or EMBED_DIMS)})
        return {"embeddings": out}
    items = body.get("input")
    items = [items] if isinstance(items, str) or (items and isinstance(items[0], int)) else items
    dims = body.get("dimensions") or EMBED_DIMS
    data = [{"object": "embedding", "index": i, "embedding": fake_vector(str(t), dims)} for i, t in enumerate(items)]
    tokens = sum(len(t) if isinstance(t, list) else len(str(t).split()) for t in items)
    return {"object": "list", "data": data, "model": body.get("model"), "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def echo_error(fault: Fault, rec: Received) -> dict[str, Any]:
    """A careless provider's error: filler, then the key the request carried."""
    filler = ("The request could not be authorised. " * (1 + int(fault.seconds) // 36))[: int(fault.seconds)]
    message = filler + fill_key("Incorrect API key provided: {key}. You can find your API key in your account settings.", rec)
    return {"type": "error", "error": {"message": message, "type": "invalid_request_error", "code": "invalid_api_key"}}
