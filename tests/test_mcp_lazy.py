"""The `mcp` SDK is loaded only when it is used: a proxy whose policy lists no MCP server and
whose /mcp gateway has not been called never imports it (~25 MB of resident memory)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

CODE = """
import sys
from starlette.testclient import TestClient
from proxy.app import create_app
from tests.conftest import make_settings

app = create_app(make_settings(), environ={})
assert app.state.autoroute.policy.mcp.gateway.enabled  # the shipped policy serves /mcp
with TestClient(app) as client:
    assert client.get("/healthz").status_code == 200
    assert client.post("/v1/route", json={"model": "auto", "messages": [{"role": "user", "content": "hi"}]}).status_code in (200, 401)
    loaded = sorted(m for m in sys.modules if m == "mcp" or m.startswith("mcp."))
    assert not loaded, loaded[:5]
    answer = client.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                         headers={"accept": "application/json, text/event-stream"})
    assert answer.status_code == 200, answer.text  # open mode: the gateway, built now, answers
    assert "route" in [t["name"] for t in answer.json()["result"]["tools"]]
    assert "mcp.server.lowlevel" in sys.modules
    again = client.post("/mcp", json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
                        headers={"accept": "application/json, text/event-stream"})
    assert again.status_code == 200 and again.json()["id"] == 2  # the same gateway, already running
print("ok")
"""


def test_the_sdk_loads_on_the_first_mcp_call_not_at_start_up() -> None:
    out = subprocess.run([sys.executable, "-c", CODE], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


def test_concurrent_first_calls_share_one_build_and_a_leaving_caller_does_not_stop_it(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import asyncio
    import contextlib
    from typing import Any

    from proxy.api import mcp as mcp_api

    built: list[int] = []
    served: list[int] = []

    class FakeManager:
        @contextlib.asynccontextmanager
        async def run(self):  # type: ignore[no-untyped-def]
            await asyncio.sleep(0.01)  # the callers pile up while it starts
            yield

    class FakeGateway:
        manager = FakeManager()

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            served.append(scope)

    def fake_build(state: Any) -> FakeGateway:
        built.append(1)
        return FakeGateway()

    monkeypatch.setattr(mcp_api, "build_gateway", fake_build)

    async def scenario() -> bool:
        lazy = mcp_api.LazyGateway(None)  # type: ignore[arg-type]
        calls = [asyncio.ensure_future(lazy(i, None, None)) for i in range(3)]
        await asyncio.sleep(0)
        calls[0].cancel()  # this caller leaves while the gateway starts
        await asyncio.gather(*calls, return_exceptions=True)
        await lazy(3, None, None)
        task = lazy._task
        await lazy.close()
        return task is not None and task.done()

    assert asyncio.run(scenario())
    assert built == [1]  # one gateway for every caller
    assert sorted(served) == [1, 2, 3]  # the one that left was not served; the others were
