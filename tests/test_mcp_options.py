"""route.mcp / route.context parsing, the Responses `mcp` tool mapping, and the context assembler
(pure: no servers, no proxy)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from proxy.errors import InvalidRequest, PermissionDenied
from proxy.mcp import context
from proxy.mcp.options import ToolRequest, from_responses_tools, take_loop_options
from proxy.policy import load_policy
from proxy.policy.mcp import McpPolicy
from proxy.policy.prompts import PromptsPolicy

POLICY = McpPolicy.model_validate(
    {
        "servers": {"calculator": {"transport": "stdio", "command": "x"}, "docs": {"transport": "http", "url": "http://d/mcp"}},
        "request_url_hosts": ["tools.internal"],
    }
)


def take(route: Any) -> Any:
    ask = take_loop_options(route, POLICY)
    assert "mcp" not in ask.route and "context" not in ask.route  # ours: never reaches routing or the upstream
    assert {k: v for k, v in route.items() if k not in ("mcp", "context")} == dict(ask.route)
    return ask


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (True, ToolRequest()),
        (["docs"], ToolRequest(servers=("docs",))),
        (
            {"servers": ["calculator"], "allowed_tools": ["calculator__add"], "max_depth": 2},
            ToolRequest(("calculator",), (), ("calculator__add",), 2),
        ),
        ({"servers": [{"label": "wiki", "url": "https://tools.internal/mcp"}]}, ToolRequest((), (("wiki", "https://tools.internal/mcp"),))),
    ],
)
def test_route_mcp_forms(spec: Any, expected: ToolRequest) -> None:
    assert take({"mcp": spec}).tools == expected


def test_no_mcp_means_no_loop_and_other_route_fields_stay() -> None:
    route = {"preference": "cheapest"}
    ask = take_loop_options(route, POLICY)
    assert ask.tools is None and ask.context is None and ask.route is route
    assert take_loop_options(None, POLICY).route is None
    assert take({"mcp": False, "preference": "cheapest"}).tools is None


@pytest.mark.parametrize(
    ("spec", "param"),
    [
        ("calculator", "route.mcp"),
        ({"servers": "calculator"}, "route.mcp.servers"),
        ({"servers": ["nope"]}, "route.mcp.servers.0"),
        ({"servers": [{"command": "sh", "args": ["-c", "id"]}]}, "route.mcp.servers.0"),  # a request never starts a process
        ({"servers": [{"label": "calculator", "url": "https://tools.internal/mcp"}]}, "route.mcp.servers.0.label"),  # no shadowing
        ({"servers": [{"label": "x", "url": "file:///etc/passwd"}]}, "route.mcp.servers.0.url"),
        ({"max_depth": 0}, "route.mcp.max_depth"),
        ({"max_depth": True}, "route.mcp.max_depth"),
        ({"allowed_tools": "calculator__*"}, "route.mcp.allowed_tools"),
        ({"timeout": 999}, "route.mcp.timeout"),
    ],
)
def test_bad_route_mcp_is_a_400_naming_the_field(spec: Any, param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        take({"mcp": spec})
    assert info.value.param == param


def test_request_urls_only_on_allowed_hosts() -> None:
    for url in ("http://169.254.169.254/latest", "http://tools.internal.evil.com/mcp", "http://127.0.0.1:8080/mcp"):
        with pytest.raises(PermissionDenied) as info:
            take({"mcp": {"servers": [{"label": "x", "url": url}]}})
        assert info.value.code == "mcp_url_not_allowed"


def test_a_plain_host_entry_allows_only_the_default_ports() -> None:
    # An entry used to allow every port of its host: a request could aim the proxy at Redis,
    # an admin port or any other service on the tool server's machine.
    allowed = take({"mcp": {"servers": [{"label": "x", "url": "https://tools.internal/mcp"}]}})
    assert allowed is not None
    for url in ("http://tools.internal:6379/", "https://tools.internal:8443/mcp", "https://tools.internal:0/mcp"):
        with pytest.raises(PermissionDenied) as info:
            take({"mcp": {"servers": [{"label": "x", "url": url}]}})
        assert info.value.code == "mcp_url_not_allowed"
    with pytest.raises(InvalidRequest):
        take({"mcp": {"servers": [{"label": "x", "url": "https://tools.internal:99999/mcp"}]}})


def test_host_port_and_any_port_entries() -> None:
    policy = McpPolicy.model_validate({"request_url_hosts": ["a.internal:8080", "B.internal:*", "[::1]:9000"]})
    assert policy.allows_url("a.internal", 8080, "http")
    assert not policy.allows_url("a.internal", None, "https")
    assert not policy.allows_url("a.internal", 8081, "http")
    assert policy.allows_url("b.internal", 12345, "https")
    assert policy.allows_url("::1", 9000, "http") and not policy.allows_url("::1", 9001, "http")
    for bad in ("a.internal:port", "a.internal:70000", "user@a.internal", ""):
        with pytest.raises(ValueError):
            McpPolicy.model_validate({"request_url_hosts": [bad]})


def test_a_url_with_whitespace_or_control_characters_is_a_400() -> None:
    # urlsplit drops tabs and newlines before it reads the host, the HTTP client does not: the
    # host checked was not the URL used (here the client refused it, after a 5 s connect wait).
    for url in ("https://tools.inte\trnal/mcp", "https://tools.internal/m\ncp", "https://tools.internal /mcp"):
        with pytest.raises(InvalidRequest) as info:
            take({"mcp": {"servers": [{"label": "x", "url": url}]}})
        assert info.value.param == "route.mcp.servers.0.url"


def test_request_headers_cannot_set_the_host_or_the_framing() -> None:
    # They are the HTTP client's default headers and went out as given: Host named another site
    # behind the allowed address (past request_url_hosts), and Content-Length with
    # Transfer-Encoding framed one request two ways (smuggling through a front proxy there).
    for name in ("Host", "content-length", "Transfer-Encoding", "Connection", "TE", "Upgrade", "Proxy-Authorization"):
        server = {"label": "x", "url": "https://tools.internal/mcp", "headers": {name: "1"}}
        with pytest.raises(InvalidRequest) as info:
            take({"mcp": {"servers": [server]}})
        assert info.value.param == f"route.mcp.servers.0.headers.{name}"
        tool = {"type": "mcp", "server_label": "x", "server_url": "https://tools.internal/mcp", "headers": {name: "1"}}
        with pytest.raises(InvalidRequest) as info:
            from_responses_tools([tool], POLICY)
        assert info.value.param == f"tools.0.headers.{name}"
    assert take({"mcp": {"servers": [{"label": "x", "url": "https://tools.internal/mcp", "headers": {"Authorization": "Bearer t"}}]}})


def test_a_request_names_at_most_16_servers_by_url() -> None:
    # Each is an MCP session the proxy opens for the request: 200 of them on one allowed host took
    # 6.75 s of one request and offered the model 800 tools (probe against examples' memory server).
    servers = [{"label": f"s{i}", "url": "https://tools.internal/mcp"} for i in range(17)]
    with pytest.raises(InvalidRequest) as info:
        take({"mcp": {"servers": servers}})
    assert info.value.param == "route.mcp.servers"
    assert take({"mcp": {"servers": servers[:16]}}).tools is not None
    tools = [{"type": "mcp", "server_label": s["label"], "server_url": s["url"]} for s in servers]
    with pytest.raises(InvalidRequest) as info:
        from_responses_tools(tools, POLICY)
    assert info.value.param == "tools.16.server_url"


def test_route_context_must_be_boolean() -> None:
    assert take({"context": True}).context is True
    with pytest.raises(InvalidRequest):
        take({"context": "yes"})


def test_responses_mcp_tools_become_route_mcp() -> None:
    fn = {"type": "function", "name": "mine", "parameters": {}}
    tools = [
        fn,
        {"type": "mcp", "server_label": "calculator", "allowed_tools": ["add"], "require_approval": "never"},
        {"type": "mcp", "server_label": "wiki", "server_url": "https://tools.internal/mcp", "allowed_tools": {"tool_names": ["ask"]}},
        {"type": "mcp", "server_label": "docs"},
    ]
    others, spec = from_responses_tools(tools)
    assert others == [fn]
    assert spec == {
        "servers": ["calculator", {"label": "wiki", "url": "https://tools.internal/mcp"}, "docs"],
        "allowed_tools": ["calculator__add", "wiki__ask", "docs__*"],
    }
    assert take({"mcp": spec}).tools is not None
    assert from_responses_tools([fn]) == ([fn], None)
    with pytest.raises(InvalidRequest):
        from_responses_tools([{"type": "mcp", "server_label": "calculator", "require_approval": "always"}])


def test_tool_patterns_are_bounded_so_matching_them_cannot_stall_the_proxy() -> None:
    # Matching is fnmatch per tool per pattern, on the event loop: 200,000 short names (a 2 MB body)
    # took 13.7 s for three tools, and one 200 KB name of "[a" repeated took 508 s (translate is
    # quadratic on unclosed brackets). A list or a name beyond MCP's own sizes is a 400.
    with pytest.raises(InvalidRequest) as info:
        take({"mcp": {"allowed_tools": [f"calculator__t{i}" for i in range(257)]}})
    assert info.value.param == "route.mcp.allowed_tools"
    with pytest.raises(InvalidRequest) as info:
        take({"mcp": {"allowed_tools": ["calculator__" + "[a" * 200]}})
    assert info.value.param == "route.mcp.allowed_tools"
    assert take({"mcp": {"allowed_tools": [f"calculator__t{i}" for i in range(256)]}}).tools is not None
    many = {"type": "mcp", "server_label": "calculator", "allowed_tools": [f"t{i}" for i in range(257)]}
    long = {"type": "mcp", "server_label": "calculator", "allowed_tools": {"tool_names": ["[a" * 65]}}
    for tool in (many, long):
        with pytest.raises(InvalidRequest) as info:
            from_responses_tools([tool], POLICY)
        assert info.value.param == "tools.0.allowed_tools"


def test_a_read_only_filter_is_refused_not_ignored() -> None:
    # The proxy does not know which tools are read-only: ignoring the filter offered every tool.
    tool = {"type": "mcp", "server_label": "calculator", "allowed_tools": {"read_only": True}}
    with pytest.raises(InvalidRequest) as info:
        from_responses_tools([tool], POLICY)
    assert info.value.param == "tools.0.allowed_tools"
    assert from_responses_tools([{**tool, "allowed_tools": {"read_only": False, "tool_names": ["add"]}}], POLICY)[1] is not None


def test_a_server_label_given_twice_is_a_400() -> None:
    # Two URL servers under one label: the second got the first one's headers (its credentials).
    url = {"label": "wiki", "url": "https://tools.internal/a", "headers": {"authorization": "Bearer for-a"}}
    with pytest.raises(InvalidRequest) as info:
        take({"mcp": {"servers": [url, {"label": "wiki", "url": "https://tools.internal/b"}]}})
    assert info.value.param == "route.mcp.servers.1.label"
    wiki = {"type": "mcp", "server_label": "wiki", "server_url": "https://tools.internal/a", "headers": {"authorization": "Bearer a"}}
    for first, second in (
        ({"server_label": "calculator"},) * 2,
        (wiki, {"server_label": "wiki", "server_url": "https://tools.internal/b"}),
    ):
        with pytest.raises(InvalidRequest) as info:
            from_responses_tools([{"type": "mcp", **first}, {"type": "mcp", **second}], POLICY)
        assert info.value.param == "tools.1.server_label"


PROMPTS = PromptsPolicy.model_validate(
    {
        "categories": {"complex_coding": {"system": "You are an expert engineer.", "tools": ["docs__*"]}},
        "default": {"system": "Be helpful.", "tools": None},
    }
)


def test_context_keeps_the_clients_system_prompt_and_puts_the_category_prompt_first() -> None:
    messages = ({"role": "system", "content": "Answer in French."}, {"role": "user", "content": "hi"})
    found = context.system_prompt("complex_coding", PROMPTS)
    assert found == ("You are an expert engineer.", "complex_coding")
    out = context.with_system_prompt(messages, found[0])
    assert [m["content"] for m in out] == ["You are an expert engineer.", "Answer in French.", "hi"]
    assert context.system_prompt("qa_retrieval", PROMPTS) == ("Be helpful.", "default")
    assert context.system_prompt("qa_retrieval", PromptsPolicy()) is None


def test_context_opt_in_order_and_tool_subsets() -> None:
    assert context.wanted(None, False, PROMPTS) is False
    assert context.wanted(None, True, PROMPTS) is True  # the key's default
    assert context.wanted(False, True, PROMPTS) is False  # the request's word wins
    assert context.wanted(None, False, PromptsPolicy(enabled_by_default=True)) is True
    subset = context.tool_subset("complex_coding", PROMPTS)
    assert context.matches("docs__search", subset) and not context.matches("calculator__add", subset)
    assert context.tool_subset("anything_else", PROMPTS) is None and context.matches("calculator__add", None)


def test_the_readme_policy_example_loads(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("<!-- mcp-policy")[1].split("```yaml\n")[1].split("```")[0]
    (tmp_path / "mcp.yaml").write_text(block)
    shutil.copy(Path(__file__).resolve().parents[1] / "policies" / "models.yaml", tmp_path / "models.yaml")
    policy = load_policy(tmp_path, {"MEMORY_TOKEN": "t0ken"})
    assert sorted(policy.mcp.enabled_servers) == ["calculator", "docs", "memory"]
    assert policy.mcp.servers["memory"].headers == {"authorization": "Bearer t0ken"}
    assert policy.mcp.servers["docs"].env == {"DOCS_DIR": "examples/mcp_servers/docs"}
