"""OpenAI chat-completions inbound adapter: wire body -> the canonical request.

`parse_chat_request` checks the JSON (a malformed body gets a 400 that names the field; JSON
nested deeper than MAX_JSON_DEPTH is refused before anything else reads it), and
`to_canonical` builds the one `CanonicalRequest` (proxy/request/canonical.py) everything
downstream reads. Unknown fields pass through to OpenAI-compatible upstreams.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from proxy.errors import InvalidRequest
from proxy.request.canonical import CanonicalRequest

#: Deepest JSON nesting accepted (objects and arrays). A chat body needs ~6 levels, tool
#: schemas a few dozen; deeper input is refused with a 400 at parse (it could not be forwarded:
#: serializers stop at 255 levels).
MAX_JSON_DEPTH = 64


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class TextPart(_Open):
    type: Literal["text"]
    text: str


class ImageURL(_Open):
    url: str
    detail: str | None = None


class ImagePart(_Open):
    type: Literal["image_url"]
    image_url: ImageURL


class OtherPart(_Open):
    type: Literal["input_audio", "file", "refusal"]


ContentPart = Annotated[TextPart | ImagePart | OtherPart, Field(discriminator="type")]


class FunctionCall(_Open):
    name: str
    arguments: str


class ToolCall(_Open):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None


class FunctionDef(_Open):
    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    parameters: dict[str, Any] | None = None


class Tool(_Open):
    type: Literal["function"]
    function: FunctionDef


class StreamOptions(_Open):
    include_usage: bool | None = None


class ChatRequest(_Open):
    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    n: int | None = Field(None, ge=1, le=128)
    stop: str | list[str] | None = None
    seed: int | None = None
    user: str | None = None
    tools: list[Tool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None


def load_json_object(raw: bytes, what: str) -> dict[str, Any]:
    """Any inbound API's body: a JSON object, nested at most MAX_JSON_DEPTH deep; else a 400."""
    if not raw:
        raise InvalidRequest(f"Request body is empty; send a JSON {what} request.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"Request body is not valid JSON ({exc}).", code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequest("Request body must be a JSON object.", code="invalid_json")
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and _too_deep(body, MAX_JSON_DEPTH):
        raise InvalidRequest(f"Request body is nested deeper than {MAX_JSON_DEPTH} levels.", code="invalid_json")
    return body


def parse_chat_request(raw: bytes) -> dict[str, Any]:
    """Parse and check a chat-completions body; raise InvalidRequest naming the field."""
    body = load_json_object(raw, "chat completion")
    try:
        ChatRequest.model_validate(body)
    except ValidationError as exc:
        raise field_error(exc) from None
    cap, other = body.get("max_completion_tokens"), body.get("max_tokens")
    if cap is not None and other is not None and cap != other:
        raise InvalidRequest(
            f"max_tokens ({other}) and max_completion_tokens ({cap}) disagree; send one of them "
            "(max_completion_tokens is the current name).",
            param="max_completion_tokens",
            code="conflicting_parameters",
        )
    return body


_OWN = frozenset(
    {"model", "messages", "max_tokens", "max_completion_tokens", "n", "stream", "tools", "tool_choice", "response_format", "route"}
)


def to_canonical(body: dict[str, Any], headers: Mapping[str, str]) -> CanonicalRequest:
    """The canonical request of a checked chat-completions body (parse_chat_request)."""
    cap_param = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    tools = body.get("tools")
    user = body.get("user")
    stream = bool(body.get("stream"))
    options = body.get("stream_options")
    route = body.get("route")
    return CanonicalRequest(
        model=body["model"],
        messages=tuple(body["messages"]),
        output_cap=body.get(cap_param),
        cap_param=cap_param,
        n=body.get("n") or 1,
        stream=stream,
        include_usage=stream and isinstance(options, dict) and bool(options.get("include_usage")),
        tools=tuple(tools) if tools is not None else None,
        tool_choice=body.get("tool_choice"),
        response_format=body.get("response_format"),
        route=route if route is not None else None,
        task_id=headers.get("x-task-id") or None,
        agent=(user if isinstance(user, str) and user else None) or headers.get("x-agent-id") or None,
        extra=MappingProxyType({k: v for k, v in body.items() if k not in _OWN}),
    )


def _too_deep(value: Any, limit: int) -> bool:
    """Whether containers nest deeper than `limit` (walks containers only, not strings)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


def field_error(exc: ValidationError) -> InvalidRequest:
    errors = exc.errors(include_url=False)
    err = max(errors, key=lambda e: len(e["loc"]))  # the most specific problem
    loc = _clean_loc(tuple(err["loc"]))
    param = ".".join(loc) if loc else None
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 and not _same_field(errors) else ""
    message = f"Invalid value for '{param}': {err['msg']}{more}." if param else f"Invalid request: {err['msg']}{more}."
    return InvalidRequest(message, param=param, code="invalid_value" if err["type"] != "missing" else "missing_required_parameter")


_PART_TYPES = frozenset({"text", "image_url", "input_audio", "file", "refusal"})


def _clean_loc(loc: tuple[Any, ...]) -> list[str]:
    """Drop the union branch names pydantic puts into locations ('str', 'list[...]', and the
    content-part tag after an index: messages.0.content.0.<tag>.field)."""
    out: list[str] = []
    for i, part in enumerate(loc):
        if isinstance(part, str) and ("[" in part or part == "str"):
            continue
        if part in _PART_TYPES and i > 0 and isinstance(loc[i - 1], int) and "content" in loc[:i]:
            continue
        out.append(str(part))
    return out


def _same_field(errors: list[Any]) -> bool:
    first = [p for p in errors[0]["loc"][:2]]
    return all([p for p in e["loc"][:2]] == first for e in errors)
