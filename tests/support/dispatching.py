"""Helpers for dispatch tests: several deployments of one model on the fake upstream, a
Dispatcher built directly on a policy, and an app whose accounting is spied on."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import openai
from starlette.applications import Starlette

from proxy.app import create_app
from proxy.cli.connections import HeaderTimeoutProtocol
from proxy.dispatch.dispatcher import Dispatcher
from proxy.policy import Policy, load_policy
from proxy.providers import Providers
from proxy.providers.http import Upstreams
from proxy.providers.litellm_lib import LazyLitellm
from proxy.request.appstate import AppState
from proxy.request.exchange import Exchange
from tests.conftest import make_settings
from tests.support.policies import policy_copy
from tests.support.servers import ThreadedServer, serving

MODEL = "openai/gpt-4.1-nano"
MSG = [{"role": "user", "content": "hi"}]
BODY: dict[str, Any] = {"model": MODEL, "messages": MSG}
FAST_RETRIES = {"retries": 2, "retry_base_delay": 0.01, "retry_max_delay": 0.05}


def upstream_name(dep_id: str) -> str:
    """The model name deployment `dep_id` sends upstream, so faults and counts are per deployment."""
    return f"nano-{dep_id}"


def deployment(dep_id: str, upstream_url: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": dep_id,
        "provider": "openai_compatible",
        "api_base": f"{upstream_url}/{dep_id}/v1",
        "models": [MODEL],
        "model_names": {MODEL: upstream_name(dep_id)},
        **fields,
    }


def nano_policy(tmp_path: Path, upstream_url: str, deployments: list[dict[str, Any]], **dispatch: Any) -> Path:
    """policies/ where gpt-4.1-nano is served only by `deployments` (the `openai` deployment
    keeps every other OpenAI model), with `dispatch` as dispatch.yaml."""
    return policy_copy(
        tmp_path,
        deployments={"openai": {"models": ["openai/gpt-4.1", "openai/o3", "openai/o4-mini"]}},
        extra_deployments=deployments,
        files={"dispatch.yaml": {**FAST_RETRIES, **dispatch}},
    )


def make_dispatcher(policy: Policy, environ: Mapping[str, str], **kw: Any) -> Dispatcher:
    return Dispatcher(policy, Upstreams(policy, environ), Providers(LazyLitellm()), environ, **kw)


def load(policy_dir: Path, environ: Mapping[str, str]) -> Policy:
    return load_policy(policy_dir, environ)


def recording_app(environ: Mapping[str, str], policy_dir: Path | None = None, **settings: Any) -> tuple[Starlette, list[Exchange]]:
    """An app whose AppState.record is spied on: the list fills with each accounted Exchange."""
    overrides = {"policy_dir": policy_dir} if policy_dir else {}
    app = create_app(make_settings(**overrides, **settings), environ=environ)
    state = app.state.autoroute
    recorded: list[Exchange] = []
    original = state.record

    async def spy(ex: Exchange) -> None:
        recorded.append(ex)
        await original(ex)

    state.record = spy
    return app, recorded


def sdk(url: str, timeout: float = 20, api_key: str = "sk-anything") -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=api_key, max_retries=0, timeout=timeout)


@contextmanager
def proxy(
    environ: Mapping[str, str], policy_dir: Path, protocol: str = "autoroute"
) -> Iterator[tuple[ThreadedServer, list[Exchange], AppState]]:
    """A real proxy server on `policy_dir`, with its recorded exchanges and its AppState.
    `protocol`: "autoroute" (the HTTP protocol `autoroute serve` runs, proxy/cli/connections.py)
    or "uvicorn" (uvicorn's own, as another ASGI server would be: no connection-loss hook)."""
    app, recorded = recording_app(environ, policy_dir)
    with serving(app, **({"http": HeaderTimeoutProtocol} if protocol == "autoroute" else {})) as server:
        yield server, recorded, app.state.autoroute


def fast(tmp_path: Path, **kw: Any) -> Path:
    """policies/ with 10-50 ms retry backoff; `dispatch` adds to dispatch.yaml, the rest to policy_copy."""
    files = kw.pop("files", {})
    dispatch = {**FAST_RETRIES, **kw.pop("dispatch", {})}
    return policy_copy(tmp_path, files={"dispatch.yaml": dispatch, **files}, **kw)


def wait_for(cond: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)
