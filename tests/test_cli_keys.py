"""`autoroute keys ...` against a real admin API served by uvicorn on loopback."""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse

from proxy.admin.keys import routes
from proxy.cli.keys import add_keys_commands, fields_from_args, parse_expiry
from proxy.errors import ProxyError
from proxy.keys.store import KeyStore
from proxy.limits.limiter import Limiter
from proxy.limits.store import embedded_redis
from proxy.policy.limits import LimitsPolicy

MASTER_KEY = "cli-master-key-for-tests-0042"


async def _proxy_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProxyError)
    return JSONResponse(exc.body(), exc.status, headers=exc.headers)


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    redis = embedded_redis()  # created in the server's own event loop
    app.state.autoroute = SimpleNamespace(
        settings=None, policy=None, redis=redis, keys=KeyStore(redis, MASTER_KEY), limiter=Limiter(redis, LimitsPolicy())
    )
    yield


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = Starlette(routes=routes, exception_handlers={ProxyError: _proxy_error}, lifespan=_lifespan)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "admin test server did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(5)


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="autoroute")
    add_keys_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_create_list_show_update_revoke(server_url: str, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("AUTOROUTE_MASTER_KEY", MASTER_KEY)
    base = ["keys", "--url", server_url]
    assert run([*base, "create", "--name", "ci", "--rpm", "30", "--budget-day", "2.5", "--allow-model", "openai/*",
                "--allow-model", "ollama/*", "--metadata", "team=infra", "--expires", "30d"]) == 0  # fmt: skip
    out = capsys.readouterr()
    created = json.loads(out.out)
    assert created["key"].startswith("sk-ar-") and created["key"] in out.err  # the secret, once
    assert created["rpm"] == 30 and created["budget_usd_day"] == 2.5
    assert created["allowed_models"] == ["openai/*", "ollama/*"] and created["metadata"] == {"team": "infra"}
    key_id = created["id"]

    assert run([*base, "list"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["id", "name", "rpm"] and table[1].split()[:3] == [key_id, "ci", "30"]

    assert run([*base, "update", key_id, "--disable", "--tpm", "5000", "--clear", "budget_usd_day"]) == 0
    updated = json.loads(capsys.readouterr().out)
    assert updated["disabled"] is True and updated["tpm"] == 5000 and updated["budget_usd_day"] is None

    assert run([*base, "show", key_id, "--usage"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["id"] == key_id and shown["usage"]["day"]["requests"] == 0

    assert run([*base, "revoke", key_id]) == 0
    assert json.loads(capsys.readouterr().out)["deleted"] is True
    with pytest.raises(SystemExit) as info:
        run([*base, "show", key_id])
    assert "error 404" in str(info.value.code)


def test_wrong_or_missing_master_key(server_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUTOROUTE_MASTER_KEY", raising=False)
    with pytest.raises(SystemExit) as info:
        run(["keys", "--url", server_url, "list"])
    assert "AUTOROUTE_MASTER_KEY" in str(info.value.code)
    with pytest.raises(SystemExit) as info:
        run(["keys", "--url", server_url, "--master-key", "wrong", "list"])
    assert "error 401" in str(info.value.code)


def test_unreachable_proxy_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOROUTE_MASTER_KEY", MASTER_KEY)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens
    with pytest.raises(SystemExit) as info:
        run(["keys", "--url", f"http://127.0.0.1:{port}", "list"])
    assert "cannot reach the proxy" in str(info.value.code)


def test_expiry_parsing() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert parse_expiry("30d", now) == "2030-01-31T00:00:00+00:00"
    assert parse_expiry("12h", now) == "2030-01-01T12:00:00+00:00"
    assert parse_expiry("2031-05-01", now) == "2031-05-01T00:00:00+00:00"
    with pytest.raises(SystemExit):
        parse_expiry("soon", now)


def test_fields_only_include_given_options() -> None:
    args: Any = SimpleNamespace(name=None, rpm=5, tpm=None, self_hosted_only=False, enable=True, clear=["tpm"])
    assert fields_from_args(args) == {"rpm": 5, "self_hosted_only": False, "disabled": False, "tpm": None}


def test_tool_permissions_from_flags() -> None:
    parser = argparse.ArgumentParser()
    add_keys_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["keys", "create", "--name", "bot", "--allow-tool", "calculator__*", "--allow-tool", "docs__search", "--context-assembler"]
    )
    assert fields_from_args(args) == {"name": "bot", "allowed_tools": ["calculator__*", "docs__search"], "context_assembler": True}
