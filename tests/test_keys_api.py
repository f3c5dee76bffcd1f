"""Virtual keys, limits and budgets through the proxy, as an OpenAI SDK user meets them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from proxy.app import create_app
from tests.conftest import make_settings
from tests.support.fake_upstream import FakeUpstream
from tests.support.policies import policy_copy
from tests.support.servers import ThreadedServer, serving

MASTER = "mk-test-master-0123456789abcdef"
HI = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture
def server(environ: dict, upstream: FakeUpstream, tmp_path: Path) -> Iterator[ThreadedServer]:
    policies = policy_copy(tmp_path, files={"limits.yaml": {"task": {"max_cost_usd": 1.0, "max_tokens": 300}}})
    app = create_app(make_settings(policy_dir=policies, master_key=MASTER), environ=environ)
    with serving(app) as srv:
        yield srv


def admin(server: ThreadedServer, method: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.request(method, server.url + path, headers={"authorization": f"Bearer {MASTER}"}, timeout=10, **kw)


def new_key(server: ThreadedServer, **fields: Any) -> str:
    resp = admin(server, "POST", "/admin/keys", json={"name": "test", **fields})
    assert resp.status_code == 201, resp.text
    return resp.json()["key"]


def sdk(server: ThreadedServer, key: str | None) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key or "", max_retries=0, timeout=20)


def test_missing_and_unknown_keys_are_401(server: ThreadedServer) -> None:
    resp = httpx.post(server.url + "/v1/chat/completions", json={"model": "auto", "messages": HI})
    assert resp.status_code == 401 and resp.json()["error"]["type"] == "authentication_error"
    with pytest.raises(openai.AuthenticationError):
        sdk(server, "sk-ar-not-a-real-key").chat.completions.create(model="auto", messages=HI)


def test_disabled_expired_and_forbidden_model_are_403(server: ThreadedServer) -> None:
    disabled = new_key(server, disabled=True)
    with pytest.raises(openai.PermissionDeniedError) as info:
        sdk(server, disabled).chat.completions.create(model="auto", messages=HI)
    assert info.value.code == "key_disabled"
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()  # expired, still within retention
    expired = new_key(server, expires_at=past)
    with pytest.raises(openai.PermissionDeniedError) as info:
        sdk(server, expired).chat.completions.create(model="auto", messages=HI)
    assert info.value.code == "key_expired"
    nano_only = new_key(server, allowed_models=["openai/gpt-4.1-nano"])
    with pytest.raises(openai.PermissionDeniedError) as info:
        sdk(server, nano_only).chat.completions.create(model="anthropic/claude-opus-4", messages=HI)
    assert info.value.code == "model_not_allowed"
    # auto routing stays inside the key's allowed models
    raw = sdk(server, nano_only).chat.completions.with_raw_response.create(model="auto", messages=HI)
    assert raw.headers["x-autoroute-model"] == "openai/gpt-4.1-nano"


def test_rpm_429_is_a_rate_limit_error_with_headers(server: ThreadedServer) -> None:
    key = new_key(server, rpm=2)
    client = sdk(server, key)
    first = client.chat.completions.with_raw_response.create(model="auto", messages=HI)
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert first.headers["x-ratelimit-reset-requests"]
    client.chat.completions.create(model="auto", messages=HI)
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="auto", messages=HI)
    err = info.value
    assert err.body["type"] == "rate_limit_exceeded" and "requests per minute" in err.message
    assert 0 < float(err.response.headers["retry-after"]) <= 60
    assert err.response.headers["x-ratelimit-remaining-requests"] == "0"


def test_budget_homeostasis_downgrades_then_refuses(server: ThreadedServer, upstream: FakeUpstream) -> None:
    # Enough for a cheap model's estimate, not for the balanced choice of a hard coding task.
    key = new_key(server, budget_usd_day=0.0005)
    hard = [
        {
            "role": "user",
            "content": "Design and implement a lock-free concurrent hash map in C++ with resizing, "
            "memory reclamation and a full test suite. Explain every design decision.",
        }
    ]
    route = httpx.post(
        server.url + "/v1/route", json={"model": "auto", "messages": hard}, headers={"authorization": f"Bearer {MASTER}"}
    ).json()
    assert route["estimated_cost_usd"] > 0.0005  # unconstrained, the choice would not fit
    raw = sdk(server, key).chat.completions.with_raw_response.create(model="auto", messages=hard)
    assert raw.headers["x-autoroute-model"] != route["model"]
    assert "budget" in raw.headers["x-autoroute-reason"]
    assert float(raw.headers["x-autoroute-estimated-cost-usd"]) <= 0.0005
    # A named model that does not fit the budget is refused, not downgraded.
    with pytest.raises(openai.RateLimitError) as info:
        sdk(server, key).chat.completions.create(model="anthropic/claude-opus-4", messages=hard, max_tokens=4000)
    assert info.value.body["type"] == "budget_exceeded" and "daily budget" in info.value.message
    assert info.value.response.headers.get("x-should-retry") == "false"


def test_task_budget_shared_by_x_task_id(server: ThreadedServer) -> None:
    key = new_key(server)
    client = sdk(server, key)
    headers = {"x-task-id": "task-42"}
    # The policy's task cap is 300 tokens; the first call settles at its real usage (~40 tokens).
    client.chat.completions.create(model="openai/gpt-4.1-nano", messages=HI, max_tokens=100, extra_headers=headers)
    with pytest.raises(openai.RateLimitError) as info:  # ~40 used + ~10 input + 280 requested > 300
        client.chat.completions.create(model="openai/gpt-4.1-nano", messages=HI, max_tokens=280, extra_headers=headers)
    assert info.value.body["type"] == "budget_exceeded" and "task" in info.value.message
    # another task id has its own budget
    client.chat.completions.create(model="openai/gpt-4.1-nano", messages=HI, max_tokens=280, extra_headers={"x-task-id": "task-43"})


def test_usage_per_key_and_per_agent(server: ThreadedServer) -> None:
    key = new_key(server)
    client = sdk(server, key)
    for _ in range(2):
        client.chat.completions.create(model="openai/gpt-4.1-nano", messages=HI, user="agent-7")
    client.chat.completions.create(model="openai/gpt-4.1-nano", messages=HI, extra_headers={"x-agent-id": "agent-8"})
    key_id = next(
        k["id"] for k in admin(server, "GET", "/admin/keys").json()["data"] if k["key_prefix"] and key.startswith(k["key_prefix"])
    )
    usage = admin(server, "GET", f"/admin/keys/{key_id}/usage").json()
    day = usage["day"]
    assert day["requests"] == 3 and day["input_tokens"] > 0 and day["cost_usd"] > 0
    assert day["by_model"]["openai/gpt-4.1-nano"]["requests"] == 3
    agent = admin(server, "GET", "/admin/usage", params={"agent": "agent-7"}).json()
    assert agent["day"]["requests"] == 2
    assert admin(server, "GET", "/admin/usage", params={"agent": "agent-8"}).json()["day"]["requests"] == 1
    admin(server, "POST", "/admin/usage/reset", params={"agent": "agent-7"})
    assert admin(server, "GET", "/admin/usage", params={"agent": "agent-7"}).json()["day"].get("requests", 0) == 0


def test_master_key_works_on_v1_and_revoked_key_stops(server: ThreadedServer) -> None:
    sdk(server, MASTER).chat.completions.create(model="auto", messages=HI)
    key = new_key(server)
    sdk(server, key).chat.completions.create(model="auto", messages=HI)
    key_id = admin(server, "GET", "/admin/keys").json()["data"][-1]["id"]
    assert admin(server, "DELETE", f"/admin/keys/{key_id}").status_code == 200
    with pytest.raises(openai.AuthenticationError):  # at once on the replica that revoked it
        sdk(server, key).chat.completions.create(model="auto", messages=HI)
