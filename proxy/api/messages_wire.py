"""Anthropic Messages API <-> chat completions. Pure functions, no I/O.

    to_chat(body, keep_thinking)   a Messages request -> a chat-completions body
    from_chat(result, ...)         a chat completion  -> an Anthropic message
    error_body(exc)                a ProxyError       -> Anthropic's error shape

litellm's Anthropic adapter (litellm.llms.anthropic.pass_through.adapters, LiteLLMAnthropicMessagesAdapter)
does the same through pydantic objects: ~50 us a request against ~3 us here (measured), so it
stays off the hot path.
"""

from __future__ import annotations

import os
from typing import Any

import orjson

from proxy.errors import InvalidRequest, ProxyError

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

#: Our HTTP status -> Anthropic's error type.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "overloaded_error",
}


def new_id(prefix: str) -> str:
    return f"{prefix}_{os.urandom(12).hex()}"


def error_body(exc: ProxyError) -> bytes:
    kind = ERROR_TYPES.get(exc.status, "api_error")
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": exc.message}})


def error_event(kind: str, message: str) -> bytes:
    return sse("error", {"type": "error", "error": {"type": kind, "message": message}})


def sse(event: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def _need(cond: bool, message: str, param: str) -> None:
    if not cond:
        raise InvalidRequest(message, param=param)


def to_chat(body: dict[str, Any], keep_thinking: bool = False) -> dict[str, Any]:
    """A Messages body -> a chat body. `keep_thinking`: pass `thinking` on (Anthropic models)."""
    model = body.get("model")
    _need(isinstance(model, str) and bool(model), 'model: field required (a Claude model id, a registry id or "auto").', "model")
    max_tokens = body.get("max_tokens")
    _need(
        isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and max_tokens >= 1,
        "max_tokens: must be an integer >= 1.",
        "max_tokens",
    )
    raw_messages = body.get("messages")
    _need(isinstance(raw_messages, list) and bool(raw_messages), "messages: must be a non-empty list.", "messages")
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if system:
        text = system if isinstance(system, str) else "\n\n".join(_text_of(system, "system"))
        messages.append({"role": "system", "content": text})
    for i, msg in enumerate(raw_messages or ()):
        # Claude Code also sends mid-conversation `system` turns (agent lists, reminders).
        _need(
            isinstance(msg, dict) and msg.get("role") in ("user", "assistant", "system"),
            f"messages.{i}.role: must be 'user', 'assistant' or 'system'.",
            f"messages.{i}.role",
        )
        messages.extend(_turn(msg, f"messages.{i}"))
    chat: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": max_tokens}
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            _need(isinstance(body[name], int | float) and 0 <= body[name] <= 1, f"{name}: must be a number between 0 and 1.", name)
            chat[name] = body[name]
    stops = body.get("stop_sequences")
    if stops:
        _need(
            isinstance(stops, list) and all(isinstance(s, str) for s in stops),
            "stop_sequences: must be a list of strings.",
            "stop_sequences",
        )
        chat["stop"] = stops
    tools = body.get("tools")
    if tools:
        chat["tools"] = [_tool(t, f"tools.{i}") for i, t in enumerate(tools)]
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        kind = choice.get("type")
        chat["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}.get(str(kind)) or {
            "type": "function",
            "function": {"name": choice.get("name")},
        }
        if choice.get("disable_parallel_tool_use"):
            chat["parallel_tool_calls"] = False
    user = (body.get("metadata") or {}).get("user_id")
    if isinstance(user, str) and user:
        chat["user"] = user
    if keep_thinking and isinstance(body.get("thinking"), dict):
        chat["thinking"] = body["thinking"]
    if "route" in body:
        chat["route"] = body["route"]
    if body.get("stream"):
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return chat


def _text_of(blocks: Any, where: str) -> list[str]:
    _need(isinstance(blocks, list), f"{where}: must be a string or a list of text blocks.", where)
    return [b.get("text", "") for b in blocks if isinstance(b, dict) and b.get("type") == "text"]


def _turn(msg: dict[str, Any], where: str) -> list[dict[str, Any]]:
    role, content = msg["role"], msg.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if role == "system":
        return [{"role": "system", "content": "\n\n".join(_text_of(content, f"{where}.content"))}]
    _need(isinstance(content, list), f"{where}.content: must be a string or a list of content blocks.", f"{where}.content")
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for j, block in enumerate(content or ()):
        kind = block.get("type") if isinstance(block, dict) else None
        at = f"{where}.content.{j}"
        if kind == "text":
            parts.append({"type": "text", "text": block.get("text", "")})
        elif kind == "image":
            parts.append({"type": "image_url", "image_url": {"url": _image_url(block.get("source") or {}, at)}})
        elif kind == "document":
            source = block.get("source") or {}
            _need(source.get("type") == "text", f"{at}: only text documents are supported.", at)
            parts.append({"type": "text", "text": source.get("data", "")})
        elif kind == "tool_use" and role == "assistant":
            args = orjson.dumps(block.get("input") or {}).decode()
            calls.append({"id": block.get("id"), "type": "function", "function": {"name": block.get("name"), "arguments": args}})
        elif kind == "tool_result" and role == "user":
            inner = block.get("content")
            text = inner if isinstance(inner, str) else "\n".join(_text_of(inner or [], f"{at}.content"))
            if block.get("is_error"):
                text = f"[tool error] {text}"
            results.append({"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": text})
        elif kind in ("thinking", "redacted_thinking"):
            continue  # a model's earlier thinking: not input a chat model takes
        else:
            raise InvalidRequest(f"{at}.type: unsupported content block {kind!r} in a {role} turn.", param=f"{at}.type")
    out: list[dict[str, Any]] = list(results)  # tool results answer the previous assistant turn: they come first
    if calls:
        text = "".join(p["text"] for p in parts if p["type"] == "text")
        out.append({"role": "assistant", "content": text or None, "tool_calls": calls})
    elif parts:
        simple = all(p["type"] == "text" for p in parts)
        out.append({"role": role, "content": "".join(p["text"] for p in parts) if simple else parts})
    elif not results:
        out.append({"role": role, "content": ""})
    return out


def _image_url(source: dict[str, Any], where: str) -> str:
    if source.get("type") == "base64":
        _need(bool(source.get("media_type")) and bool(source.get("data")), f"{where}.source: base64 needs media_type and data.", where)
        return f"data:{source['media_type']};base64,{source['data']}"
    if source.get("type") == "url" and source.get("url"):
        return str(source["url"])
    raise InvalidRequest(f"{where}.source: an image source is base64 (media_type, data) or url.", param=f"{where}.source")


def _tool(tool: Any, where: str) -> dict[str, Any]:
    _need(isinstance(tool, dict) and bool(tool.get("name")), f"{where}: a tool needs a name.", where)
    kind = tool.get("type")
    _need(
        kind in (None, "custom"), f"{where}.type: server tool {kind!r} is not supported; autoroute forwards custom tools.", f"{where}.type"
    )
    fn = {"name": tool["name"], "parameters": tool.get("input_schema") or {"type": "object", "properties": {}}}
    if tool.get("description"):
        fn["description"] = tool["description"]
    return {"type": "function", "function": fn}


def usage_of(prompt: int, completion: int) -> dict[str, int]:
    return {"input_tokens": prompt, "output_tokens": completion, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}


def from_chat(result: dict[str, Any], model: str, usage: tuple[int, int]) -> dict[str, Any]:
    choice = (result.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    for block in message.get("thinking_blocks") or ():
        if isinstance(block, dict) and block.get("type") in ("thinking", "redacted_thinking"):
            content.append(block)
    text = message.get("content")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or ():
        fn = call.get("function") or {}
        content.append(
            {"type": "tool_use", "id": call.get("id") or new_id("toolu"), "name": fn.get("name"), "input": parse_args(fn.get("arguments"))}
        )
    return {
        "id": new_id("msg"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": STOP_REASONS.get(choice.get("finish_reason") or "stop", "end_turn"),
        "stop_sequence": None,
        "usage": usage_of(*usage),
    }


def parse_args(arguments: Any) -> Any:
    if isinstance(arguments, dict):
        return arguments
    try:
        value = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return {"_raw": arguments}
    return value if isinstance(value, dict) else {"value": value}
