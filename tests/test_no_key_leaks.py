"""No provider key reaches anyone (issue 11): drive the proxy through every fault whose upstream
text can echo the key (4xx and 5xx bodies, a key straddling the truncation, stream error
events on the OpenAI and Anthropic paths, garbage, an auto request's 404), then grep what
the clients received (bodies, headers, stream events), every log line (DEBUG and up),
`/metrics` and `/admin/decisions` for any 8-character piece of the fake providers' keys."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.app import create_app
from tests.conftest import make_settings
from tests.support.dispatching import fast
from tests.support.fake_upstream import FakeUpstream, Fault
from tests.support.servers import serving

MASTER = "mk-leaks-0123456789abcdef"
MSG = [{"role": "user", "content": "Capital of France?"}]
ECHO = "y" * 282 + " Bearer {key} was refused (key={key})"  # the key straddles the 300th character


def pieces(keys: list[str]) -> set[str]:
    return {k[i : i + 8] for k in keys for i in range(len(k) - 7)}


def test_no_provider_key_reaches_a_client_a_log_metrics_or_decisions(
    environ: dict, upstream: FakeUpstream, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    keys = [v for k, v in environ.items() if k.endswith("_API_KEY")]
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    app = create_app(make_settings(master_key=MASTER, policy_dir=fast(tmp_path)), environ=environ)
    admin = {"authorization": f"Bearer {MASTER}"}

    def call(body: dict[str, Any]) -> None:
        if body.get("stream"):
            with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, headers=admin, timeout=30) as r:
                seen.append(str(r.headers) + "\n".join(r.iter_lines()))
        else:
            r = httpx.post(server.url + "/v1/chat/completions", json=body, headers=admin, timeout=30)
            seen.append(str(r.headers) + r.text)

    with serving(app) as server:
        faults: list[tuple[str, str, Fault]] = [
            ("openai/gpt-4.1", "gpt-4.1", Fault.status(400, message=ECHO)),
            ("openai/gpt-4.1", "gpt-4.1", Fault.status(401, message="Incorrect API key provided: {key}")),
            ("anthropic/claude-sonnet-4", "claude-sonnet-4-20250514", Fault.status(400, message=ECHO)),
            ("google/gemini-2.5-flash", "gemini-2.5-flash", Fault.status(400, message=ECHO)),
            ("meta-llama/llama-4-scout", "meta-llama/Llama-4-Scout-17B-16E-Instruct", Fault.status(400, message=ECHO)),
        ]
        for model, upstream_model, fault in faults:
            upstream.script(upstream_model, fault)
            call({"model": model, "messages": MSG})
        for model, upstream_model in (("openai/gpt-4.1", "gpt-4.1"), ("anthropic/claude-sonnet-4", "claude-sonnet-4-20250514")):
            upstream.script(upstream_model, Fault.stream_error(ECHO, after_chunks=3))
            call({"model": model, "messages": MSG, "stream": True})
            upstream.script(upstream_model, *[Fault.status(500, retry_after="soon", message=ECHO)] * 3)
            call({"model": model, "messages": MSG})
        upstream.script("*", *[Fault.status(404, message="model not found for {key}")] * 3)
        call({"model": "auto", "messages": MSG})
        upstream.reset()
        call({"model": "auto", "messages": MSG})
        deadline = time.monotonic() + 10
        while True:
            decisions = httpx.get(server.url + "/admin/decisions?limit=1000", headers=admin).text
            if decisions.count("decision_id") >= 10 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        metrics = httpx.get(server.url + "/metrics").text
    assert decisions.count("decision_id") >= 10, decisions[:500]
    logs = "\n".join(f"{r.name} {r.getMessage()} {r.__dict__}" for r in caplog.records)
    haystacks = {"clients": "\n".join(seen), "logs": logs, "metrics": metrics, "decisions": decisions}
    leaked = {where: sorted(p for p in pieces(keys) if p in text) for where, text in haystacks.items()}
    assert leaked == {"clients": [], "logs": [], "metrics": [], "decisions": []}
    assert "answered 400" in haystacks["clients"] and "mid-stream" in haystacks["clients"]  # the errors did arrive
