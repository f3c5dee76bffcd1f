"""OpenAI Responses API <-> chat completions. Pure functions, no I/O.

    to_chat(body, history)        a Responses request -> a chat-completions body
    from_chat(result, ...)        a chat completion   -> a Response object
    ResponsesStream               chat chunks          -> the Responses event sequence

litellm has translation classes for this (LiteLLMCompletionResponsesConfig); measured on this
machine its request translation costs ~60 us against ~3 us here, and it needs litellm imported
(seconds at start-up) for OpenAI-format upstreams that never need it, so the hot path uses these
dict-to-dict functions.
"""

from __future__ import annotations

import os
import time
from typing import Any

import orjson

from proxy.errors import InvalidRequest

# Sampling and labelling fields with the same meaning in both APIs.
_SAME = ("temperature", "top_p", "user", "parallel_tool_calls", "seed", "route")


def new_id(prefix: str) -> str:
    return f"{prefix}_{os.urandom(12).hex()}"


def to_chat(body: dict[str, Any], history: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A checked Responses body -> a chat body. `history`: the stored conversation of
    `previous_response_id` (its messages, its output included)."""
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    messages.extend(history or ())
    messages.extend(input_messages(body.get("input")))
    if not messages:
        raise InvalidRequest("Invalid value for 'input': give the model something to answer.", param="input")
    chat: dict[str, Any] = {"model": body["model"], "messages": messages}
    for name in _SAME:
        if body.get(name) is not None:
            chat[name] = body[name]
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = body["max_output_tokens"]
    effort = (body.get("reasoning") or {}).get("effort")
    if effort:
        chat["reasoning_effort"] = effort
    tools = [_tool(t, i) for i, t in enumerate(body.get("tools") or ())]
    if tools:
        chat["tools"] = tools
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "function":
        chat["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    elif choice is not None:
        chat["tool_choice"] = choice
    fmt = ((body.get("text") or {}).get("format")) or {}
    if fmt.get("type") == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        chat["response_format"] = {"type": "json_schema", "json_schema": schema}
    elif fmt.get("type") == "json_object":
        chat["response_format"] = {"type": "json_object"}
    if body.get("stream"):
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return chat


def input_messages(items: Any) -> list[dict[str, Any]]:
    """Responses `input` (a string, or message / function_call / function_call_output items)."""
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    if not isinstance(items, list):
        raise InvalidRequest("Invalid value for 'input': expected a string or a list of items.", param="input")
    out: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidRequest(f"Invalid value for 'input.{i}': expected an object.", param=f"input.{i}")
        kind = item.get("type") or "message"
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise InvalidRequest(f"Invalid value for 'input.{i}.role': {role!r}.", param=f"input.{i}.role")
            out.append({"role": role, "content": _content(item.get("content"), f"input.{i}.content")})
        elif kind == "function_call":
            call = {"id": item.get("call_id") or item.get("id"), "type": "function"}
            call["function"] = {"name": item.get("name"), "arguments": item.get("arguments") or "{}"}
            last = out[-1] if out else None
            if last and last["role"] == "assistant" and "tool_calls" in last:  # parallel calls: one assistant turn
                last["tool_calls"].append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            text = output if isinstance(output, str) else orjson.dumps(output).decode()
            out.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": text})
        elif kind == "mcp_call":  # an earlier MCP tool loop's call: the call and its result, as a turn of the conversation
            call = {"id": item.get("id"), "type": "function"}
            call["function"] = {"name": f"{item.get('server_label')}__{item.get('name')}", "arguments": item.get("arguments") or "{}"}
            out.append({"role": "assistant", "content": None, "tool_calls": [call]})
            out.append({"role": "tool", "tool_call_id": item.get("id"), "content": item.get("output") or item.get("error") or ""})
        elif kind in ("reasoning", "item_reference", "mcp_list_tools"):
            continue  # nothing a chat model can take
        else:
            raise InvalidRequest(f"Unsupported input item type '{kind}' at 'input.{i}'.", param=f"input.{i}.type")
    return out


def _content(content: Any, where: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequest(f"Invalid value for '{where}': expected a string or a list of parts.", param=where)
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": part.get("text", "")})
        elif kind == "input_image":
            url = part.get("image_url") or part.get("file_id")
            if not url:
                raise InvalidRequest(f"Invalid value for '{where}.{j}': input_image needs image_url.", param=f"{where}.{j}")
            parts.append({"type": "image_url", "image_url": {"url": url, "detail": part.get("detail") or "auto"}})
        elif kind == "refusal":
            parts.append({"type": "text", "text": part.get("refusal", "")})
        else:
            raise InvalidRequest(f"Unsupported content part type {kind!r} at '{where}.{j}'.", param=f"{where}.{j}.type")
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _tool(tool: Any, i: int) -> dict[str, Any]:
    if not isinstance(tool, dict) or tool.get("type") != "function":
        kind = tool.get("type") if isinstance(tool, dict) else tool
        raise InvalidRequest(
            f"Unsupported tool type {kind!r} at 'tools.{i}': autoroute forwards function tools only.", param=f"tools.{i}.type"
        )
    fn = {k: tool[k] for k in ("name", "description", "parameters", "strict") if tool.get(k) is not None}
    return {"type": "function", "function": fn}


# ── results ─────────────────────────────────────────────────────────────────────────────


def usage_of(usage: dict[str, Any] | None) -> dict[str, Any] | None:
    if not usage:
        return None
    i, o = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    return {
        "input_tokens": i,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": o,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": i + o,
    }


def envelope(resp_id: str, body: dict[str, Any], model: str, status: str, created: int | None = None) -> dict[str, Any]:
    """The Response object's fields that do not depend on the output."""
    return {
        "id": resp_id,
        "object": "response",
        "created_at": created or int(time.time()),
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": model,
        "output": [],
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": body.get("reasoning") or {"effort": None, "summary": None},
        "store": body.get("store", True),
        "temperature": body.get("temperature"),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": [_echoed(t) for t in body.get("tools") or ()],
        "top_p": body.get("top_p"),
        "truncation": body.get("truncation", "disabled"),
        "usage": None,
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }


def _echoed(tool: Any) -> Any:
    """A request tool as the Response shows it: an mcp tool's headers (credentials for its
    server_url) are never echoed or stored."""
    if isinstance(tool, dict) and tool.get("type") == "mcp" and tool.get("headers"):
        return {**tool, "headers": None}
    return tool


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": []}] if status == "completed" else []
    return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": content}


def call_item(item_id: str, call_id: str, name: str, arguments: str, status: str = "completed") -> dict[str, Any]:
    return {"type": "function_call", "id": item_id, "call_id": call_id, "name": name, "arguments": arguments, "status": status}


def finish(response: dict[str, Any], finish_reason: str | None) -> None:
    if finish_reason == "length":
        response["status"] = "incomplete"
        response["incomplete_details"] = {"reason": "max_output_tokens"}
    elif finish_reason == "content_filter":
        response["status"] = "incomplete"
        response["incomplete_details"] = {"reason": "content_filter"}
    else:
        response["status"] = "completed"


def from_chat(result: dict[str, Any], body: dict[str, Any], resp_id: str, model: str) -> dict[str, Any]:
    """A chat completion -> a Response object (first choice)."""
    response = envelope(resp_id, body, model, "completed", result.get("created"))
    choice = (result.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    text = message.get("content")
    if isinstance(text, str) and text:
        response["output"].append(message_item(new_id("msg"), text))
    for call in message.get("tool_calls") or ():
        fn = call.get("function") or {}
        response["output"].append(call_item(new_id("fc"), call.get("id") or new_id("call"), fn.get("name", ""), fn.get("arguments") or ""))
    finish(response, choice.get("finish_reason"))
    response["usage"] = usage_of(result.get("usage"))
    return response


def assistant_turn(response: dict[str, Any]) -> dict[str, Any]:
    """A Response's output as the chat assistant message that continues the conversation."""
    text = "".join(p.get("text", "") for item in response["output"] if item["type"] == "message" for p in item["content"])
    calls = [
        {"id": item["call_id"], "type": "function", "function": {"name": item["name"], "arguments": item["arguments"]}}
        for item in response["output"]
        if item["type"] == "function_call"
    ]
    turn: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        turn["tool_calls"] = calls
    return turn
