"""When every deployment of a model fails, the request moves on to the next model of its plan.

Every provider gets a second deployment (`<id>-b`, priority 2) that calls each model
`<name>-b`, so the fake upstream can fail each deployment of a model separately. Both fail
with retryable errors; the answer must come from the next model — of the routed plan (its
`fallbacks`) and, for a named model, `dispatch.last_resort` — and the attempts must show every
deployment of the first model was tried.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from proxy.app import create_app
from tests.conftest import POLICIES, make_settings
from tests.support.fake_upstream import FakeUpstream, Fault
from tests.support.policies import fast_dispatch, policy_copy
from tests.support.servers import ThreadedServer, serving

REGISTRY = yaml.safe_load((POLICIES / "models.yaml").read_text())
UPSTREAM_NAME = {m["id"]: m["api_model_id"] for m in REGISTRY["models"]}
#: A second deployment of every provider, priority 2, calling each model `<name>-b`.
SECOND_DEPLOYMENTS = [
    {
        **dep,
        "id": dep["id"] + "-b",
        "priority": 2,
        "model_names": {m["id"]: m["api_model_id"] + "-b" for m in REGISTRY["models"] if m["provider"] == dep["provider"]},
    }
    for dep in REGISTRY["deployments"]
]
CODE = [
    {
        "role": "user",
        "content": "Refactor this Python class into smaller functions and add type hints:\n\n"
        "```python\nclass Repo:\n    def load(self, path):\n        data = open(path).read()\n"
        "        rows = [r.split(',') for r in data.splitlines()]\n        return {r[0]: r[1:] for r in rows}\n```",
    }
]


@pytest.fixture
def server(environ: dict, upstream: FakeUpstream, tmp_path: Path) -> Iterator[ThreadedServer]:
    policies = policy_copy(
        tmp_path, extra_deployments=SECOND_DEPLOYMENTS, files={"dispatch.yaml": fast_dispatch(last_resort="openai/gpt-4.1-nano")}
    )
    app = create_app(make_settings(policy_dir=policies), environ=environ)
    with serving(app) as srv:
        yield srv


def fail_every_deployment_of(upstream: FakeUpstream, model: str) -> None:
    upstream.script(UPSTREAM_NAME[model], *[Fault.status(503)] * 10)
    upstream.script(UPSTREAM_NAME[model] + "-b", *[Fault.status(500)] * 10)


def post(server: ThreadedServer, body: dict) -> httpx.Response:
    return httpx.post(server.url + "/v1/chat/completions", json=body, timeout=30)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_routed_request_falls_back_to_the_next_model_when_every_deployment_of_the_first_fails(
    server: ThreadedServer, upstream: FakeUpstream, stream: bool
) -> None:
    body = {"model": "auto", "messages": CODE}
    plan = httpx.post(server.url + "/v1/route", json=body, timeout=10).json()
    first = plan["model"]
    assert plan["fallbacks"], plan
    fail_every_deployment_of(upstream, first)
    resp = post(server, {**body, "stream": stream})
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-autoroute-model"] == plan["fallbacks"][0]
    tried = {a.split("@")[1] for a in resp.headers["x-autoroute-attempts"].split(",") if a.startswith(first + "@")}
    assert len(tried) == 2, resp.headers["x-autoroute-attempts"]  # both deployments of the first model
    assert upstream.requests_for(UPSTREAM_NAME[first]) and upstream.requests_for(UPSTREAM_NAME[first] + "-b")


def test_named_model_falls_back_to_last_resort_when_every_deployment_fails(server: ThreadedServer, upstream: FakeUpstream) -> None:
    fail_every_deployment_of(upstream, "openai/gpt-4.1")
    resp = post(server, {"model": "openai/gpt-4.1", "messages": [{"role": "user", "content": "Say hi."}]})
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-autoroute-model"] == "openai/gpt-4.1-nano"
    assert resp.json()["model"] == "openai/gpt-4.1-nano"
    tried = resp.headers["x-autoroute-attempts"].split(",")
    assert "openai/gpt-4.1@openai" in tried and "openai/gpt-4.1@openai-b" in tried and tried[-1] == "openai/gpt-4.1-nano@openai"
