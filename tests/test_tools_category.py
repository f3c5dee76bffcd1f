"""Tools offered and needed -> agentic_tool_use, whatever `tool_choice` says (short of "none").

Asked of the running proxy (POST /v1/route and a chat completion's x-autoroute-category):
"Is it raining in Oslo?" with a `get_weather` tool is a tool call however the caller sets
`tool_choice` — absent (the OpenAI default when tools are given is "auto"), "auto",
"required", or a named function.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

GET_WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ASK = [{"role": "user", "content": "Is it raining in Oslo?"}]
CHOICES: dict[str, Any] = {
    "absent": None,
    "auto": "auto",
    "required": "required",
    "named": {"type": "function", "function": {"name": "get_weather"}},
}


@pytest.mark.parametrize("choice", list(CHOICES), ids=list(CHOICES))
def test_tools_present_and_needed_route_to_agentic_tool_use_whatever_tool_choice_says(proxy_server, upstream, choice: str) -> None:  # type: ignore[no-untyped-def]
    body: dict[str, Any] = {"model": "auto", "messages": ASK, "tools": [GET_WEATHER]}
    if CHOICES[choice] is not None:
        body["tool_choice"] = CHOICES[choice]
    decision = httpx.post(proxy_server.url + "/v1/route", json=body, timeout=10).json()
    assert decision["category"] == "agentic_tool_use", decision
    resp = httpx.post(proxy_server.url + "/v1/chat/completions", json=body, timeout=20)
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-autoroute-category"] == "agentic_tool_use"
    assert resp.json()["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"


def test_the_same_question_without_tools_is_not_a_tool_call(proxy_server) -> None:  # type: ignore[no-untyped-def]
    decision = httpx.post(proxy_server.url + "/v1/route", json={"model": "auto", "messages": ASK}, timeout=10).json()
    assert decision["category"] != "agentic_tool_use", decision
