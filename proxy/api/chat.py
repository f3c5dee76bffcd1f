"""OpenAI chat-completions request validation.

The proxy forwards the client's JSON as it came (unknown fields pass through to OpenAI-
compatible upstreams), so these models only *check* it: a malformed body gets a 400 that
names the field. Validation runs on the parsed dict; the dict, not the model, travels on.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from proxy.errors import InvalidRequest


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


def parse_chat_request(raw: bytes) -> dict[str, Any]:
    """Parse and check a chat-completions body; raise InvalidRequest naming the field."""
    if not raw:
        raise InvalidRequest("Request body is empty; send a JSON chat completion request.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"Request body is not valid JSON ({exc}).", code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequest("Request body must be a JSON object.", code="invalid_json")
    try:
        ChatRequest.model_validate(body)
    except ValidationError as exc:
        raise _field_error(exc) from None
    return body


def _field_error(exc: ValidationError) -> InvalidRequest:
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
