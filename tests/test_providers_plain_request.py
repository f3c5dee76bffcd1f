"""Plain requests built without litellm equal litellm's own translation (body, mapped params,
headers), for every model of the fast path's families that litellm's bundled map knows, dated or
not; the registry's Anthropic and Gemini models are all in those families; anything else (other
models, other messages or parameters) is left to litellm."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from proxy.policy import Policy
from proxy.providers.litellm_lib import Litellm, _load
from proxy.providers.plain_request import (
    ANTHROPIC_MODELS,
    GEMINI_MODELS,
    anthropic_family,
    anthropic_headers,
    anthropic_request,
    gemini_request,
)

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [SYSTEM, {"role": "user", "content": "Hi"}],
    [SYSTEM, {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
     {"role": "user", "content": "Héllo, 世界 \u2028 ok"}],
    [{"role": "system", "content": "  padded  "}, {"role": "user", "content": "a  "}, {"role": "assistant", "content": "b "},
     {"role": "user", "content": "x\n\n"}],
]  # fmt: skip
PARAMS = [
    {"max_tokens": 256},
    {"max_completion_tokens": 100, "stop": "END"},
    {"max_tokens": 4096, "temperature": 0.2, "top_p": 0.9, "stop": ["x", "y"]},
    {"max_tokens": 10, "temperature": 1},
]


@pytest.fixture(scope="module")
def lt() -> Litellm:
    return _load()


def _models(provider: str, policy: Policy) -> list[str]:
    """The fast path's models: the registry's, the families, and every name litellm knows in them."""
    import litellm

    known = {n.removeprefix("gemini/") for n, i in litellm.model_cost.items() if i.get("litellm_provider") == provider}
    registry = {m.api_model_id for m in policy.models.values() if m.provider == ("anthropic" if provider == "anthropic" else "google")}
    if provider == "anthropic":
        assert {anthropic_family(m) for m in registry} <= ANTHROPIC_MODELS
        return sorted(registry | ANTHROPIC_MODELS | {n for n in known if anthropic_family(n) in ANTHROPIC_MODELS})
    assert registry <= GEMINI_MODELS
    return sorted(registry | GEMINI_MODELS)


def _anthropic_litellm(lt: Litellm, model: str, messages: list, params: dict) -> tuple[dict, dict, dict]:
    cfg = lt.anthropic_config
    op = cfg.map_openai_params(non_default_params=dict(params), optional_params={}, model=model, drop_params=True)
    payload = cfg.transform_request(model, copy.deepcopy(messages), dict(op), {}, {})
    headers = cfg.validate_environment({}, model, copy.deepcopy(messages), op, {}, api_key="sk-ant-test", api_base=None)
    return payload, op, headers


def _gemini_litellm(lt: Litellm, model: str, messages: list, params: dict) -> tuple[dict, dict]:
    op = lt.gemini_config.map_openai_params(non_default_params=dict(params), optional_params={}, model=model, drop_params=True)
    payload = lt.gemini_request_body(messages=copy.deepcopy(messages), model=model, custom_llm_provider="gemini",
                                     litellm_params={}, cached_content=None, optional_params=dict(op))  # fmt: skip
    return dict(payload), op


def test_anthropic_plain_request_matches_litellm(lt: Litellm, policy: Policy) -> None:
    models = _models("anthropic", policy)
    assert len(models) > 5
    for model in models:
        for messages in CONVERSATIONS:
            for params in PARAMS:
                before = copy.deepcopy(messages)
                built = anthropic_request(model, messages, params)
                assert built is not None and messages == before  # the request's own list is not touched
                payload, op, headers = _anthropic_litellm(lt, model, messages, params)
                assert built == (payload, op), (model, params)
                assert anthropic_headers("sk-ant-test") == headers, model


def test_gemini_plain_request_matches_litellm(lt: Litellm, policy: Policy) -> None:
    models = _models("gemini", policy)
    assert len(models) >= 3
    for model in models:
        for messages in CONVERSATIONS:
            for params in PARAMS:
                built = gemini_request(model, messages, params)
                assert built is not None and built == _gemini_litellm(lt, model, messages, params), (model, params)


OTHER = [
    ([{"role": "user", "content": [{"type": "text", "text": "hi"}]}], {"max_tokens": 5}),  # content parts
    ([{"role": "user", "content": "hi", "name": "bob"}], {"max_tokens": 5}),
    ([{"role": "assistant", "content": "hi"}], {"max_tokens": 5}),  # not the user first
    ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], {"max_tokens": 5}),  # merged by litellm
    ([{"role": "user", "content": "a"}, SYSTEM], {"max_tokens": 5}),  # a system turn mid-conversation
    ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "Sure, "}], {"max_tokens": 5}),  # a prefill: litellm trims it
    ([{"role": "user", "content": " "}], {"max_tokens": 5}),
    ([SYSTEM], {"max_tokens": 5}),
    ([], {"max_tokens": 5}),
    ([{"role": "user", "content": "hi"}], {"max_tokens": 5, "tools": [{"type": "function", "function": {"name": "f"}}]}),
    ([{"role": "user", "content": "hi"}], {"max_tokens": 5, "response_format": {"type": "json_object"}}),
    ([{"role": "user", "content": "hi"}], {"max_tokens": 5, "user": "u1"}),
    ([{"role": "user", "content": "hi"}], {"max_tokens": 5, "stop": " "}),
    ([{"role": "user", "content": "hi"}], {"max_tokens": 5, "temperature": "hot"}),
    ([{"role": "user", "content": "hi"}], {"max_tokens": True}),
    ([{"role": "user", "content": "hi"}], {"max_tokens": 5, "max_completion_tokens": 6}),
    ([{"role": "user", "content": "hi"}], {}),
]


@pytest.mark.parametrize(("messages", "params"), OTHER)
def test_anything_else_goes_to_litellm(messages: list[dict[str, Any]], params: dict[str, Any]) -> None:
    assert anthropic_request("claude-sonnet-4-20250514", messages, params) is None
    assert gemini_request("gemini-2.5-flash", messages, params) is None


@pytest.mark.parametrize("model", ["claude-opus-4-7", "claude-sonnet-5", "claude-3-5-haiku-20241022"])
def test_other_anthropic_models_go_to_litellm(model: str) -> None:
    assert anthropic_request(model, CONVERSATIONS[0], {"max_tokens": 5}) is None  # litellm drops sampling fields for some


@pytest.mark.parametrize("model", ["gemini-3-flash-preview", "gemma-3-27b-it", "gemini-flash-latest"])
def test_other_gemini_models_go_to_litellm(model: str) -> None:
    assert gemini_request(model, CONVERSATIONS[0], {"max_tokens": 5}) is None  # temperature forced, no system role
