"""A provider that quotes our API key back in its errors: the key must reach nobody.

The fake upstream (Fault.echo_key) answers with an error message that repeats the key the
request carried — as a plain error, as the error of a stream request, as an in-band event of
a stream (before and after the first byte reached the client), and after long filler text that
puts the key across and past any truncation point. Everything anyone can see afterwards is
scanned for the key and for any 10-character piece of it: every response (body and headers)
the client got, every log record, /metrics and /admin/decisions.

The keys are random and match no generic secret pattern (no `sk-`, `AIza`, `Bearer`), so only
redaction of the deployment's own key can hide them.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.app import create_app
from tests.conftest import make_settings
from tests.support.fake_upstream import FakeUpstream, Fault
from tests.support.policies import fast_dispatch, policy_copy
from tests.support.servers import ThreadedServer, serving

MASTER = "mk-test-master-0123456789abcdef"
ASK = [{"role": "user", "content": "Say hello."}]
#: (registry model, the fake upstream's name for it, the environment variable of its key)
PROVIDERS = [
    ("openai/gpt-4.1", "gpt-4.1", "OPENAI_API_KEY"),
    ("anthropic/claude-sonnet-4", "claude-sonnet-4-20250514", "ANTHROPIC_API_KEY"),
    ("google/gemini-2.5-flash", "gemini-2.5-flash", "GEMINI_API_KEY"),
]
#: Filler before the key: none, across the 300-character truncation, far past it.
PADS = [0, 262, 5000]  # 262 + len('Incorrect API key provided: ') puts the key across character 300


@pytest.fixture
def keys() -> dict[str, str]:
    return {env: f"prov{env[:3].lower()}{secrets.token_hex(16)}" for _, _, env in PROVIDERS}


@pytest.fixture
def server(environ: dict[str, str], keys: dict[str, str], upstream: FakeUpstream, tmp_path: Path) -> Iterator[ThreadedServer]:
    policies = policy_copy(tmp_path, files={"dispatch.yaml": fast_dispatch()})
    app = create_app(make_settings(policy_dir=policies, master_key=MASTER), environ={**environ, **keys})
    with serving(app) as srv:
        yield srv


def fragments(key: str, size: int = 10) -> set[str]:
    return {key[i : i + size] for i in range(len(key) - size + 1)}


def leaks(text: str, keys: dict[str, str]) -> list[str]:
    return sorted({f for key in keys.values() for f in fragments(key) if f in text})


def call(server: ThreadedServer, model: str, stream: bool) -> str:
    """One request as a client makes it; everything the client received, as text."""
    body: dict[str, Any] = {"model": model, "messages": ASK, "stream": stream}
    with httpx.stream(
        "POST", server.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {MASTER}"}, timeout=30
    ) as r:
        content = b"".join(r.iter_bytes())
        return f"{r.status_code} {dict(r.headers)}\n{content.decode('utf-8', 'replace')}"


def everything_else(server: ThreadedServer, caplog: pytest.LogCaptureFixture) -> dict[str, str]:
    auth = {"authorization": f"Bearer {MASTER}"}
    decisions = httpx.get(server.url + "/admin/decisions", params={"limit": 1000}, headers=auth, timeout=10)
    assert decisions.status_code == 200, decisions.text
    logs = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records) + caplog.text
    return {"logs": logs, "/metrics": httpx.get(server.url + "/metrics", timeout=10).text, "/admin/decisions": decisions.text}


def test_provider_key_echoed_in_plain_errors_reaches_no_client_log_metric_or_decision(
    server: ThreadedServer, upstream: FakeUpstream, keys: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seen = []
    for model, upstream_name, _ in PROVIDERS:
        for pad in PADS:
            upstream.script(upstream_name, Fault.echo_key(400, pad=pad))
            seen.append(call(server, model, stream=False))
            upstream.script(upstream_name, *[Fault.echo_key(500, pad=pad)] * 12)  # retried, then exhausted
            seen.append(call(server, model, stream=False))
            upstream.reset()
    assert any("Incorrect API key provided" in s for s in seen), "the upstream's message never reached the client: a vacuous scan"
    for i, text in enumerate(seen):
        assert leaks(text, keys) == [], f"response {i} leaks the provider key: {text[:2000]}"
    for where, text in everything_else(server, caplog).items():
        assert leaks(text, keys) == [], f"{where} leaks the provider key"


def test_provider_key_echoed_by_a_stream_reaches_no_client_log_metric_or_decision(
    server: ThreadedServer, upstream: FakeUpstream, keys: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seen = []
    for model, upstream_name, _ in PROVIDERS:
        for pad in PADS:
            upstream.script(upstream_name, Fault.echo_key(400, pad=pad))  # the stream request is refused
            seen.append(call(server, model, stream=True))
            upstream.script(upstream_name, *[Fault.echo_key(pad=pad, after_chunks=1)] * 12)  # before the first byte
            seen.append(call(server, model, stream=True))
            upstream.script(upstream_name, Fault.echo_key(pad=pad, after_chunks=4))  # after it: reported in band
            seen.append(call(server, model, stream=True))
            upstream.reset()
    assert any("Incorrect API key provided" in s for s in seen), "the upstream's message never reached the client: a vacuous scan"
    assert any("mid-stream" in s for s in seen), "no stream failed after its first byte: a vacuous scan"
    for i, text in enumerate(seen):
        assert leaks(text, keys) == [], f"response {i} leaks the provider key: {text[:2000]}"
    for where, text in everything_else(server, caplog).items():
        assert leaks(text, keys) == [], f"{where} leaks the provider key"
