"""A client that goes away gives its deployment's in-flight slot back.

The `openai` deployment allows one request at a time (max_concurrent: 1). After a client
disconnects — mid-stream, or before the stream's first byte, or during a plain call — the
deployment's in-flight count (GET /admin/deployments) is back to 0, and the next request is
served by that same deployment (its max_concurrent slot in the limits store is free too).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from proxy.app import create_app
from tests.conftest import make_settings
from tests.support.fake_upstream import FakeUpstream, Fault
from tests.support.policies import policy_copy
from tests.support.servers import ThreadedServer, serving

MASTER = "mk-test-master-0123456789abcdef"
AUTH = {"authorization": f"Bearer {MASTER}"}
BODY = {"model": "openai/gpt-4.1", "messages": [{"role": "user", "content": "Tell me a long story."}]}


@pytest.fixture
def server(environ: dict, upstream: FakeUpstream, tmp_path: Path) -> Iterator[ThreadedServer]:
    policies = policy_copy(tmp_path, deployments={"openai": {"max_concurrent": 1}})
    app = create_app(make_settings(policy_dir=policies, master_key=MASTER), environ=environ)
    with serving(app) as srv:
        yield srv


def in_flight(server: ThreadedServer) -> int:
    data = httpx.get(server.url + "/admin/deployments", headers=AUTH, timeout=10).json()["data"]
    return next(d["in_flight"] for d in data if d["id"] == "openai")


def assert_slot_given_back(server: ThreadedServer, upstream: FakeUpstream) -> None:
    deadline = time.monotonic() + 3
    while in_flight(server) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert in_flight(server) == 0, "the deployment still counts the abandoned request in flight"
    upstream.reset()
    resp = httpx.post(server.url + "/v1/chat/completions", json=BODY, headers=AUTH, timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-autoroute-attempts"] == "openai/gpt-4.1@openai"  # not skipped as at capacity
    assert in_flight(server) == 0


def wait_upstream_saw_disconnect(upstream: FakeUpstream) -> None:
    deadline = time.monotonic() + 3
    while not (upstream.received and upstream.received[-1].disconnected_at) and time.monotonic() < deadline:
        time.sleep(0.02)


def test_inflight_slot_is_released_when_the_client_disconnects_mid_stream(server: ThreadedServer, upstream: FakeUpstream) -> None:
    upstream.script("gpt-4.1", Fault.slow(0.5))
    with httpx.stream("POST", server.url + "/v1/chat/completions", json={**BODY, "stream": True}, headers=AUTH, timeout=10) as resp:
        assert resp.status_code == 200
        lines = resp.iter_lines()  # kept: a collected iterator would close the response
        first = next(lines)
        assert first.startswith("data: {") and '"content"' in first, first  # the stream has started
        assert in_flight(server) == 1
    wait_upstream_saw_disconnect(upstream)
    assert_slot_given_back(server, upstream)


def test_inflight_slot_is_released_when_the_client_disconnects_before_the_first_byte(
    server: ThreadedServer, upstream: FakeUpstream
) -> None:
    upstream.script("gpt-4.1", Fault.slow_first(5))
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server.url + "/v1/chat/completions", json={**BODY, "stream": True}, headers=AUTH, timeout=0.5)
    wait_upstream_saw_disconnect(upstream)
    assert_slot_given_back(server, upstream)


def test_inflight_slot_is_released_when_the_client_disconnects_during_a_plain_call(server: ThreadedServer, upstream: FakeUpstream) -> None:
    upstream.script("gpt-4.1", Fault.hang(5))
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server.url + "/v1/chat/completions", json=BODY, headers=AUTH, timeout=0.5)
    wait_upstream_saw_disconnect(upstream)
    assert_slot_given_back(server, upstream)
