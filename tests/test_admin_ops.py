"""GET /admin/deployments: master-key guard, and the breaker / in-flight state it shows."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from proxy.app import create_app
from tests.conftest import make_settings
from tests.support.dispatching import MSG, fast, sdk
from tests.support.fake_upstream import FakeUpstream, Fault
from tests.support.servers import serving

MASTER = "mk-admin-0123456789abcdef"


@pytest.fixture
def admin_server(environ: dict, upstream: FakeUpstream, tmp_path: Path):  # type: ignore[no-untyped-def]
    app = create_app(make_settings(policy_dir=fast(tmp_path), master_key=MASTER), environ=environ)
    with serving(app) as server:
        yield server


def _get(url: str, token: str | None = MASTER, scheme: str = "Bearer") -> httpx.Response:
    headers = {"authorization": f"{scheme} {token}".strip()} if token is not None else {}
    return httpx.get(url + "/admin/deployments", headers=headers, timeout=5)


def test_no_master_key_means_admin_is_off(proxy_server) -> None:  # type: ignore[no-untyped-def]
    resp = _get(proxy_server.url)
    assert resp.status_code == 403
    err = resp.json()["error"]
    assert err["type"] == "permission_error" and "AUTOROUTE_MASTER_KEY" in err["message"]


@pytest.mark.parametrize(
    "token,scheme",
    [(None, "Bearer"), ("wrong-key", "Bearer"), (MASTER, "Basic"), ("", "Bearer"), (MASTER + "x", "Bearer"), (MASTER[:-1], "Bearer")],
)
def test_missing_or_wrong_key_is_401(admin_server, token: str | None, scheme: str) -> None:  # type: ignore[no-untyped-def]
    resp = _get(admin_server.url, token, scheme)
    assert resp.status_code == 401
    assert resp.json()["error"]["type"] == "authentication_error"
    assert resp.headers["www-authenticate"] == "Bearer"
    assert MASTER not in resp.text


def test_deployments_show_breakers_and_strategy(admin_server, upstream: FakeUpstream) -> None:  # type: ignore[no-untyped-def]
    resp = _get(admin_server.url)
    assert resp.status_code == 200
    body = resp.json()
    deps = {d["id"]: d for d in body["data"]}
    assert set(deps) == {"openai", "anthropic", "gemini", "together", "ollama"}
    assert body["strategy"] == "failover" and body["cooldown"]["failures"] == 3
    openai_dep = deps["openai"]
    assert openai_dep["provider"] == "openai" and openai_dep["state"] == "closed" and openai_dep["in_flight"] == 0
    assert {m["id"] for m in openai_dep["models"]} >= {"openai/gpt-4.1", "openai/o3"}
    assert all(m["strategy"] == "failover" for m in openai_dep["models"])
    assert "anthropic/claude-sonnet-4" in body["available_models"]

    upstream.script("claude-sonnet-4-20250514", *[Fault.status(500)] * 3)
    with pytest.raises(openai.APIStatusError) as info:  # the master key also works on /v1
        sdk(admin_server.url, api_key=MASTER).chat.completions.create(model="anthropic/claude-sonnet-4", messages=MSG)
    assert info.value.status_code == 502
    body = _get(admin_server.url).json()
    anthropic = {d["id"]: d for d in body["data"]}["anthropic"]
    assert anthropic["state"] == "open" and anthropic["recent_failures"] == 3
    assert 0 < anthropic["cooldown_remaining_s"] <= 30
    sonnet = next(m for m in anthropic["models"] if m["id"] == "anthropic/claude-sonnet-4")
    opus = next(m for m in anthropic["models"] if m["id"] == "anthropic/claude-opus-4")
    assert sonnet["state"] == "open" and sonnet["times_opened"] == 1 and "answered 500" in sonnet["last_error"]
    assert opus["state"] == "closed"  # the breaker is per model: the endpoint's other models stay in use
    assert "anthropic/claude-sonnet-4" not in body["available_models"]
    assert "anthropic/claude-opus-4" in body["available_models"]
    assert all("sk-" not in str(d) for d in body["data"])  # no keys in the view
