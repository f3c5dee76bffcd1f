"""/mcp: the MCP gateway, as the `mcp` SDK's client meets it with a virtual key."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import httpx2
import orjson
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.support import mcp_servers
from tests.support.fake_upstream import FakeUpstream
from tests.test_mcp_loop import Proxy, proxy_with


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory, environ: dict[str, str]) -> Iterator[Proxy]:
    servers = {"calculator": mcp_servers.stdio_entry("calculator"), "docs": mcp_servers.stdio_entry("docs_search", keys=["docs-*"])}
    with proxy_with(tmp_path_factory.mktemp("gw"), environ, servers, gateway={"calls_per_minute": 5}) as p:
        yield p


def client(proxy: Proxy, key: str) -> Client:
    http = httpx2.AsyncClient(headers={"authorization": f"Bearer {key}"}, timeout=30)
    return Client(streamable_http_client(proxy.url + "/mcp", http_client=http))


def text(result: Any) -> str:
    return "".join(block.text for block in result.content)


async def test_sdk_client_lists_and_calls_tools_with_a_virtual_key(proxy: Proxy, upstream: FakeUpstream) -> None:
    key, key_id = proxy.new_key()
    async with client(proxy, key) as mcp:
        names = {t.name for t in (await mcp.list_tools()).tools}
        # Every calculator tool, the proxy's own tools; not docs (the server admits only keys named docs-*).
        assert names == {"route", "list_models", "calculator__add", "calculator__multiply", "calculator__evaluate"}
        result = await mcp.call_tool("calculator__evaluate", {"expression": "2 ** 10"})
        assert not result.is_error and text(result) == "1024"
        models = orjson.loads(text(await mcp.call_tool("list_models", {})))
        assert any(m["id"] == "openai/gpt-4.1-nano" for m in models)
        decision = orjson.loads(text(await mcp.call_tool("route", {"messages": [{"role": "user", "content": "Write a haiku about tea."}]})))
        assert decision["model"] in {m["id"] for m in models} and decision["reason"]
    assert upstream.received == []  # the route tool is a dry run
    audit = [d for d in proxy.admin("GET", "/admin/decisions").json()["data"] if d["endpoint"] == "mcp" and d["key_id"] == key_id]
    assert sorted(d["tools"]["tool_calls"][0]["tool"] for d in audit) == ["evaluate", "list_models", "route"]
    metrics = httpx.get(proxy.url + "/metrics").text
    assert 'autoroute_mcp_tool_calls_total{outcome="ok",server="calculator",tool="evaluate",via="gateway"} 1.0' in metrics


async def test_allowed_tools_are_deny_by_default_for_listing_and_calling(proxy: Proxy) -> None:
    key, _ = proxy.new_key(allowed_tools=["calculator__add", "list_models"])
    async with client(proxy, key) as mcp:
        assert {t.name for t in (await mcp.list_tools()).tools} == {"calculator__add", "list_models"}
        assert text(await mcp.call_tool("calculator__add", {"a": 2, "b": 3})) == "5.0"
        for name in ("calculator__evaluate", "route", "docs__search", "nope__tool"):
            with pytest.raises(MCPError) as info:
                await mcp.call_tool(name, {"expression": "1+1"})
            assert f"Unknown tool: {name}" in info.value.message  # not allowed looks exactly like absent


async def test_a_server_admits_keys_by_name(proxy: Proxy) -> None:
    key, _ = proxy.new_key(name="docs-reader")
    async with client(proxy, key) as mcp:
        assert {"docs__search", "docs__read_document"} <= {t.name for t in (await mcp.list_tools()).tools}
        hits = orjson.loads(text(await mcp.call_tool("docs__search", {"query": "capital of France"})))
        assert hits[0]["name"] == "mcp.md"


async def test_tool_calls_are_rate_limited_per_key(proxy: Proxy) -> None:
    key, _ = proxy.new_key()
    other, _ = proxy.new_key()
    if time.time() % 60 > 50:  # keep the five calls within one minute window
        time.sleep(61 - time.time() % 60)
    async with client(proxy, key) as mcp:
        for _ in range(5):
            await mcp.call_tool("calculator__add", {"a": 1, "b": 1})
        with pytest.raises(MCPError) as info:
            await mcp.call_tool("calculator__add", {"a": 1, "b": 1})
        assert "Rate limit" in info.value.message
    async with client(proxy, other) as mcp:  # another key has its own budget of calls
        assert text(await mcp.call_tool("calculator__add", {"a": 1, "b": 1})) == "2.0"


def test_unauthenticated_callers_get_a_401_in_the_openai_shape(proxy: Proxy) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    resp = httpx.post(proxy.url + "/mcp", json=body, headers={"accept": "application/json, text/event-stream"})
    assert resp.status_code == 401 and resp.json()["error"]["type"] == "authentication_error"
    resp = httpx.post(
        proxy.url + "/mcp", json=body, headers={"authorization": "Bearer sk-ar-wrong", "accept": "application/json, text/event-stream"}
    )
    assert resp.status_code == 401
