"""Plain chat requests (text turns, a few sampling fields) to Anthropic Messages and Gemini
generateContent bodies without litellm.

The profile of `auto` routed to Anthropic (py-spy under wrk, real Redis) put ~14% of the
proxy's CPU in building the request with litellm: `map_openai_params`, `transform_request`, and
`validate_environment`, which looks the model up in litellm's capability map several times per
call (`is_effort_used`, `_supports_model_capability`, `get_model_info`) to decide on beta
headers a text-only request never gets. For the common request these functions build the same
body and headers directly; and since neither they nor the plain answers (proxy/providers/plain.py)
need litellm, a process whose traffic is plain never imports it (~120 MB).

litellm's translation depends on the model (newer Claude models drop `temperature`/`top_p`,
Gemini 3 forces `temperature` 1.0, Gemma has no system role), so the fast path is only taken for
the model families in `ANTHROPIC_MODELS` / `GEMINI_MODELS`, each checked against litellm for every
name its bundled map knows (a dated `-YYYYMMDD` suffix counts as its family). It takes: optional
leading system messages, then user and assistant turns that
alternate starting and ending with the user, every message `{"role", "content"}` with non-blank string
content; parameters limited to the output cap, `temperature`, `top_p` and `stop`. Anything else
returns None and goes through litellm as before. A parity test checks, for every model of those
providers in the bundled registry, that both paths give the same body, parameters and headers
(tests/test_providers_plain_request.py).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

ANTHROPIC_VERSION = "2023-06-01"
ANTHROPIC_MODELS = frozenset({
    "claude-sonnet-4", "claude-opus-4", "claude-sonnet-4-5", "claude-sonnet-4-6", "claude-opus-4-5", "claude-opus-4-6",
    "claude-haiku-4-5",
})  # fmt: skip
GEMINI_MODELS = frozenset({"gemini-2.5-flash", "gemini-2.5-flash-lite", "gemini-2.5-pro"})
_DATED = re.compile(r"-\d{8}$")
_PARAMS = frozenset({"max_tokens", "max_completion_tokens", "temperature", "top_p", "stop"})
_TURN = {"user": "assistant", "assistant": "user"}

Built = tuple[dict[str, Any], dict[str, Any]]  # (payload, the mapped params litellm calls optional_params)


def _text(message: Any) -> str | None:
    if not isinstance(message, dict) or message.keys() != {"role", "content"}:
        return None
    content = message["content"]
    return content if isinstance(content, str) and content.strip() else None


def _split(messages: Any) -> tuple[list[str], list[tuple[str, str]]] | None:
    """(system texts, [(role, text)]) of a plain conversation, else None."""
    if not isinstance(messages, list) or not messages:
        return None
    system: list[str] = []
    turns: list[tuple[str, str]] = []
    expected = "user"
    for message in messages:
        text = _text(message)
        if text is None:
            return None
        role = message["role"]
        if role == "system" and not turns:
            system.append(text)
        elif role == expected:
            turns.append((role, text))
            expected = _TURN[role]
        else:
            return None
    # ends with the user: litellm trims the trailing whitespace of a final assistant turn (a prefill)
    return (system, turns) if turns and turns[-1][0] == "user" else None


def _common(params: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
    """(output cap, sampling fields) of plain parameters, else None."""
    if not params.keys() <= _PARAMS:
        return None
    cap = params.get("max_tokens", params.get("max_completion_tokens"))
    if "max_tokens" in params and "max_completion_tokens" in params:
        return None
    if not isinstance(cap, int) or isinstance(cap, bool) or cap <= 0:
        return None
    out: dict[str, Any] = {}
    for name in ("temperature", "top_p"):
        if name in params:
            value = params[name]
            if not isinstance(value, int | float) or isinstance(value, bool):
                return None
            out[name] = value
    if "stop" in params:
        stop = params["stop"]
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not stops or not all(isinstance(s, str) and s.strip() for s in stops):
            return None
        out["stop_sequences"] = list(stops)
    return cap, out


@lru_cache(maxsize=256)  # a handful of deployed model ids, each resolved on every request
def anthropic_family(model: str) -> str:
    return _DATED.sub("", model)


def anthropic_request(model: str, messages: Any, params: dict[str, Any]) -> Built | None:
    if anthropic_family(model) not in ANTHROPIC_MODELS:
        return None
    split, common = _split(messages), _common(params)
    if split is None or common is None:
        return None
    system, turns = split
    cap, sampling = common
    op = {"max_tokens": cap, **sampling}
    payload: dict[str, Any] = {
        "model": model,
        "messages": [{"role": role, "content": [{"type": "text", "text": text}]} for role, text in turns],
        **op,
    }
    if system:
        payload["system"] = [{"type": "text", "text": text} for text in system]
    return payload, op


def anthropic_headers(api_key: str) -> dict[str, str]:
    headers = {"anthropic-version": ANTHROPIC_VERSION, "accept": "application/json", "content-type": "application/json"}
    if api_key:
        headers["x-api-key"] = api_key
    return headers


def gemini_request(model: str, messages: Any, params: dict[str, Any]) -> Built | None:
    if model not in GEMINI_MODELS:
        return None
    split, common = _split(messages), _common(params)
    if split is None or common is None:
        return None
    system, turns = split
    cap, sampling = common
    op = {"max_output_tokens": cap, **sampling}
    payload: dict[str, Any] = {
        "contents": [{"role": "model" if role == "assistant" else "user", "parts": [{"text": text}]} for role, text in turns]
    }
    if system:
        payload["system_instruction"] = {"parts": [{"text": text} for text in system]}
    payload["generationConfig"] = dict(op)
    return payload, op
