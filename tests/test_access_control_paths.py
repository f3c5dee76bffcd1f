"""A key's allowed models hold on every path a request can take to a model: named, auto,
the routed plan's fallbacks, and `dispatch.last_resort`.

The proof is the fake upstream's record: a model the key may not use is never called.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from proxy.app import create_app
from tests.conftest import POLICIES, make_settings
from tests.support.fake_upstream import FakeUpstream, Fault
from tests.support.policies import fast_dispatch, policy_copy
from tests.support.servers import ThreadedServer, serving

MASTER = "mk-test-master-0123456789abcdef"
ALLOWED = ["openai/gpt-4.1-nano", "openai/gpt-4.1"]
LAST_RESORT = "anthropic/claude-sonnet-4"
UPSTREAM_NAME = {m["id"]: m["api_model_id"] for m in yaml.safe_load((POLICIES / "models.yaml").read_text())["models"]}
ASK = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture
def server(environ: dict, upstream: FakeUpstream, tmp_path: Path) -> Iterator[ThreadedServer]:
    policies = policy_copy(tmp_path, files={"dispatch.yaml": fast_dispatch(last_resort=LAST_RESORT)})
    app = create_app(make_settings(policy_dir=policies, master_key=MASTER), environ=environ)
    with serving(app) as srv:
        yield srv


@pytest.fixture
def key(server: ThreadedServer) -> str:
    resp = httpx.post(
        server.url + "/admin/keys", json={"name": "narrow", "allowed_models": ALLOWED}, headers={"authorization": f"Bearer {MASTER}"}
    )
    assert resp.status_code == 201, resp.text
    return resp.json()["key"]


def chat(server: ThreadedServer, key: str, **body: Any) -> httpx.Response:
    return httpx.post(
        server.url + "/v1/chat/completions", json={"messages": ASK, **body}, headers={"authorization": f"Bearer {key}"}, timeout=30
    )


def called(upstream: FakeUpstream) -> set[str]:
    return {r.model for r in upstream.received}


def allowed_names() -> set[str]:
    return {UPSTREAM_NAME[m] for m in ALLOWED}


def test_named_model_outside_the_keys_allowed_models_is_403_and_never_called(
    server: ThreadedServer, upstream: FakeUpstream, key: str
) -> None:
    resp = chat(server, key, model="anthropic/claude-opus-4")
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "model_not_allowed"
    assert chat(server, key, model="openai/gpt-4.1-nano").status_code == 200
    assert called(upstream) == {"gpt-4.1-nano"}


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_auto_routing_and_its_fallbacks_stay_inside_the_keys_allowed_models(
    server: ThreadedServer, upstream: FakeUpstream, key: str, stream: bool
) -> None:
    plan = httpx.post(server.url + "/v1/route", json={"model": "auto", "messages": ASK}, headers={"authorization": f"Bearer {key}"}).json()
    assert plan["model"] in ALLOWED and set(plan["fallbacks"]) <= set(ALLOWED), plan
    assert chat(server, key, model="auto", stream=stream).status_code == 200
    assert called(upstream) <= allowed_names()
    for name in allowed_names():  # every allowed model fails: the walk must stop, not leave the list
        upstream.script(name, *[Fault.status(503)] * 10)
    resp = chat(server, key, model="auto", stream=stream)
    assert resp.status_code in (502, 503), resp.text
    assert called(upstream) <= allowed_names(), called(upstream)


def test_last_resort_is_not_used_for_a_key_that_may_not_use_it(server: ThreadedServer, upstream: FakeUpstream, key: str) -> None:
    upstream.script("gpt-4.1-nano", *[Fault.status(503)] * 10)
    resp = chat(server, key, model="openai/gpt-4.1-nano")
    assert resp.status_code in (502, 503), resp.text
    assert UPSTREAM_NAME[LAST_RESORT] not in called(upstream)
    upstream.reset()
    upstream.script("gpt-4.1-nano", *[Fault.status(503)] * 10)  # the master key may: last resort answers
    resp = chat(server, MASTER, model="openai/gpt-4.1-nano")
    assert resp.status_code == 200 and resp.headers["x-autoroute-model"] == LAST_RESORT
