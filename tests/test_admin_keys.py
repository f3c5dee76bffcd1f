"""Admin API for keys and usage, through a tiny starlette app with the lead's error handler."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse

from proxy.admin.keys import routes
from proxy.errors import ProxyError
from proxy.keys.store import KeyStore
from proxy.limits.limiter import Limiter
from proxy.limits.store import embedded_redis
from proxy.policy.limits import LimitsPolicy

MASTER_KEY = "admin-master-key-for-tests-42"
AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}


async def _proxy_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProxyError)
    return JSONResponse(exc.body(), exc.status, headers=exc.headers)


def build_app(master: str | None = MASTER_KEY) -> Starlette:
    redis = embedded_redis()
    app = Starlette(routes=routes, exception_handlers={ProxyError: _proxy_error})
    app.state.autoroute = SimpleNamespace(
        settings=None, policy=None, redis=redis, keys=KeyStore(redis, master), limiter=Limiter(redis, LimitsPolicy())
    )
    return app


@pytest.fixture
async def app() -> Starlette:
    return build_app()


@pytest.fixture
async def client(app: Starlette) -> Any:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://admin") as c:
        yield c


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


async def test_admin_needs_the_master_key(client: httpx.AsyncClient) -> None:
    assert _error(await client.get("/admin/keys"), 401)["type"] == "authentication_error"
    assert _error(await client.get("/admin/keys", headers={"Authorization": "Bearer nope"}), 401)
    r = await client.post("/admin/keys", json={"name": "x"}, headers={"Authorization": "Bearer sk-ar-wrong"})
    _error(r, 401)
    assert (await client.get("/admin/keys", headers=AUTH)).status_code == 200


async def test_admin_disabled_without_master_key() -> None:
    app = build_app(master=None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://admin") as c:
        err = _error(await c.get("/admin/keys", headers=AUTH), 403)
    assert err["code"] == "admin_disabled" and "AUTOROUTE_MASTER_KEY" in err["message"]


async def test_key_lifecycle(client: httpx.AsyncClient, app: Starlette) -> None:
    r = await client.post("/admin/keys", headers=AUTH, json={
        "name": "team-a", "rpm": 60, "tpm": 10000, "budget_usd_day": 5, "allowed_models": ["openai/*"],
        "route_preference": "cheapest", "metadata": {"owner": "ana"}, "expires_at": "2031-01-01T00:00:00Z",
    })  # fmt: skip
    assert r.status_code == 201, r.text
    created = r.json()
    secret, key_id = created["key"], created["id"]
    assert secret.startswith("sk-ar-") and "key_hash" not in created
    assert created["expires_at"].startswith("2031-01-01T00:00:00")
    keys: KeyStore = app.state.autoroute.keys
    assert (await keys.authenticate(secret)).id == key_id

    listed = (await client.get("/admin/keys", headers=AUTH)).json()
    assert listed["object"] == "list" and [k["id"] for k in listed["data"]] == [key_id]
    assert all("key" not in k and "key_hash" not in k for k in listed["data"])
    shown = (await client.get(f"/admin/keys/{key_id}", headers=AUTH)).json()
    assert shown["name"] == "team-a" and shown["metadata"] == {"owner": "ana"}

    r = await client.patch(f"/admin/keys/{key_id}", headers=AUTH, json={"rpm": None, "disabled": True})
    assert r.status_code == 200 and r.json()["rpm"] is None and r.json()["disabled"] is True
    assert r.json()["tpm"] == 10000 and r.json()["name"] == "team-a"  # untouched fields stay

    r = await client.delete(f"/admin/keys/{key_id}", headers=AUTH)
    assert r.json() == {"id": key_id, "object": "key", "deleted": True}
    assert _error(await client.get(f"/admin/keys/{key_id}", headers=AUTH), 404)["code"] == "not_found"
    _error(await client.delete(f"/admin/keys/{key_id}", headers=AUTH), 404)
    _error(await client.patch(f"/admin/keys/{key_id}", headers=AUTH, json={"rpm": 1}), 404)


@pytest.mark.parametrize(
    ("body", "param"),
    [({"rpm": 0}, "rpm"), ({"budget_usd_month": -1}, "budget_usd_month"), ({"colour": "red"}, "colour"),
     ({"route_preference": "fastest"}, "route_preference")],
)  # fmt: skip
async def test_invalid_fields_are_400(client: httpx.AsyncClient, body: dict[str, Any], param: str) -> None:
    err = _error(await client.post("/admin/keys", headers=AUTH, json=body), 400)
    assert err["type"] == "invalid_request_error" and err["param"] == param


async def test_malformed_bodies_are_400(client: httpx.AsyncClient) -> None:
    err = _error(await client.post("/admin/keys", headers=AUTH, content=b"{not json"), 400)
    assert "not valid JSON" in err["message"]
    _error(await client.post("/admin/keys", headers=AUTH, json=[1, 2]), 400)


async def test_usage_and_reset(client: httpx.AsyncClient, app: Starlette) -> None:
    created = (await client.post("/admin/keys", headers=AUTH, json={"name": "u", "budget_usd_month": 10})).json()
    state = app.state.autoroute
    record = await state.keys.get(created["id"])
    for model, cost in (("openai/gpt-4o-mini", 0.01), ("openai/gpt-4o-mini", 0.01), ("anthropic/claude-sonnet-4", 0.3)):
        res = await state.limiter.reserve(record, None, model=model, input_tokens=100, output_tokens=20,
                                          cost_usd=cost, agent="researcher")  # fmt: skip
        await state.limiter.settle(res, input_tokens=100, output_tokens=20, cost_usd=cost)
    usage = (await client.get(f"/admin/keys/{record.id}/usage", headers=AUTH)).json()
    assert usage["day"]["requests"] == 3 and usage["month"]["input_tokens"] == 300
    assert usage["month"]["cost_usd"] == pytest.approx(0.32)
    assert usage["day"]["by_model"]["openai/gpt-4o-mini"]["requests"] == 2
    assert usage["limits"]["budget_usd_month"] == 10
    assert usage["budget_remaining_usd"] == pytest.approx(9.68)

    agent = (await client.get("/admin/usage", params={"agent": "researcher"}, headers=AUTH)).json()
    assert agent["agent"] == "researcher" and agent["day"]["requests"] == 3
    assert agent["month"]["by_model"]["anthropic/claude-sonnet-4"]["cost_usd"] == pytest.approx(0.3)
    _error(await client.get("/admin/usage", headers=AUTH), 400)
    reset = await client.post("/admin/usage/reset", params={"agent": "researcher"}, headers=AUTH)
    assert reset.status_code == 200 and reset.json()["day"]["requests"] == 0

    after = (await client.post(f"/admin/keys/{record.id}/reset", headers=AUTH)).json()
    assert after["day"]["requests"] == 0 and after["total_cost_usd"] == 0 and after["budget_remaining_usd"] == 10
    _error(await client.get("/admin/keys/key_missing/usage", headers=AUTH), 404)
    master = (await client.get("/admin/keys/master/usage", headers=AUTH)).json()
    assert master["key_id"] == "master" and master["day"]["requests"] == 0


async def test_store_outage_is_503(client: httpx.AsyncClient, app: Starlette) -> None:
    app.state.autoroute.redis.connection_pool.connection_kwargs["server"].connected = False
    err = _error(await client.get("/admin/keys", headers=AUTH), 503)
    assert err["code"] == "limits_store_unavailable"
