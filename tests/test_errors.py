"""Every error is OpenAI-shaped, has the right status, names the field or provider, never
shows a key, and the process keeps serving."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import openai
import pytest

from proxy.app import create_app
from tests.conftest import make_settings
from tests.support.fake_upstream import FakeUpstream, Fault
from tests.support.policies import policy_copy
from tests.support.servers import free_port, serving

SECRETS = ("sk-test-openai-0123456789abcdef", "sk-ant-test-0123456789abcdef", "gm-test-0123456789abcdef")


def post(url: str, body: object = None, content: bytes | None = None) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", json=body, content=content, timeout=20)


def assert_openai_error(resp: httpx.Response, status: int, code: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) >= {"message", "type", "param", "code"}
    assert err["message"]
    if code:
        assert err["code"] == code
    for secret in SECRETS:
        assert secret not in resp.text
        assert all(secret not in v for v in resp.headers.values())
    return err


def test_malformed_json(proxy_server) -> None:  # type: ignore[no-untyped-def]
    err = assert_openai_error(post(proxy_server.url, content=b'{"model": "auto", "messages": ['), 400, "invalid_json")
    assert "not valid JSON" in err["message"]


@pytest.mark.parametrize(
    "body,param",
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "openai/gpt-4.1"}, "messages"),
        ({"model": "openai/gpt-4.1", "messages": []}, "messages"),
        ({"model": "openai/gpt-4.1", "messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role"),
        ({"model": "openai/gpt-4.1", "messages": [{"role": "user", "content": "x"}], "temperature": 9}, "temperature"),
        ({"model": "openai/gpt-4.1", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens"),
        (
            {"model": "openai/gpt-4.1", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
            "messages.0.content.0.image_url.url",
        ),
        (
            {"model": "openai/gpt-4.1", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {}}]},
            "tools.0.function.name",
        ),
    ],
)
def test_schema_violation_names_field(proxy_server, body: dict, param: str) -> None:  # type: ignore[no-untyped-def]
    err = assert_openai_error(post(proxy_server.url, body), 400)
    assert err["param"] == param
    assert param in err["message"]


def test_unknown_model_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-17", messages=[{"role": "user", "content": "x"}])
    assert info.value.code == "model_not_found"
    assert "/v1/models" in info.value.message


def test_body_over_limit_413(environ: dict, upstream: FakeUpstream) -> None:
    app = create_app(make_settings(max_body_bytes=2048), environ=environ)
    with serving(app) as server:
        big = {"model": "openai/gpt-4.1", "messages": [{"role": "user", "content": "x" * 5000}]}
        assert_openai_error(post(server.url, big), 413, "request_too_large")
        # chunked upload without content-length is cut off too
        chunks = (b'{"model":"openai/gpt-4.1","messages":[{"role":"user","content":"' + b"y" * 1000 for _ in range(4))
        resp = httpx.post(server.url + "/v1/chat/completions", content=chunks, timeout=10)
        assert_openai_error(resp, 413)
        assert post(server.url, {"model": "openai/gpt-4.1", "messages": [{"role": "user", "content": "ok"}]}).status_code == 200


def test_upstream_4xx_passed_back(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.script("gpt-4.1", Fault.status(400))
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="openai/gpt-4.1", messages=[{"role": "user", "content": "x"}])
    assert "fake upstream says 400" in info.value.message
    assert len(upstream.requests_for("gpt-4.1")) == 1  # not retried


def test_upstream_auth_failure_is_operator_problem(proxy_server, upstream: FakeUpstream) -> None:  # type: ignore[no-untyped-def]
    upstream.script("gpt-4.1", Fault.status(401))
    err = assert_openai_error(post(proxy_server.url, {"model": "openai/gpt-4.1", "messages": [{"role": "user", "content": "x"}]}), 502)
    assert err["code"] == "upstream_authentication_failed"


def test_upstream_5xx_is_502_naming_provider(proxy_server, upstream: FakeUpstream) -> None:  # type: ignore[no-untyped-def]
    upstream.script("claude-sonnet-4-20250514", *[Fault.status(500)] * 10)
    resp = post(proxy_server.url, {"model": "anthropic/claude-sonnet-4", "messages": [{"role": "user", "content": "x"}]})
    err = assert_openai_error(resp, 502)
    assert "anthropic" in err["message"]
    assert err["attempts"][0]["provider"] == "anthropic" and err["attempts"][0]["status"] == 500
    assert resp.headers["x-autoroute-attempts"].startswith("anthropic/claude-sonnet-4@anthropic")


def test_timeout_is_504(environ: dict, upstream: FakeUpstream, tmp_path: Path) -> None:
    policies = policy_copy(
        tmp_path, deployments={"openai": {"timeouts": {"connect_s": 1, "read_s": 0.3}}}, files={"dispatch.yaml": {"retries": 0}}
    )
    app = create_app(make_settings(policy_dir=policies), environ=environ)
    with serving(app) as server:
        upstream.script("gpt-4.1", Fault.hang(2))
        started = time.monotonic()
        err = assert_openai_error(
            post(server.url, {"model": "openai/gpt-4.1", "messages": [{"role": "user", "content": "x"}]}), 504, "upstream_timeout"
        )
        assert time.monotonic() - started < 1.5
        assert "openai" in err["message"]


def test_refused_connection_is_502(environ: dict, upstream: FakeUpstream, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    policies = policy_copy(tmp_path, deployments={"openai": {"api_base": dead}}, files={"dispatch.yaml": {"retries": 0}})
    app = create_app(make_settings(policy_dir=policies), environ=environ)
    with serving(app) as server:
        err = assert_openai_error(post(server.url, {"model": "openai/gpt-4.1", "messages": [{"role": "user", "content": "x"}]}), 502)
        assert err["attempts"][0]["kind"] == "connect"
        assert "could not connect to openai" in err["message"]


def test_malformed_upstream_json_is_502(proxy_server, upstream: FakeUpstream) -> None:  # type: ignore[no-untyped-def]
    upstream.script("gpt-4.1", *[Fault.malformed()] * 10)
    err = assert_openai_error(post(proxy_server.url, {"model": "openai/gpt-4.1", "messages": [{"role": "user", "content": "x"}]}), 502)
    assert err["attempts"][0]["kind"] == "bad_response"


def test_stream_cut_after_first_byte_sends_error_event(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.script("gpt-4.1", Fault.cut(after_chunks=3))
    stream = client.chat.completions.create(model="openai/gpt-4.1", messages=[{"role": "user", "content": "x"}], stream=True)
    got = []
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            got.append(chunk)
    assert got, "the first chunks reached the client before the cut"
    assert "mid-stream" in str(info.value.message)


def test_unknown_route_and_method(proxy_server) -> None:  # type: ignore[no-untyped-def]
    assert_openai_error(httpx.get(proxy_server.url + "/v1/nothing"), 404)
    assert_openai_error(httpx.get(proxy_server.url + "/v1/chat/completions"), 405)


def test_process_keeps_serving_after_errors(proxy_server, upstream: FakeUpstream) -> None:  # type: ignore[no-untyped-def]
    for bad in (b"\xff\xfe", b"null", b'{"model": 5}', b"[" * 10000):
        assert post(proxy_server.url, content=bad).status_code == 400
    ok = post(proxy_server.url, {"model": "openai/gpt-4.1", "messages": [{"role": "user", "content": "x"}]})
    assert ok.status_code == 200
