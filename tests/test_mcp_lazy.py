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
