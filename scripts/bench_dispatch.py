"""Dispatch overhead per request, with an in-process upstream that answers at once (no HTTP),
so what is measured is dispatch itself: plan, strategy, breaker, gate, attempt accounting.

    PYTHONPATH=$PWD python scripts/bench_dispatch.py [-n 20000]

Also measures the disconnect watcher (proxy/request/disconnect.py) around a trivial ASGI app.
Prints microseconds per request; no assertion (speed is shown, not tested).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import proxy  # noqa: F401  (offline environment first)
from proxy.dispatch.attempts import Outcome
from proxy.dispatch.dispatcher import Dispatcher
from proxy.policy import load_policy
from proxy.providers.base import Completion, UpstreamCall, Usage
from proxy.providers.http import Upstreams
from proxy.request.disconnect import CancelOnDisconnect
from tests.support.policies import policy_copy

ANSWER = {"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}]}
CHUNKS = [{"choices": [{"index": 0, "delta": {"content": w}}]} for w in ("a", "b", "c")]


class InstantStream:
    usage = Usage(3, 3)

    async def __aiter__(self):  # type: ignore[no-untyped-def]
        for c in CHUNKS:
            yield c

    async def aclose(self) -> None:
        return None


class Instant:
    async def complete(self, call: UpstreamCall) -> Completion:
        return Completion(dict(ANSWER), Usage(3, 1))

    async def stream(self, call: UpstreamCall) -> InstantStream:
        return InstantStream()


class InstantProviders:
    def for_format(self, wire_format: str) -> Instant:
        return Instant()


def dispatcher(tmp: Path, name: str, strategy: str, deps: list[dict[str, Any]]) -> tuple[Dispatcher, Any]:
    env = {"OPENAI_API_KEY": "k"}
    path = policy_copy(
        tmp / name,
        extra_deployments=deps,
        deployments={"openai": {"models": ["openai/gpt-4.1"]}},
        files={"dispatch.yaml": {"strategy": strategy}},
    )
    policy = load_policy(path, env)
    return Dispatcher(policy, Upstreams(policy, env), InstantProviders(), env), policy.models["openai/gpt-4.1-nano"]  # type: ignore[arg-type]


def three(**fields: Any) -> list[dict[str, Any]]:
    return [
        {"id": f"d{i}", "provider": "openai_compatible", "api_base": "http://127.0.0.1:9/v1", "models": ["openai/gpt-4.1-nano"], **fields}
        for i in range(3)
    ]


async def per_request(n: int, step) -> float:  # type: ignore[no-untyped-def]
    for _ in range(200):
        await step()
    started = time.perf_counter()
    for _ in range(n):
        await step()
    return (time.perf_counter() - started) / n * 1e6


async def main(n: int) -> None:
    body = {"model": "openai/gpt-4.1-nano", "messages": [{"role": "user", "content": "hello"}]}
    with tempfile.TemporaryDirectory() as tmp:
        cases = {
            "failover, 1 deployment": dispatcher(Path(tmp), "a", "failover", three()[:1]),
            "round_robin, 3 deployments": dispatcher(Path(tmp), "b", "round_robin", three()),
            "least_loaded, 3 deployments": dispatcher(Path(tmp), "c", "least_loaded", three(max_concurrent=100)),
            "weighted, 3 deployments + rpm/tpm/max_concurrent gate": dispatcher(
                Path(tmp), "d", "weighted", three(rpm=10**9, tpm=10**12, max_concurrent=100)
            ),
        }
        for label, (d, model) in cases.items():

            async def complete(d=d, model=model) -> None:  # type: ignore[no-untyped-def]
                await d.complete([model], body, Outcome())

            async def stream(d=d, model=model) -> None:  # type: ignore[no-untyped-def]
                opened = await d.open_stream([model], body, Outcome())
                async for _ in opened.rest:
                    pass
                await opened.aclose()

            print(f"{label:58s} complete {await per_request(n, complete):6.1f} us   stream {await per_request(n, stream):6.1f} us")

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    never = asyncio.Event()

    def server_receive():  # type: ignore[no-untyped-def]
        """Like uvicorn's: the body once, then block until the client goes (it never does)."""
        sent = False

        async def receive():  # type: ignore[no-untyped-def]
            nonlocal sent
            if sent:
                await never.wait()
            sent = True
            return {"type": "http.request", "body": b"{}", "more_body": False}

        return receive

    async def send(message):  # type: ignore[no-untyped-def]
        return None

    scope = {"type": "http", "path": "/", "method": "POST", "headers": []}
    guarded = CancelOnDisconnect(app)
    bare = await per_request(n, lambda: app(scope, server_receive(), send))
    watched = await per_request(n, lambda: guarded(scope, server_receive(), send))
    print(f"{'disconnect watcher (ASGI middleware) added cost':58s} {watched - bare:6.1f} us per request")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=20000)
    asyncio.run(main(parser.parse_args().n))
