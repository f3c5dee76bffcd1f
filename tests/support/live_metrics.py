"""A proxy that has served real traffic, scraped: what the dashboard and alerts will see.

`served_scrape()` starts the proxy (key-name labels on, the LLM classifier consulted on every
auto verdict short of certainty, breakers that open after two failures so a 500 is still retried
on its deployment) against the fake upstream, waits for /readyz as a load balancer would (the
translation layer loads in the background), sends the traffic an operator's board is about —
auto-routed and named requests, plain and streamed, a vague ask the LLM classifier is consulted
on, a retried 500, a fallback, a breaker that opens, a key over its rpm, a key with a daily
budget, a cost cap that overrides the router's choice (with the trained router's quality dial,
allowed_models narrow the pool and are no override), a key restricted to some models, a
server-side MCP tool call and a tool call the /mcp gateway refuses — and
returns GET /metrics. No metric setter is called by the test.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import httpx2
import yaml
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from proxy.app import create_app
from tests.conftest import POLICIES, make_settings
from tests.support import mcp_servers
from tests.support.fake_upstream import FakeUpstream, Fault
from tests.support.policies import fast_dispatch, policy_copy
from tests.support.servers import serving

MASTER = "mk-test-master-0123456789abcdef"
ASK = [{"role": "user", "content": "What is the capital of France?"}]
VAGUE = [{"role": "user", "content": "Tell me about it."}]
PROOF = [{"role": "user", "content": "Prove that the square root of 2 is irrational, step by step."}]


def ready(url: str, within_s: float = 60.0) -> bool:
    """Poll /readyz as a load balancer would until it answers 200 (False after `within_s`)."""
    until = time.monotonic() + within_s
    while time.monotonic() < until:
        if httpx.get(url + "/readyz", timeout=10).status_code == 200:
            return True
        time.sleep(0.1)
    return False


def mcp_up(url: str, server: str, within_s: float = 30.0) -> bool:
    until = time.monotonic() + within_s
    while time.monotonic() < until:
        if httpx.get(url + "/readyz", timeout=10).json().get("mcp_servers", {}).get(server) == "up":
            return True
        time.sleep(0.1)
    return False


async def gateway_call(url: str, headers: dict[str, str], tool: str) -> str | None:
    """Call one tool through /mcp with the MCP SDK's client; None when the gateway refuses it."""
    async with Client(streamable_http_client(url + "/mcp", http_client=httpx2.AsyncClient(headers=headers, timeout=30))) as client:
        try:
            result = await client.call_tool(tool, {})
        except MCPError:
            return None
        return "".join(block.text for block in result.content)


def served_scrape(environ: dict[str, str], upstream: FakeUpstream, tmp_path: Path) -> str:
    routing = yaml.safe_load((POLICIES / "routing.yaml").read_text())
    routing["llm_classifier"] = {**routing["llm_classifier"], "enabled": True, "min_confidence": 1.0}
    observability = {**yaml.safe_load((POLICIES / "observability.yaml").read_text()), "key_name_labels": True}
    dispatch = fast_dispatch(cooldown={"failures": 2, "window_s": 60.0, "cooldown_s": 30.0, "failure_ratio": 0.5})
    mcp = {"servers": {"calculator": mcp_servers.stdio_entry("calculator")}}
    files = {"routing.yaml": routing, "observability.yaml": observability, "dispatch.yaml": dispatch, "mcp.yaml": mcp}
    policies = policy_copy(tmp_path, files=files)
    app = create_app(make_settings(policy_dir=policies, master_key=MASTER), environ=environ)
    admin = {"authorization": f"Bearer {MASTER}"}
    upstream.reset()
    with serving(app) as server:
        url = server.url

        def key(**fields: object) -> dict[str, str]:
            resp = httpx.post(url + "/admin/keys", json=fields, headers=admin, timeout=10)
            assert resp.status_code == 201, resp.text
            return {"authorization": f"Bearer {resp.json()['key']}"}

        def chat(headers: dict[str, str], **body: object) -> httpx.Response:
            return httpx.post(url + "/v1/chat/completions", json={"messages": ASK, **body}, headers=headers, timeout=30)

        team = key(name="team-a", budget_usd_day=5.0)
        # routed; a vague ask, so the trained router is below certainty (min_confidence 1.0) and the LLM classifier is consulted
        assert chat(team, model="auto", messages=VAGUE).status_code == 200
        assert chat(team, model="auto", stream=True).status_code == 200  # time to first token
        upstream.script("gpt-4.1-nano", Fault.status(500))
        r = chat(team, model="openai/gpt-4.1-nano")
        assert r.status_code == 200, r.text  # retried after a 500
        plan = httpx.post(url + "/v1/route", json={"model": "auto", "messages": ASK}, headers=team, timeout=10).json()
        primary = yaml.safe_load((POLICIES / "models.yaml").read_text())["models"]
        upstream.script(next(m["api_model_id"] for m in primary if m["id"] == plan["model"]), *[Fault.status(503)] * 5)
        assert chat(team, model="auto").status_code == 200  # the primary's breaker opens; a fallback answers
        assert chat(team, model="auto", messages=PROOF, route={"max_cost_usd": 0.01}).status_code == 200  # the cap overrides the choice
        openai_only = key(name="team-c", allowed_models=["openai/*"])
        assert chat(openai_only, model="auto", messages=[{"role": "user", "content": "Write a haiku about autumn."}]).status_code == 200
        assert mcp_up(url, "calculator"), "the calculator MCP server never came up"
        upstream.tool_calls.append({"name": "calculator__evaluate", "arguments": {"expression": "6 * 7"}})
        assert chat(team, model="openai/gpt-4.1-nano", route={"mcp": ["calculator"]}).status_code == 200  # a server-side tool call
        assert asyncio.run(gateway_call(url, team, "calculator__no_such_tool")) is None  # refused by the /mcp gateway
        limited = key(name="team-b", rpm=1)
        chat(limited, model="openai/gpt-4.1-nano")
        assert chat(limited, model="openai/gpt-4.1-nano").status_code == 429  # over its rpm
        assert ready(url), "/readyz never answered 200"  # the translation layer loads in the background
        httpx.get(url + "/admin/keys", headers=admin, timeout=10)
        text = httpx.get(url + "/metrics", timeout=10).text
    upstream.reset()
    return text
