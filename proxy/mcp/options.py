"""What a chat request asks of the tool loop: `"route": {"mcp": ..., "context": true}`.

    "mcp": true                                   every server the key may see
    "mcp": ["calculator", "docs"]                 these servers
    "mcp": {"servers": ["calculator", {"label": "wiki", "url": "https://wiki.internal/mcp", "headers": {...}}],
            "allowed_tools": ["calculator__*"], "max_depth": 3}

Servers are named from policies/mcp.yaml; a server given by URL is refused (403) unless the
policy's `request_url_hosts` allows its host, and a request can never start a process.
`allowed_tools` and `max_depth` can only narrow what the key and the policy allow.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from proxy.errors import InvalidRequest, PermissionDenied
from proxy.policy.mcp import SERVER_NAME, McpPolicy

_FIELDS = ("servers", "allowed_tools", "max_depth")
# allowed_tools are fnmatch patterns matched per tool on the event loop, and translating one is
# quadratic in its unclosed brackets: a request's list and names stay within MCP's own sizes
# (a tool name is at most 128 characters; a label 31, and its "__").
MAX_PATTERNS = 256
MAX_NAME_CHARS = 128
MAX_PATTERN_CHARS = 31 + 2 + MAX_NAME_CHARS
MAX_URL_SERVERS = 16  # each is an MCP session opened for the one request


@dataclass(frozen=True)
class ToolRequest:
    servers: tuple[str, ...] | None = None  # None = every server the key may see
    urls: tuple[tuple[str, str], ...] = ()  # (label, url) allowed by the policy
    allowed_tools: tuple[str, ...] | None = None
    max_depth: int | None = None
    url_headers: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()  # (label, headers) for a URL server that sent some

    def headers_for(self, label: str) -> dict[str, str]:
        return next((dict(h) for name, h in self.url_headers if name == label), {})


@dataclass(frozen=True)
class LoopAsk:
    tools: ToolRequest | None  # None: no tool loop
    context: bool | None  # None: the key's / policy's default
    route: Mapping[str, Any] | None  # the route object without mcp/context (what routing reads)


def take_loop_options(route: Mapping[str, Any] | None, policy: McpPolicy) -> LoopAsk:
    """Read `route.mcp` and `route.context` (ours) and check them; `route` comes back without them."""
    if not isinstance(route, Mapping) or ("mcp" not in route and "context" not in route):
        return LoopAsk(None, None, route)
    context = route.get("context")
    if context is not None and not isinstance(context, bool):
        raise InvalidRequest("route.context must be true or false", param="route.context")
    rest = MappingProxyType({k: v for k, v in route.items() if k not in ("mcp", "context")})
    return LoopAsk(_tools(route.get("mcp"), policy), context, rest)


def _tools(spec: Any, policy: McpPolicy) -> ToolRequest | None:
    if spec is None or spec is False:
        return None
    if spec is True:
        return ToolRequest()
    if isinstance(spec, list):
        spec = {"servers": spec}
    if not isinstance(spec, Mapping):
        raise InvalidRequest(
            "route.mcp must be true, a list of server names, or an object with servers, allowed_tools, max_depth", param="route.mcp"
        )
    for name in spec:
        if name not in _FIELDS:
            raise InvalidRequest(f"route.mcp.{name} is not a tool-loop option; use {', '.join(_FIELDS)}", param=f"route.mcp.{name}")
    names: list[str] = []
    urls: list[tuple[str, str]] = []
    url_headers: list[tuple[str, tuple[tuple[str, str], ...]]] = []
    servers = spec.get("servers")
    if servers is not None and not isinstance(servers, list):
        raise InvalidRequest("route.mcp.servers must be a list", param="route.mcp.servers")
    for i, item in enumerate(servers or ()):
        where = f"route.mcp.servers.{i}"
        if isinstance(item, str):
            if item not in policy.enabled_servers:
                known = ", ".join(sorted(policy.enabled_servers)) or "none are configured"
                raise InvalidRequest(f"{where}: no MCP server named {item!r} (servers: {known})", param=where, code="unknown_mcp_server")
            names.append(item)
        elif isinstance(item, Mapping) and isinstance(item.get("url"), str):
            urls.append(_url_server(item, where, policy))
            if any(label == urls[-1][0] for label, _ in urls[:-1]):  # (headers are looked up by label)
                raise InvalidRequest(f"{where}.label: {urls[-1][0]!r} names two servers", param=f"{where}.label")
            headers = _headers(item.get("headers"), f"{where}.headers")
            if headers:
                url_headers.append((urls[-1][0], headers))
        else:
            raise InvalidRequest(f"{where} must be a server name or an object with label and url", param=where)
    if len(urls) > MAX_URL_SERVERS:
        raise InvalidRequest(f"route.mcp.servers: at most {MAX_URL_SERVERS} servers given by url", param="route.mcp.servers")
    allowed = spec.get("allowed_tools")
    if allowed is not None and (
        not isinstance(allowed, list)
        or len(allowed) > MAX_PATTERNS
        or not all(isinstance(p, str) and 0 < len(p) <= MAX_PATTERN_CHARS for p in allowed)
    ):
        raise InvalidRequest(
            f"route.mcp.allowed_tools must be a list of at most {MAX_PATTERNS} tool-name patterns of at most {MAX_PATTERN_CHARS} characters",
            param="route.mcp.allowed_tools",
        )
    depth = spec.get("max_depth")
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 1):
        raise InvalidRequest("route.mcp.max_depth must be a positive integer", param="route.mcp.max_depth")
    return ToolRequest(
        servers=tuple(names) if servers is not None else None,
        urls=tuple(urls),
        allowed_tools=tuple(allowed) if allowed is not None else None,
        max_depth=depth,
        url_headers=tuple(url_headers),
    )


_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")
# Headers that address or frame the request rather than authorize it: the HTTP client would send
# them as given (Host: another site behind the allowed address; Content-Length with
# Transfer-Encoding: one request framed two ways).
_RESERVED = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te", "trailer", "expect"})


def _headers(value: Any, where: str) -> tuple[tuple[str, str], ...]:
    """Headers a request sends to the MCP server it names by URL (e.g. its authorization)."""
    if value is None:
        return ()
    if not isinstance(value, Mapping) or len(value) > 20:
        raise InvalidRequest(f"{where} must be an object of at most 20 header names and string values", param=where)
    out: list[tuple[str, str]] = []
    for name, text in value.items():
        if not isinstance(name, str) or not _HEADER_NAME.match(name) or not isinstance(text, str) or any(c in text for c in "\r\n\0"):
            raise InvalidRequest(f"{where}.{name}: a header needs a token name and a one-line string value", param=f"{where}.{name}")
        if name.lower() in _RESERVED or name.lower().startswith("proxy-"):
            raise InvalidRequest(f"{where}.{name}: the proxy sets this header itself", param=f"{where}.{name}")
        out.append((name, text))
    return tuple(out)


def _url_server(item: Mapping[str, Any], where: str, policy: McpPolicy) -> tuple[str, str]:
    url = str(item["url"])
    parts = urlsplit(url)
    label = item.get("label") or item.get("server_label")
    if not isinstance(label, str) or not SERVER_NAME.match(label) or "__" in label or label in policy.servers:
        raise InvalidRequest(f"{where}.label must be a new lowercase name (letters, digits, - and _)", param=f"{where}.label")
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c <= " " or c == "\x7f" for c in url):
        # (urlsplit drops tabs and newlines before reading the host; the HTTP client would not)
        raise InvalidRequest(f"{where}.url must be an http(s) URL", param=f"{where}.url")
    try:
        port = parts.port
    except ValueError:
        raise InvalidRequest(f"{where}.url has an invalid port", param=f"{where}.url") from None
    if not policy.allows_url(parts.hostname, port, parts.scheme):
        raise PermissionDenied(
            f"{where}.url: MCP servers at {parts.netloc!r} are not allowed by this proxy's policy (mcp.yaml request_url_hosts). "
            "Name a configured server instead.",
            param=f"{where}.url",
            code="mcp_url_not_allowed",
        )
    return label, url


def from_responses_tools(tools: list[Any], policy: McpPolicy | None = None) -> tuple[list[Any], dict[str, Any] | None]:
    """Responses API tools of type `mcp` (OpenAI's shape: server_label, server_url, headers,
    allowed_tools, require_approval) -> the other tools, and the `route.mcp` spec they ask for
    (checked by take_loop_options like any other). Only `require_approval: "never"` runs
    server-side; asking for approvals is a 400 (the proxy cannot pause a loop for a client).
    With the policy, labels and URLs are checked here, as 400s naming `tools.<i>`."""
    others: list[Any] = []
    servers: list[Any] = []
    patterns: list[str] = []
    labels: set[str] = set()
    for i, tool in enumerate(tools):
        if not (isinstance(tool, Mapping) and tool.get("type") == "mcp"):
            others.append(tool)
            continue
        where = f"tools.{i}"
        label = tool.get("server_label")
        if not isinstance(label, str) or not label:
            raise InvalidRequest(f"{where}.server_label is required for an mcp tool", param=f"{where}.server_label")
        if label in labels:
            raise InvalidRequest(f"{where}.server_label: {label!r} is the label of an earlier mcp tool", param=f"{where}.server_label")
        labels.add(label)
        approval = tool.get("require_approval", "never")
        if approval is not None and approval != "never" and not (isinstance(approval, Mapping) and set(approval) == {"never"}):
            raise InvalidRequest(
                f'{where}.require_approval: autoroute runs MCP tools server-side only with "never" (approvals are not supported)',
                param=f"{where}.require_approval",
                code="mcp_approval_not_supported",
            )
        if tool.get("connector_id"):
            raise InvalidRequest(f"{where}.connector_id: OpenAI connectors are not available here; name a server_label", param=where)
        url = tool.get("server_url")
        if url:
            if sum(1 for s in servers if not isinstance(s, str)) == MAX_URL_SERVERS:
                raise InvalidRequest(
                    f"{where}.server_url: at most {MAX_URL_SERVERS} mcp tools with a server_url", param=f"{where}.server_url"
                )
            server: Any = {"label": label, "url": url}
            if tool.get("headers"):
                server["headers"] = tool["headers"]
            if policy is not None:
                _responses_url(server, where, policy)
        else:
            if tool.get("headers"):
                raise InvalidRequest(
                    f"{where}.headers: only a server given by server_url takes headers (the policy sets a configured server's)",
                    param=f"{where}.headers",
                )
            if policy is not None and label not in policy.enabled_servers:
                known = ", ".join(sorted(policy.enabled_servers)) or "none are configured"
                raise InvalidRequest(
                    f"{where}.server_label: no MCP server named {label!r} (servers: {known}); or give its server_url",
                    param=f"{where}.server_label",
                    code="unknown_mcp_server",
                )
            server = label
        servers.append(server)
        allowed = tool.get("allowed_tools")
        if isinstance(allowed, Mapping):
            if allowed.get("read_only"):  # the proxy does not know which tools only read: never offer them all instead
                raise InvalidRequest(
                    f"{where}.allowed_tools.read_only is not supported here; list the tool_names", param=f"{where}.allowed_tools"
                )
            allowed = allowed.get("tool_names")
        if allowed is None:
            patterns.append(f"{label}__*")
        elif isinstance(allowed, list) and all(isinstance(n, str) and len(n) <= MAX_NAME_CHARS for n in allowed):
            patterns.extend(f"{label}__{n}" for n in allowed)
        else:
            raise InvalidRequest(
                f"{where}.allowed_tools must be a list of tool names of at most {MAX_NAME_CHARS} characters", param=f"{where}.allowed_tools"
            )
        if len(patterns) > MAX_PATTERNS:
            raise InvalidRequest(f"{where}.allowed_tools: at most {MAX_PATTERNS} tool names in all", param=f"{where}.allowed_tools")
    if not servers:
        return others, None
    return others, {"servers": servers, "allowed_tools": patterns}


def _responses_url(server: Mapping[str, Any], where: str, policy: McpPolicy) -> None:
    """A Responses `server_url` the policy does not allow: a 400 naming the tool (OpenAI's shape)."""
    try:
        _url_server(server, where, policy)
        _headers(server.get("headers"), f"{where}.headers")
    except PermissionDenied as exc:
        raise InvalidRequest(
            exc.message.replace(f"{where}.url", f"{where}.server_url"), param=f"{where}.server_url", code=exc.code
        ) from None
    except InvalidRequest as exc:
        param = (exc.param or where).replace(f"{where}.url", f"{where}.server_url").replace(f"{where}.label", f"{where}.server_label")
        raise InvalidRequest(exc.message.replace(exc.param or "\0", param), param=param, code=exc.code) from None
