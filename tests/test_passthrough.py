"""Any provider model by name through deployment patterns, priced from litellm's cost map or the
policy's unknown_model_price rule."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from proxy.app import create_app
from proxy.policy import Policy, load_policy
from proxy.policy.passthrough import cost_map
from tests.conftest import make_settings
from tests.support.fake_upstream import FakeUpstream
from tests.support.policies import policy_copy
from tests.support.servers import ThreadedServer, serving

MASTER = "mk-test-master-0123456789abcdef"


def test_patterns_admit_names_outside_the_registry(policy: Policy) -> None:
    spec, source = policy.passthrough_model("openai/gpt-4o")  # type: ignore[misc]
    assert (spec.id, spec.api_model_id, spec.provider, source) == ("openai/gpt-4o", "gpt-4o", "openai", "cost_map")
    known = cost_map()["gpt-4o"]
    assert spec.input_usd_per_mtok == pytest.approx(known["input_cost_per_token"] * 1e6)
    assert policy.passthrough_model("gpt-4o")[0].id == "openai/gpt-4o"  # type: ignore[index]  (the cost map knows it)
    claude, source = policy.passthrough_model("claude-3-5-haiku-latest")  # type: ignore[misc]
    assert claude.provider == "anthropic" and claude.api_model_id == "claude-3-5-haiku-latest"
    assert source in ("cost_map", "unpriced")
    assert policy.passthrough_model("gpt-17") is None  # bare openai/* does not claim unknown unprefixed names
    assert policy.passthrough_model("mistral/large") is None  # no deployment pattern matches
    assert policy.passthrough_model("openai/gpt-17")[1] == "unpriced"  # type: ignore[index]


def test_charge_rule_prices_unknown_models(tmp_path: Path, environ: dict) -> None:
    rule = {"action": "charge", "input_usd_per_mtok": 7.0, "output_usd_per_mtok": 21.0}
    directory = policy_copy(tmp_path)
    registry = yaml.safe_load((directory / "models.yaml").read_text())
    registry["unknown_model_price"] = rule
    (directory / "models.yaml").write_text(yaml.safe_dump(registry))
    policy = load_policy(directory, environ)
    spec, source = policy.passthrough_model("openai/gpt-17")  # type: ignore[misc]
    assert source == "policy_rate" and (spec.input_usd_per_mtok, spec.output_usd_per_mtok) == (7.0, 21.0)


@pytest.fixture
def server(environ: dict, upstream: FakeUpstream, tmp_path: Path) -> Iterator[ThreadedServer]:
    app = create_app(make_settings(policy_dir=policy_copy(tmp_path), master_key=MASTER), environ=environ)
    with serving(app) as srv:
        yield srv


def new_key(server: ThreadedServer, **fields: object) -> str:
    r = httpx.post(server.url + "/admin/keys", headers={"authorization": f"Bearer {MASTER}"}, json={"name": "pt", **fields}, timeout=10)
    return r.json()["key"]


def chat(server: ThreadedServer, key: str, model: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(server.url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"}, json=body, timeout=20)


def test_forwarded_priced_and_recorded(server: ThreadedServer, upstream: FakeUpstream) -> None:
    key = new_key(server)
    r = chat(server, key, "openai/gpt-4o")
    assert r.status_code == 200 and r.json()["model"] == "openai/gpt-4o"
    assert upstream.received[-1].body["model"] == "gpt-4o"
    decision = httpx.get(server.url + "/admin/decisions?limit=1", headers={"authorization": f"Bearer {MASTER}"}).json()["data"][0]
    assert decision["decision_id"] == r.headers["x-autoroute-decision-id"]
    assert "litellm's bundled cost map" in decision["reason"] and decision["cost_usd"] > 0
    msg = httpx.post(
        server.url + "/v1/messages",
        headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
        json={"model": "claude-3-5-haiku-latest", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]},
        timeout=60,
    )
    assert msg.status_code == 200, msg.text
    assert upstream.received[-1].path.endswith("/messages") and upstream.received[-1].body["model"] == "claude-3-5-haiku-latest"


def test_unpriced_model_refused_for_budgeted_key_only(server: ThreadedServer, upstream: FakeUpstream) -> None:
    budgeted = new_key(server, budget_usd_total=5.0)
    r = chat(server, budgeted, "openai/gpt-17")
    assert r.status_code == 403 and r.json()["error"]["code"] == "unknown_model_price"
    assert not upstream.received
    assert chat(server, new_key(server), "openai/gpt-17").status_code == 200
    assert chat(server, new_key(server), "gpt-17").status_code == 404
