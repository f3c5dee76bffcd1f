"""Access control in one place (proxy/keys/access.py), on every path a request can take.

One table: for each key restriction and each way of asking (a model id, the provider's id
as an alias, `auto` and its preferences), every model the plan may reach (the primary, its
fallbacks, `dispatch.last_resort`) must satisfy the restriction, checked against an oracle
written here independently of the rule set; named models outside it are a 403; and the LLM
classifier never sends a restricted key's prompt to a model that key may not use.

Regressions (issue 10, fail on the old code): a key limited to `gpt-4.1*` got 422 on
`model="auto"`; with `last_resort` set, a `self_hosted_only` key and a key allowed only
`openai/gpt-4.1-nano` were served by `anthropic/claude-opus-4`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from proxy.api.chat import to_canonical
from proxy.errors import PermissionDenied
from proxy.keys.store import EPOCH, KeyRecord
from proxy.policy.registry import ModelSpec
from proxy.request.appstate import build_state
from proxy.routing.llm_classifier import LLMClassifier
from proxy.routing.planning import plan_request
from tests.conftest import POLICIES, make_settings
from tests.support.dispatching import fast
from tests.support.fake_upstream import FakeUpstream, Fault

KEYS: dict[str, tuple[dict[str, Any], Callable[[ModelSpec], bool]]] = {
    "unrestricted": ({}, lambda m: True),
    "gpt-4.1*": ({"allowed_models": ("gpt-4.1*",)}, lambda m: m.api_model_id.startswith("gpt-4.1")),
    "nano only": ({"allowed_models": ("openai/gpt-4.1-nano",)}, lambda m: m.id == "openai/gpt-4.1-nano"),
    "self-hosted only": ({"self_hosted_only": True}, lambda m: m.self_hosted),
    "OPENAI/* (case)": ({"allowed_models": ("OPENAI/*",)}, lambda m: m.id.startswith("openai/")),
}
ASKS = ["auto", "auto:best_quality", "auto:cheapest", "openai/gpt-4.1", "gpt-4.1-nano", "anthropic/claude-opus-4", "ollama/qwen3:1.7b"]
PROMPTS = [
    "What is the capital of France?",
    "Prove that there are infinitely many primes, then generalise the argument to primes of the form 4k+3.",
    "Write a Python function that parses ISO dates, with tests.",
]


@pytest.fixture(scope="module")
def state(environ: Mapping[str, str], tmp_path_factory: pytest.TempPathFactory) -> Any:
    routing = yaml.safe_load((POLICIES / "routing.yaml").read_text())
    routing["llm_classifier"] = {
        **routing.get("llm_classifier", {}),
        "enabled": True,
        "min_confidence": 1.0,
        "model": "openai/gpt-4.1-nano",
    }
    dispatch = {**yaml.safe_load((POLICIES / "dispatch.yaml").read_text()), "last_resort": "anthropic/claude-opus-4"}
    policies = fast(tmp_path_factory.mktemp("access"), files={"routing.yaml": routing, "dispatch.yaml": dispatch})
    st = build_state(make_settings(policy_dir=policies), environ)
    st.calls = []

    async def classifier_call(model_id: str, body: dict) -> dict:
        st.calls.append(model_id)
        return {"choices": [{"message": {"content": '{"category": "qa_retrieval", "complexity": 2}'}}]}

    st.llm_classifier = LLMClassifier(st.policy.routing.llm_classifier, classifier_call)
    return st


@pytest.mark.parametrize("ask", ASKS)
@pytest.mark.parametrize("key_name", list(KEYS))
def test_every_path_respects_every_key_restriction(state: Any, key_name: str, ask: str) -> None:
    fields, oracle = KEYS[key_name]
    key = KeyRecord(id="k", created_at=EPOCH, **fields)
    for prompt in PROMPTS:
        state.calls.clear()
        req = to_canonical({"model": ask, "messages": [{"role": "user", "content": prompt}]}, {})
        named = state.policy.resolve_model(ask)
        if named is not None and not oracle(named):
            with pytest.raises(PermissionDenied):
                asyncio.run(plan_request(state, "d", req, {}, key))
            continue
        plan = asyncio.run(plan_request(state, "d", req, {}, key))  # auto never 422s for a key that allows some capable model
        reachable = [m.id for m in plan.models]
        assert all(oracle(m) for m in plan.models), (key_name, ask, reachable)
        assert all(oracle(state.policy.models[m]) for m in state.calls), (key_name, state.calls)
        if key_name == "unrestricted":
            assert "anthropic/claude-opus-4" in reachable  # last_resort is still there for keys that may use it


def test_last_resort_never_serves_a_key_it_is_not_allowed_for(environ: dict, upstream: FakeUpstream, tmp_path: Path) -> None:
    from proxy.app import create_app
    from tests.support.servers import serving

    master = "mk-test-master-0123456789abcdef"
    upstream.script("gpt-4.1-nano", *[Fault.status(500)] * 20)
    upstream.script("qwen3:1.7b", *[Fault.status(500)] * 20)
    policies = fast(tmp_path, dispatch={"last_resort": "anthropic/claude-opus-4"})
    app = create_app(make_settings(policy_dir=policies, master_key=master), environ=environ)
    with serving(app) as server:
        for fields, model in (
            ({"allowed_models": ["openai/gpt-4.1-nano"]}, "openai/gpt-4.1-nano"),
            ({"self_hosted_only": True}, "ollama/qwen3:1.7b"),
        ):
            created = httpx.post(server.url + "/admin/keys", json={"name": "t", **fields}, headers={"authorization": f"Bearer {master}"})
            key = created.json()["key"]
            resp = httpx.post(
                server.url + "/v1/chat/completions",
                json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
                headers={"authorization": f"Bearer {key}"},
                timeout=30,
            )
            assert resp.status_code >= 500, resp.text  # the allowed models failed: no forbidden rescue
            assert "claude-opus-4" not in resp.headers.get("x-autoroute-model", "")
    assert not upstream.requests_for("claude-opus-4-20250514") and not upstream.requests_for("claude-opus-4")
