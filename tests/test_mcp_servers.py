"""proxy/mcp/servers.py against real example servers over stdio (no proxy): listing, refresh on
list-changed, a server that is down, caps on results."""

from __future__ import annotations

import asyncio
from typing import Any

from proxy.mcp.servers import McpServers
from proxy.policy.mcp import McpPolicy
from tests.support import mcp_servers


def servers(entries: dict[str, Any], **policy: Any) -> McpServers:
    seen: list[tuple[str, bool]] = []
    s = McpServers(
        McpPolicy.model_validate({"servers": entries, **policy}), {"PATH": "/usr/bin:/bin"}, on_status=lambda n, up: seen.append((n, up))
    )
    s.seen = seen  # type: ignore[attr-defined]
    return s


async def eventually(check: Any, seconds: float = 10.0) -> bool:
    for _ in range(int(seconds / 0.05)):
        if check():
            return True
        await asyncio.sleep(0.05)
    return False


async def test_tools_are_listed_and_refreshed_when_the_server_says_they_changed() -> None:
    s = servers({"crashy": mcp_servers.stdio_entry("crashy")}, tools_ttl_s=300)  # the TTL cannot be what refreshes
    s.start()
    try:
        conn = s.connections["crashy"]
        assert await conn.wait_ready(20)
        assert sorted(t.qualified for t in conn.tools) == ["crashy__crash", "crashy__echo", "crashy__grow", "crashy__hang"]
        assert (await conn.call("grow", {}, timeout_s=10, max_chars=100)).text == "grown"
        assert await eventually(lambda: "crashy__extra" in {t.qualified for t in conn.tools})
        assert s.seen[:2] == [("crashy", False), ("crashy", True)]  # type: ignore[attr-defined]
    finally:
        await s.stop()


async def test_a_server_that_cannot_start_is_down_with_no_tools_and_calls_fail_cleanly() -> None:
    s = servers(
        {
            "ghost": {"transport": "stdio", "command": "/nonexistent/mcp-server", "connect_timeout_s": 2},
            "calc": mcp_servers.stdio_entry("calculator"),
        }
    )
    s.start()
    try:
        calc, ghost = s.connections["calc"], s.connections["ghost"]
        assert await calc.wait_ready(20)  # one bad server does not hold up the others
        assert await eventually(lambda: ghost.last_error is not None)
        assert not ghost.up and ghost.tools == []
        assert s.status() == {"ghost": False, "calc": True}
        result = await ghost.call("anything", {}, timeout_s=5, max_chars=100)
        assert result.outcome == "server_down" and result.text.startswith("Error: the tool server 'ghost' is unavailable")
        assert [t.server for t in s.visible("any-key", lambda name: True)] == ["calc"] * 3
    finally:
        await s.stop()


async def test_results_are_cut_at_the_size_cap_and_keys_filter_by_name() -> None:
    s = servers({"crashy": mcp_servers.stdio_entry("crashy", keys=["team-*"])})
    s.start()
    try:
        conn = s.connections["crashy"]
        assert await conn.wait_ready(20)
        result = await conn.call("echo", {"text": "x" * 5000}, timeout_s=10, max_chars=1000)
        assert result.truncated and result.chars == 5000 and result.text.startswith("x" * 1000)
        assert result.text.endswith("[result cut at 1000 of 5000 characters]") and len(result.text) < 1100
        assert s.visible("team-a", lambda n: True) and s.visible("other", lambda n: True) == []
        assert [t.name for t in s.visible("team-a", lambda n: n.endswith("__echo"))] == ["echo"]
    finally:
        await s.stop()


def test_a_servers_tool_list_is_bounded() -> None:
    # A server named by URL in a request chose how many tools every model call of the loop
    # carried, and how big their schemas were: 100,000 tools went into each prompt.
    from mcp import types as mcp_types

    from proxy.mcp.servers import MAX_SCHEMA_BYTES, MAX_TOOLS, exposed_tools

    schema = {"type": "object", "properties": {"q": {"type": "string"}}}
    huge = {"type": "object", "properties": {f"p{i}": {"type": "string", "description": "x" * 100} for i in range(MAX_SCHEMA_BYTES // 100)}}
    listed = [mcp_types.Tool(name="big", input_schema=huge, description="d" * 5000)]
    listed += [mcp_types.Tool(name=f"t{i}", input_schema=schema, description="d" * 5000) for i in range(MAX_TOOLS * 3)]
    listed += [mcp_types.Tool(name="n" * 200, input_schema=schema), mcp_types.Tool(name="a__b", input_schema=schema)]
    tools = exposed_tools("wiki", listed, ["*"])
    assert [t.name for t in tools] == [f"t{i}" for i in range(MAX_TOOLS)]  # the schema too big and the rest left out
    assert all(len(t.openai()["function"]["description"]) <= 1024 and len(t.description) <= 1024 for t in tools)
    only = exposed_tools("wiki", listed, ["t1*"])
    assert [t.name for t in only] == [f"t{i}" for i in range(MAX_TOOLS * 3) if str(i).startswith("1")]  # the patterns still apply
