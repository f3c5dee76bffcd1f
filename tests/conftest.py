from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import proxy  # noqa: F401  (offline environment before anything imports litellm)
from proxy.app import create_app
from proxy.cli.connections import HeaderTimeoutProtocol
from proxy.policy import Policy, load_policy
from proxy.settings import Settings
from tests.support.fake_upstream import FakeUpstream
from tests.support.redis_server import RedisServer
from tests.support.servers import ThreadedServer, provider_environ, serving

REPO = Path(__file__).resolve().parent.parent
POLICIES = REPO / "policies"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """The tests' own redis-server on a free port, for the session (never :6379, never a
    Redis someone else runs). Tests share it: each uses its own key prefix or db."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture(scope="session")
def upstream_server() -> Iterator[ThreadedServer]:
    with serving(FakeUpstream()) as server:
        yield server


@pytest.fixture
def upstream(upstream_server: ThreadedServer) -> Iterator[FakeUpstream]:
    app: FakeUpstream = upstream_server.server.config.app
    app.reset()
    yield app
    app.reset()


@pytest.fixture(scope="session")
def environ(upstream_server: ThreadedServer) -> dict[str, str]:
    return provider_environ(upstream_server.url)


@pytest.fixture(scope="session")
def policy(environ: dict[str, str]) -> Policy:
    return load_policy(POLICIES, environ)


def make_settings(**overrides: object) -> Settings:
    base = {"policy_dir": POLICIES, "env_file": Path("/nonexistent/.env"), "redis_url": None, "master_key": None}
    base.update(overrides)
    return Settings(_env_file=None, **base)  # type: ignore[arg-type]


@pytest.fixture
def proxy_server(environ: dict[str, str], upstream: FakeUpstream) -> Iterator[ThreadedServer]:
    app = create_app(make_settings(), environ=environ)
    with serving(app, http=HeaderTimeoutProtocol) as server:  # the HTTP protocol `autoroute serve` runs
        yield server


@pytest.fixture
def client(proxy_server: ThreadedServer):  # type: ignore[no-untyped-def]
    import openai

    return openai.OpenAI(base_url=proxy_server.url + "/v1", api_key="sk-anything", max_retries=0, timeout=20)


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("AUTOROUTE_"):
            monkeypatch.delenv(name)
