"""Connection reuse: one pooled client per deployment for the process's life, and HTTP
keep-alive to the upstream (counted as distinct TCP connections the upstream saw)."""

from __future__ import annotations

from pathlib import Path

from tests.support.dispatching import MSG, fast, proxy, sdk, wait_for
from tests.support.fake_upstream import FakeUpstream


def test_sequential_requests_reuse_one_upstream_connection(environ: dict, upstream: FakeUpstream, tmp_path: Path) -> None:
    with proxy(environ, fast(tmp_path)) as (server, recorded, state):
        client = sdk(server.url)
        for _ in range(20):
            client.chat.completions.create(model="openai/gpt-4.1", messages=MSG)
        for _ in range(10):
            list(client.chat.completions.create(model="openai/gpt-4.1", messages=MSG, stream=True))
        wait_for(lambda: len(recorded) == 30)
        dep = state.policy.deployments[0]
        assert state.upstreams.pool(dep) is state.upstreams.pool(dep)
    connections = {r.client for r in upstream.requests_for("gpt-4.1")}
    assert len(upstream.requests_for("gpt-4.1")) == 30
    assert None not in connections and len(connections) == 1, connections


def test_each_deployment_has_its_own_pool(environ: dict, upstream: FakeUpstream, tmp_path: Path) -> None:
    with proxy(environ, fast(tmp_path)) as (server, recorded, _state):
        client = sdk(server.url)
        for _ in range(5):
            client.chat.completions.create(model="openai/gpt-4.1", messages=MSG)
            client.chat.completions.create(model="deepseek/deepseek-r1", messages=MSG)
            list(client.chat.completions.create(model="anthropic/claude-sonnet-4", messages=MSG, stream=True))
            list(client.chat.completions.create(model="google/gemini-2.5-flash", messages=MSG, stream=True))
        wait_for(lambda: len(recorded) == 20)
    conns = [
        {r.client for r in upstream.requests_for(name)}
        for name in ("gpt-4.1", "deepseek-ai/DeepSeek-R1", "claude-sonnet-4-20250514", "gemini-2.5-flash")
    ]
    assert all(len(c) == 1 for c in conns), conns
    assert len(set.union(*conns)) == 4  # one pool (and connection) per deployment
