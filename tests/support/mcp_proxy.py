"""A proxy with MCP servers for the tool-loop tests (tests/test_mcp_*.py): admin calls, keys,
decision records, and waiting for the servers to be up."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from proxy.app import create_app
from tests.conftest import make_settings
from tests.support.fake_upstream import FakeUpstream
from tests.support.policies import policy_copy
from tests.support.servers import ThreadedServer, serving

MASTER = "mk-test-master-0123456789abcdef"
MODEL = "openai/gpt-4.1-nano"
ASK = [{"role": "user", "content": "What is (2 + 3) * 4?"}]


class Proxy:
    def __init__(self, server: ThreadedServer) -> None:
        self.server, self.url = server, server.url

    def admin(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return httpx.request(method, self.url + path, headers={"authorization": f"Bearer {MASTER}"}, timeout=10, **kw)

    def new_key(self, **fields: Any) -> tuple[str, str]:
        resp = self.admin("POST", "/admin/keys", json={"name": "loop-test", **fields})
        assert resp.status_code == 201, resp.text
        return resp.json()["key"], resp.json()["id"]

    def chat(self, key: str, **body: Any) -> httpx.Response:
        return httpx.post(
            self.url + "/v1/chat/completions",
            json={"model": MODEL, "messages": ASK, **body},
            headers={"authorization": f"Bearer {key}"},
            timeout=60,
        )

    def decisions(self, decision_id: str) -> list[dict[str, Any]]:
        data = self.admin("GET", "/admin/decisions").json()["data"]
        return [d for d in data if d["decision_id"] == decision_id]

    def decision(self, decision_id: str) -> dict[str, Any]:
        for _ in range(100):
            found = self.decisions(decision_id)
            if found:
                return found[0]
            time.sleep(0.05)
        raise AssertionError(f"no decision record {decision_id}")

    @property
    def state(self) -> Any:
        return self.server.server.config.app.state.autoroute

    def wait_tools(self, servers: list[str]) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            detail = httpx.get(self.url + "/readyz", timeout=5).json()["mcp_servers"]
            if all(detail.get(s) == "up" for s in servers):
                return
            time.sleep(0.1)
        raise AssertionError(f"MCP servers not up: {detail}")


@contextmanager
def proxy_with(tmp_path: Path, environ: dict[str, str], servers: dict[str, Any], **mcp: Any) -> Iterator[Proxy]:
    policies = policy_copy(tmp_path / "policies", files={"mcp.yaml": {"servers": servers, **mcp}})
    app = create_app(make_settings(policy_dir=policies, master_key=MASTER), environ=environ)
    with serving(app) as server:
        proxy = Proxy(server)
        proxy.wait_tools(list(servers))
        yield proxy


def offered(upstream: FakeUpstream) -> list[list[str]]:
    return [[t["function"]["name"] for t in r.body.get("tools") or ()] for r in upstream.received]
